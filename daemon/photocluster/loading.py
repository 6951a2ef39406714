"""Loading one file for ingest, on the decode pool: read and hash it, tell when it was taken,
decode it for the model (a photo: one image; a video: a few frames) and keep its thumbnail;
or say why it cannot be used, that it vanished, or that it is a companion video.

Everything here runs on the decode threads: no catalog access (the store belongs to the
worker). What the catalog knew when ingest began arrives as `known`, the hashes whose vectors
of this model are stored; a file holding one of those is hashed but not decoded.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photocluster import photos
from photocluster.embedder import Embedder
from photocluster.errors import BadPhotoError
from photocluster.photos import taken as taken_time
from photocluster.photos import video
from photocluster.records import Taken
from photocluster.thumbs import Thumbnails


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class Loaded:
    """One file after the decode pool: frames for the model, a reusable hash, or why not."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    content_hash: str = ""
    kind: str = "photo"  # "photo" | "video"
    frames: np.ndarray | None = None  # (f, s, s, 3) uint8 RGB; None when the hash is known
    taken: Taken | None = None
    error: str | None = None
    vanished: bool = False
    still: str | None = None  # a companion video: the still it belongs beside
    dimensions: tuple[int, int] | None = None  # a decoded photo's (width, height), upright


class Loader:
    """Callable on a path: the `Loaded` for it. Safe to call from several threads."""

    def __init__(self, root: Path, embedder: Embedder, limits: Limits, known: set[str],
                 thumbnails: Thumbnails | None) -> None:
        self._root, self._limits, self._known, self._thumbs = root, limits, known, thumbnails
        self._size, self._fill = embedder.input_size, embedder.pad_rgb  # the model's input rule
        self._listings: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str) -> Loaded:
        try:
            if photos.media_kind(path) == "video":
                return self._video(path)
            return self._photo(path)
        except FileNotFoundError:
            return Loaded(path, vanished=True)
        except BadPhotoError as error:
            return self._failure(path, error.reason)

    def _photo(self, path: str) -> Loaded:
        file = photos.read_photo(self._root, path, self._limits.max_bytes)
        taken = self._taken(file.data, path, file.mtime_ns)
        loaded = Loaded(path, file.size, file.mtime_ns, file.content_hash, "photo", taken=taken)
        if file.content_hash in self._known:
            return loaded
        try:
            decoded = photos.decode_for_model(
                file.data, self._size, self._limits.max_pixels, self._fill)
        except BadPhotoError as error:
            return Loaded(path, file.size, file.mtime_ns, file.content_hash, error=error.reason)
        self._keep_thumbnail(file.content_hash, decoded.thumbnail)
        return _with_frames(loaded, decoded.square[None], decoded.dimensions)  # (1, s, s, 3)

    def _video(self, path: str) -> Loaded:
        folder, name = posixpath.split(path)
        still = video.companion_still(path, self._listing(folder))
        if still is not None:  # a motion or live-photo part: it goes beside its still
            found = os.lstat(self._root / path)
            return Loaded(path, found.st_size, found.st_mtime_ns, kind="video", still=still)
        identity = video.video_fingerprint(self._root, path)
        taken = self._taken(None, path, identity.mtime_ns)
        loaded = Loaded(path, identity.size, identity.mtime_ns, identity.content_hash, "video",
                        taken=taken)
        if identity.content_hash in self._known:
            return loaded
        frames = video.video_frames(self._root, path, self._size, self._limits.max_pixels,
                                    self._fill)
        self._keep_thumbnail(identity.content_hash, frames[len(frames) // 2])
        return _with_frames(loaded, np.stack(frames))  # (f, s, s, 3)

    def _taken(self, data: bytes | None, path: str, mtime_ns: int) -> Taken:
        """EXIF, else a Takeout sidecar beside it, else the mtime (`photos.taken`)."""
        folder = posixpath.dirname(path)
        return taken_time.taken_time(data, path, self._listing(folder), self._read_sidecar,
                                     mtime_ns)

    def _read_sidecar(self, relative: str) -> bytes:
        return photos.read_photo(self._root, relative, taken_time.MAX_SIDECAR_BYTES).data

    def _listing(self, folder: str) -> list[str]:
        """The names in `folder`, listed once per ingest: sidecars and companions are looked
        up for every file of a folder."""
        with self._lock:
            names = self._listings.get(folder)
        if names is None:
            try:
                names = sorted(os.listdir(self._root / folder if folder else self._root))
            except OSError:
                names = []
            with self._lock:
                self._listings[folder] = names
        return names

    def _keep_thumbnail(self, content_hash: str, image: np.ndarray) -> None:
        if self._thumbs is None:
            return
        with contextlib.suppress(OSError):  # a cache: a photo without one still gets its vector
            self._thumbs.put(content_hash, image)

    def _failure(self, path: str, reason: str) -> Loaded:
        try:
            found = os.lstat(self._root / path)
        except OSError:
            return Loaded(path, vanished=True)
        return Loaded(path, found.st_size, found.st_mtime_ns, error=reason)


def _with_frames(loaded: Loaded, frames: np.ndarray,
                 dimensions: tuple[int, int] | None = None) -> Loaded:
    return Loaded(loaded.path, loaded.size, loaded.mtime_ns, loaded.content_hash, loaded.kind,
                  frames, loaded.taken, dimensions=dimensions)

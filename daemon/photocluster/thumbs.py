"""Small thumbnails of the photos, kept once in the state directory, keyed by content hash.

A thumbnail is made when a photo is decoded for the model (`photos.decode_for_model`), so the
contact sheets (and anything else that shows a photo) never decode an original again;
`thumbnail_from_file` makes one for a photo embedded before thumbnails were kept. Keyed by
content, a photo copied or moved keeps its thumbnail and duplicates share one.

Layout: <folder>/ab/abcdef0123....webp, fanned out by the first two hex digits so no folder
holds more than a few hundred files per 100 000 photos. WebP where OpenCV can encode it, else
JPEG. Files are 0600 and folders 0700 whatever the umask: a thumbnail shows the photo. They are
a cache: written without fsync, and one lost or torn by a power cut reads as missing (`has` is
False for an empty file, `read` None for one that does not decode) and is made again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from photocluster import fsutil
from photocluster.photos import THUMB_EDGE, RGBImage, decode_thumbnail, read_photo

logger = logging.getLogger(__name__)

_HASH = re.compile(r"[0-9a-f]{8,128}")  # a content hash in lower-case hex (blake2b-128: 32)
_WEBP_QUALITY, _JPEG_QUALITY = 80, 85


def _webp_encodes() -> bool:
    try:
        ok, _ = cv2.imencode(".webp", np.zeros((2, 2, 3), np.uint8))
    except cv2.error:
        return False
    return bool(ok)


SUFFIX = ".webp" if _webp_encodes() else ".jpg"


class Thumbnails:
    """The thumbnail folder of one library. Safe to share between threads: each file is
    written atomically under a unique temp name, and reads never see one half written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, content_hash: str) -> Path:
        """<folder>/<first two hex digits>/<content_hash><SUFFIX>. Raises ValueError when
        `content_hash` is not lower-case hex (it becomes a file name)."""
        if not _HASH.fullmatch(content_hash):
            raise ValueError(f"not a content hash: {content_hash!r}")
        return self.folder / content_hash[:2] / f"{content_hash}{SUFFIX}"

    def put(self, content_hash: str, rgb: RGBImage) -> None:
        """Store `rgb`, (h, w, 3) uint8 RGB, as the thumbnail of `content_hash`, replacing any.
        Raises OSError when it cannot be written (nothing is left half written)."""
        path = self.path_for(content_hash)
        self._private_folder(path.parent)
        fsutil.atomic_write(path, encode(rgb), mode=fsutil.PRIVATE_FILE, durable=False)

    def has(self, content_hash: str) -> bool:
        try:
            return os.stat(self.path_for(content_hash)).st_size > 0
        except FileNotFoundError:
            return False

    def read(self, content_hash: str) -> RGBImage | None:
        """(h, w, 3) uint8 RGB, or None when there is none or it does not decode."""
        path = self.path_for(content_hash)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        image = decode(data)
        if image is None:
            logger.debug("unreadable thumbnail %s", path)
        return image

    def remove(self, content_hash: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_for(content_hash))

    def hashes(self) -> Iterator[str]:
        """The content hash of every stored thumbnail (for removing those no photo has)."""
        for fan in _sorted_entries(self.folder):
            if len(fan.name) == 2 and fan.is_dir(follow_symlinks=False):
                yield from _hashes_in(Path(fan.path))

    def remove_leftovers(self) -> None:
        """Delete temp files of writes a crash interrupted (call at start, before writers)."""
        for fan in _sorted_entries(self.folder):
            if fan.is_dir(follow_symlinks=False):
                fsutil.remove_temp_files(Path(fan.path))

    def _private_folder(self, fan: Path) -> None:
        if not fan.is_dir():
            fsutil.private_dir(self.folder)  # mkdir(parents=True) would leave it umask-wide
            fsutil.private_dir(fan)


def thumbnail_from_file(
    root: Path, relative: str, max_bytes: int, max_pixels: int, edge: int = THUMB_EDGE
) -> tuple[str, RGBImage]:
    """Read the photo `relative` below `root` once and make its thumbnail: (content hash of
    the bytes read, (h, w, 3) uint8 RGB with long side `edge`), for the thumbnails of a library
    embedded before they were kept. The hash is of what was read, so a file changed since it
    was catalogued is keyed by its new content.

    Raises FileNotFoundError (vanished) and BadPhotoError (unusable) as `read_photo` and
    `decode_thumbnail` do.
    """
    photo = read_photo(root, relative, max_bytes)
    return photo.content_hash, decode_thumbnail(photo.data, max_pixels, edge)


def encode(rgb: RGBImage) -> bytes:
    """(h, w, 3) uint8 RGB -> WebP (or JPEG) bytes. Raises ValueError for anything else."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"not an (h, w, 3) uint8 RGB image: {rgb.shape} {rgb.dtype}")
    webp = SUFFIX == ".webp"
    quality = [cv2.IMWRITE_WEBP_QUALITY if webp else cv2.IMWRITE_JPEG_QUALITY,
               _WEBP_QUALITY if webp else _JPEG_QUALITY]
    ok, encoded = cv2.imencode(SUFFIX, np.ascontiguousarray(rgb[:, :, ::-1]), quality)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} thumbnail as {SUFFIX}")
    return bytes(encoded.tobytes())


def decode(data: bytes) -> RGBImage | None:
    """WebP/JPEG bytes -> (h, w, 3) uint8 RGB, or None when they do not decode."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        return None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []


def _hashes_in(fan: Path) -> Iterator[str]:
    for entry in _sorted_entries(fan):
        stem = entry.name.removesuffix(SUFFIX)
        if stem != entry.name and _HASH.fullmatch(stem) and stem.startswith(fan.name):
            yield stem

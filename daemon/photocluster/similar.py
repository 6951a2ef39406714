"""`photocluster similar PATH`: the photos of the library most like one photo, ranked.

Read-only and lock-free, so it answers while the daemon runs: the catalog is opened read-only
(`Store.open_readonly`), a library photo's vector is the catalog's, and the search scans the
catalog's live vectors chunk by chunk in one read statement (the index file is the daemon's,
saved whenever it likes). A file whose content the catalog does not know (a photo outside the
library) is read, decoded and embedded on the fly with the library's model, which loads
TensorFlow; a copy of a library photo anywhere needs no model: its hash finds its vector.

The matches are linked into `_similar/<name of PATH>/` of the live generation, ranked
("01 <link name>", ...), written under a temp name and renamed into place (`tree.ranked`),
replacing an earlier answer for a photo of that name. The daemon owns the tree: a new
generation does not carry `_similar/` over, so the next swap drops it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from photocluster import photos
from photocluster.config import Config
from photocluster.embedder import Embedder
from photocluster.errors import StateError
from photocluster.photos import video
from photocluster.store import CATALOG, Shown, Store
from photocluster.tree import ClusterTree, ranked

logger = logging.getLogger(__name__)

EmbedderFactory = Callable[[Config], Embedder]
Vector = npt.NDArray[np.float32]  # (dim,)


@dataclass(frozen=True)
class Match:
    path: str  # relative to the photo root: the content's canonical copy
    similarity: float  # cosine similarity with the asked photo: 1.0 is the same picture


@dataclass(frozen=True)
class Answer:
    in_library: str | None  # the asked photo's own path in the library, if it is one there
    embedded: bool  # its vector was made now (the model was loaded)
    matches: list[Match]  # most similar first
    folder: Path | None  # where they are linked; None when there is no cluster tree yet
    seconds: float  # from opening the catalog to the answer, the model's loading excluded


def find(config: Config, photo: Path, count: int, make_embedder: EmbedderFactory) -> Answer:
    """The `count` library photos most like `photo` (the photo itself and its copies left
    out), linked into `_similar/<photo's name>/` of the live generation.

    Raises StateError when there is no catalog or its model is not the embedder's,
    FileNotFoundError when `photo` is missing, BadPhotoError when it cannot be used."""
    if not (config.paths.state / CATALOG).exists():
        raise StateError(f"no catalog in {config.paths.state}: nothing scanned yet")
    started, loading = time.monotonic(), [0.0]
    store = Store.open_readonly(config.paths.state)
    try:
        relative = library_path(config.paths.photos, photo)
        own, vector = _known(store, config, photo, relative)
        if vector is None:
            vector = _embedded(store, config, photo, make_embedder, loading)
        shown = _nearest(store, vector, own, count)
    finally:
        store.close()
    folder = _link(config, photo.name, shown)
    matches = [Match(row.path, similarity) for row, similarity in shown]
    return Answer(relative if own is not None else None, loading[0] > 0, matches, folder,
                  time.monotonic() - started - loading[0])


def library_path(root: Path, photo: Path) -> str | None:
    """`photo` relative to the photo root if it lies there (also through a link into it, such
    as a link of the cluster tree), else None."""
    for path, base in ((os.path.abspath(photo), os.path.abspath(root)),
                       (os.path.realpath(photo), os.path.realpath(root))):
        if os.path.commonpath([path, base]) == base and path != base:
            return os.path.relpath(path, base)
    return None


def _known(store: Store, config: Config, photo: Path,
           relative: str | None) -> tuple[int | None, Vector | None]:
    """(content id, vector) when the catalog holds the photo: by its path, else by the hash
    of its bytes (a copy kept elsewhere); (None, None) when it does not."""
    record = store.file(relative) if relative is not None else None
    content = record.content if record is not None and record.fingerprint else None
    if content is None:
        content = store.content_of(_content_hash(config, photo))
    if content is None:
        return None, None
    return content, store.vectors_of(np.asarray([content], np.int64))[0]


def _content_hash(config: Config, photo: Path) -> str:
    """The catalog's identity of the file's content (a photo's blake2b, a video's samples)."""
    real = Path(os.path.realpath(photo))
    if photos.media_kind(real.name) == "video":
        return video.video_fingerprint(real.parent, real.name).content_hash
    return photos.read_photo(real.parent, real.name, _max_bytes(config)).content_hash


def _embedded(store: Store, config: Config, photo: Path, make_embedder: EmbedderFactory,
              loading: list[float]) -> Vector:
    """The photo's vector from the library's model (loaded now; its loading time is added to
    `loading`). StateError when the catalog's vectors are another model's."""
    started = time.monotonic()
    embedder = make_embedder(config)
    loading[0] += time.monotonic() - started
    if not store.has_model(embedder.fingerprint):
        raise StateError("the library's photos were embedded by another model than the one "
                         "configured; let the daemon re-embed them first")
    real = Path(os.path.realpath(photo))
    max_pixels = int(config.photos.max_megapixels * 1_000_000)
    if photos.media_kind(real.name) == "video":
        frames = video.video_frames(real.parent, real.name, embedder.input_size, max_pixels,
                                    embedder.pad_rgb)
        return video.mean_vector(embedder.embed(np.stack(frames)))  # (f, 512) -> (512,)
    data = photos.read_photo(real.parent, real.name, _max_bytes(config)).data
    image = photos.decode_rgb(data, embedder.input_size, max_pixels, embedder.pad_rgb)
    return np.asarray(embedder.embed(image[None])[0], np.float32)  # (512,)


def _nearest(store: Store, vector: Vector, own: int | None,
             count: int) -> list[tuple[Shown, float]]:
    """The `count` live contents nearest `vector`, `own` left out, with their similarity."""
    scores, ids = store.search(vector[None], count + 1)  # (1, count + 1)
    found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True)
             if i >= 0 and i != own][:count]
    shown = store.shown(i for i, _ in found)
    return [(shown[i], similarity) for i, similarity in found if i in shown]


def _link(config: Config, name: str, shown: list[tuple[Shown, float]]) -> Path | None:
    """Link the matches into `_similar/<name>/` of the live generation; None when there is
    no live generation (nothing clustered yet) or it cannot be written (logged: the answer
    stands without its folder)."""
    tree = ClusterTree(config.paths.clusters, config.paths.photos, config.tree.dated_names)
    try:
        generation = tree.live()
        return None if generation is None else _write_links(tree, generation, name, shown)
    except (OSError, StateError) as error:
        logger.warning("could not link the answer into %r: %s", str(tree.cluster_root), error)
        return None


def _write_links(tree: ClusterTree, generation: Path, name: str,
                 shown: list[tuple[Shown, float]]) -> Path:
    rows = [row for row, _ in shown]
    names = ranked.ranked_names([tree.link_name(row.path, row.taken) for row in rows])
    targets = [tree.link_target(generation, row.path, ranked.DEPTH) for row in rows]
    folder = ranked.safe_name(name)
    ranked.write_folder(generation / ranked.SIMILAR, folder, list(zip(names, targets, strict=True)))
    return tree.cluster_root / ranked.SIMILAR / folder


def _max_bytes(config: Config) -> int:
    return int(config.photos.max_file_mb * 1024 * 1024)

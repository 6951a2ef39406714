"""The library: catalog, cluster tree and model opened together, and the flows over them.

This is the one place where the stages meet; read top to bottom it is the whole pipeline:
changed paths -> read/decode -> embed -> store -> assign -> plan links -> apply. `scan` (the
one-shot command) and the daemon's worker both call these functions.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photocluster import ingest, photos, recluster, weights
from photocluster.config import Config
from photocluster.embedder import Embedder, Vgg16Embedder, configure_threads
from photocluster.errors import StateError
from photocluster.lock import writer_lock
from photocluster.organizer import ClusterTree
from photocluster.progress import Progress
from photocluster.store import Store

logger = logging.getLogger(__name__)

EmbedderFactory = Callable[[Config], Embedder]
DIRTY = "changed_since_recluster"


@dataclass
class Library:
    config: Config
    store: Store
    tree: ClusterTree
    embedder: Embedder

    @property
    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    @property
    def limits(self) -> ingest.Limits:
        settings = self.config.photos
        return ingest.Limits(
            max_bytes=int(settings.max_file_mb * 1024 * 1024),
            max_pixels=int(settings.max_megapixels * 1_000_000),
        )

    def thumbnail(self, path: str) -> np.ndarray | None:
        return photos.thumbnail(self.config.paths.photos / path, 160, self.limits.max_pixels)


def vgg16_embedder(config: Config) -> Embedder:
    """The real model, with weights from the cache or the fetch chain."""
    settings = config.embedding
    configure_threads(settings.threads)
    source = weights.resolve(settings.weights, settings.preprocessing, weights_dir(config))
    return Vgg16Embedder(source, settings.precision, settings.batch_size)


def weights_dir(config: Config) -> Path:
    return config.paths.state / "weights"


@contextmanager
def open_library(
    config: Config, role: str, make_embedder: EmbedderFactory = vgg16_embedder
) -> Iterator[Library]:
    """Take the writer lock, open the catalog and tree, load the model; close all on exit.

    Raises StateError when the state directory lies inside the photo folder (or the reverse)
    once symlinks are resolved: a sync client would upload the catalog."""
    _check_apart(config.paths.state, config.paths.photos)
    with ExitStack() as stack:
        stack.enter_context(writer_lock(config.paths.state, role))
        store = stack.enter_context(Store(config.paths.state))
        tree = ClusterTree(config.paths.clusters, config.paths.photos)
        yield Library(config, store, tree, make_embedder(config))


def _check_apart(state: Path, photo_root: Path) -> None:
    state_real, photos_real = os.path.realpath(state), os.path.realpath(photo_root)
    if os.path.commonpath([state_real, photos_real]) in (state_real, photos_real):
        raise StateError(
            f"the state directory {state} and the photo folder {photo_root} must lie outside "
            f"each other (they resolve to {state_real} and {photos_real})"
        )


def sync(
    library: Library,
    subtree: str = "",
    show_bar: bool | None = None,
    stop: Callable[[], bool] | None = None,
) -> ingest.IngestReport:
    """Reconcile the tree (or a subtree) with the catalog: ingest new, drop gone, place new.

    Raises FileNotFoundError when the photo root is missing: never read as "all deleted".
    """
    work = reconcile(library, subtree)
    progress = Progress(len(work.to_read), "embedding", bar=show_bar)
    return apply_work(library, work, progress, stop)


def reconcile(library: Library, subtree: str = "") -> ingest.Work:
    """`ingest.reconcile` of the nearest real folder at or above `subtree`: a subtree that
    vanished (moved out) takes its photos along, one replaced by a symlink is not followed.

    Raises FileNotFoundError when the photo root is missing, or empty while the catalog is
    not: an empty root is a bare mount point far more often than a deliberate wipe.
    """
    root = library.config.paths.photos
    subtree = _real_folder(root, subtree)
    if not subtree and _is_empty(root) and library.store.photos():
        raise FileNotFoundError(errno.ENOENT, "the photo folder is empty (not mounted?)", root)
    return ingest.reconcile(root, library.store, library.fingerprint, subtree)


def _real_folder(root: Path, subtree: str) -> str:
    """The longest prefix of `subtree` whose every component is a real directory (lstat)."""
    parts = [part for part in subtree.split("/") if part]
    for depth in range(len(parts)):
        try:
            is_folder = stat.S_ISDIR(os.lstat(root.joinpath(*parts[: depth + 1])).st_mode)
        except OSError:
            is_folder = False
        if not is_folder:
            return "/".join(parts[:depth])
    return "/".join(parts)


def _is_empty(root: Path) -> bool:
    with os.scandir(root) as entries:  # an unlistable root raises: never "empty"
        return next(entries, None) is None


def apply_work(
    library: Library,
    work: ingest.Work,
    progress: Progress,
    stop: Callable[[], bool] | None = None,
) -> ingest.IngestReport:
    """Read what `work` lists, drop what is gone (or moved: matched by content hash)."""
    if work.to_read or work.missing:
        library.store.set_meta(DIRTY, "1")
    report = ingest.ingest(
        work.to_read,
        library.config.paths.photos,
        library.store,
        library.embedder,
        library.limits,
        work.missing,
        progress,
        stop,
    )
    progress.close()
    gone = [path for path in work.missing if library.store.photo(path) is not None]
    remove(library, gone)
    moved_away = set(work.missing).difference(gone)  # their rows moved to the new paths
    library.tree.remove_links(moved_away)
    place(library)
    if report.moved:
        _relink(library, [p for p in work.to_read if library.store.photo(p) is not None])
    logger.info(
        "sync: %d embedded, %d reused, %d moved, %d removed, %d failed, %d unchanged",
        report.embedded,
        report.reused,
        report.moved,
        len(gone),
        report.failed,
        work.unchanged,
    )
    return report


def remove(library: Library, paths: list[str]) -> None:
    if paths:
        library.store.set_meta(DIRTY, "1")
        library.store.remove(paths)
        library.tree.remove_links(paths)


def move(library: Library, old: str, new: str) -> None:
    """A rename inside the tree: same row, vector and cluster; only the link moves."""
    store = library.store
    if store.photo(old) is None:
        return
    if store.photo(new) is not None:  # renamed over another photo: that one is gone
        remove(library, [new])
    store.move(old, new)
    library.tree.remove_links([old])
    _relink(library, [new])


def _relink(library: Library, paths: list[str]) -> None:
    for path in paths:
        record = library.store.photo(path)
        if record is not None and record.cluster is not None:
            library.tree.add_link(record.cluster, path)


def place(library: Library) -> None:
    """Link every photo without a cluster into the nearest cluster's folder (when clusters
    exist): the newly stored ones, and any stored just before a crash or a failed write, which
    the next reconciliation no longer sees as new."""
    assignment = recluster.assign_unclustered(library.store, library.fingerprint)
    if not assignment:
        return
    paths = {r.id: r.path for r in library.store.photos() if r.id in assignment}
    for photo_id, cluster in assignment.items():
        library.tree.add_link(cluster, paths[photo_id])


def apply_recluster(library: Library, result: recluster.Result) -> None:
    recluster.apply(result, library.store, library.tree, library.fingerprint, library.thumbnail)
    library.store.set_meta(DIRTY, "0")


def recluster_now(library: Library, force: bool, dry_run: bool = False) -> list[str] | None:
    """Elbow + KMeans++ over everything, then swap in the new tree.

    Skipped (returns None) when nothing changed since the last recluster, unless `force`.
    With `dry_run`, returns the changes it would make and writes nothing.
    """
    store = library.store
    if not force and not dry_run and store.meta(DIRTY) == "0":
        logger.info("recluster skipped: nothing changed since the last one")
        return None
    snap = recluster.snapshot(store, library.fingerprint)
    if len(snap.ids) == 0:
        logger.info("recluster skipped: no photos with vectors yet")
        return None
    result = recluster.compute(snap, library.config.clustering)
    if dry_run:
        return recluster.describe(result, store, library.tree)
    apply_recluster(library, result)
    return []


def scan(library: Library, show_bar: bool | None = None) -> None:
    """The one-shot batch: sync everything, recluster when needed, repair the tree."""
    sync(library, show_bar=show_bar)
    if recluster_now(library, force=False) is None:
        recluster.repair_tree(library.store, library.tree, library.thumbnail)

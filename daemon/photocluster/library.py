"""The library: catalog, cluster tree and model opened together, and the verbs over them.

This is the one place where the stages meet; read top to bottom it is the whole pipeline:
changed paths -> read/decode -> embed -> store -> assign -> link. A new photo flows one way:
`ingest` stores it and hands back what the write asks of the tree (`store.Written`: the contents
to place, with their canonical path and vector in hand, and the links to move), and
`placement.follow` applies exactly that. `scan` (the one-shot command) and the daemon's worker
speak only these verbs; neither reaches into the store or the tree.

Why over 400 lines: the flow is meant to be read in one place (issue 9); each verb is short and
delegates to the flow modules (`ingest`, `placement`, `duplicates`, `recluster`, `vanish`).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from photocluster import (
    corrections,
    duplicates,
    ingest,
    locking,
    marking,
    photos,
    placement,
    recluster,
    vanish,
    weights,
)
from photocluster.config import Config
from photocluster.corrections import TreeReader
from photocluster.embedder import (
    DIM,
    INPUT_SIZE,
    PAD_RGB,
    Embedder,
    Vgg16Embedder,
    configure_threads,
)
from photocluster.errors import BadPhotoError, StateError
from photocluster.progress import Progress, Pulse, checkpoint, no_pulse
from photocluster.store import CATALOG, Store, Written
from photocluster.thumbs import Thumbnails, thumbnail_from_file
from photocluster.tree import ClusterTree
from photocluster.tree.overview import THUMBNAIL_EDGE
from photocluster.watch import Change

logger = logging.getLogger(__name__)

EmbedderFactory = Callable[[Config], Embedder]
ProgressFactory = Callable[[int], Progress]  # total -> a progress for that many photos
Stop = Callable[[], bool]
# Files removed per catalog transaction (with a pulse between): each transaction also edits
# the vector index once, so chunks stay large.
REMOVE_CHUNK = 5000
THUMBNAILS = "thumbnails"  # in the state directory: one per content, keyed by its hash
DATED_NAMES = "tree.dated_names"  # meta: the naming the live tree was built with
THUMBS_CURSOR = "thumbnails.next"  # meta: the content id fill_thumbnails goes on from


@dataclass
class Library:
    """The open library. `config` is the worker's live configuration (replaced on reload).

    `pulse` is called between the units of the verbs' long loops (an ingest batch, a cluster of
    a tree build, a chunk of deletes, a stage of applying a recluster): the daemon's worker
    sets it to its heartbeat. It must not raise; a verb that may be abandoned at a stop request
    takes `stop` and makes its own `checkpoint`."""

    config: Config
    store: Store
    tree: ClusterTree
    embedder: Embedder
    thumbnails: Thumbnails
    pulse: Pulse = no_pulse
    group_folders: duplicates.GroupFolders = field(default_factory=duplicates.GroupFolders)
    reader: TreeReader = field(init=False)  # the user's edits of the tree -> the catalog

    def __post_init__(self) -> None:
        self.reader = TreeReader(self.store, self.tree)

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

    @property
    def excluder(self) -> photos.Excluder:
        return photos.Excluder(self.config.paths.exclude_patterns)

    def thumbnail(self, path: str) -> np.ndarray | None:
        """The stored thumbnail of the photo at `path`; its original decoded once more only
        when there is none yet (a library from before thumbnails were kept)."""
        record = self.store.file(path)
        if record is not None and record.content_hash is not None:
            stored = self.thumbnails.read(record.content_hash)
            if stored is not None:
                return stored
        root = self.config.paths.photos
        return photos.thumbnail(root, path, THUMBNAIL_EDGE, self.limits.max_pixels)


def vgg16_embedder(config: Config) -> Embedder:
    """The real model, with weights from the cache or the fetch chain."""
    settings = config.embedding
    configure_threads(settings.threads)
    source = weights.resolve(settings.weights, settings.preprocessing, weights_dir(config))
    return Vgg16Embedder(source, settings.precision, settings.batch_size)


class CatalogModel:
    """The model the catalog's vectors were made with, known by its fingerprint only: all a
    command that embeds nothing needs (`recluster`, `name`, `pin`, `unpin`), without loading
    TensorFlow or fetching any weights."""

    input_size, pad_rgb, dim, batch_size = INPUT_SIZE, PAD_RGB, DIM, 1

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint

    def embed(self, images: np.ndarray) -> np.ndarray:
        raise StateError("no model is loaded for this command")


def catalog_model(config: Config) -> Embedder:
    """A `CatalogModel` for the catalog in the state directory (an empty one when there is
    none: a recluster then finds nothing to do)."""
    if not (config.paths.state / CATALOG).exists():
        return CatalogModel("")
    with Store.open_readonly(config.paths.state) as reader:
        return CatalogModel(reader.model_fingerprint() or "")


def weights_dir(config: Config) -> Path:
    return config.paths.state / "weights"




@contextmanager
def open_library(
    config: Config, role: str, make_embedder: EmbedderFactory = vgg16_embedder
) -> Iterator[Library]:
    """Lock and open the catalog and the tree, load the model; close all on exit.

    Raises LockedError when another process holds the state directory or the cluster tree,
    StateError when the state directory lies inside the photo folder (or the reverse) once
    symlinks are resolved: a sync client would upload the catalog."""
    _check_apart(config.paths.state, config.paths.photos)
    with ExitStack() as stack:
        store = stack.enter_context(Store(config.paths.state, role=role))
        tree = ClusterTree(config.paths.clusters, config.paths.photos, config.tree.dated_names)
        stack.enter_context(locking.hold(tree.lock_path, role))
        thumbnails = Thumbnails(config.paths.state / THUMBNAILS)
        library = Library(config, store, tree, make_embedder(config), thumbnails)
        yield library
        library.reader.close()  # a clean exit only: an exception skips this


def _check_apart(state: Path, photo_root: Path) -> None:
    state_real, photos_real = os.path.realpath(state), os.path.realpath(photo_root)
    if os.path.commonpath([state_real, photos_real]) in (state_real, photos_real):
        raise StateError(
            f"the state directory {state} and the photo folder {photo_root} must lie outside "
            f"each other (they resolve to {state_real} and {photos_real})"
        )


# ---- reconciling the tree with the catalog


def start(library: Library, stop: Stop | None = None) -> ingest.Work:
    """What a starting daemon does first (after READY: the catalog is the truth, the tree
    catches up): mend the tree a crash may have left half done, and find what changed on disk
    while it was stopped (to be ingested next).

    Raises Stopping when `stop()` turns true during a tree rebuild (see `rebuild_tree`)."""
    mend(library, stop)
    try:
        return reconcile(library)
    except FileNotFoundError as error:  # missing, or an empty mount point: never "all gone"
        logger.warning("photo folder %s: %s; paused", library.config.paths.photos, error.strerror)
        return ingest.Work([], [], 0)


def mend(library: Library, stop: Stop | None = None) -> None:
    """Read what the user changed in the tree while it was not watched (`TreeReader.open`),
    then mend the tree a crash may have left half done, or rename its links if asked.

    Raises Stopping as `start` does."""
    check = checkpoint(library.pulse, stop)
    library.thumbnails.remove_leftovers()
    library.reader.open(check)
    before = library.reader.listing()
    with library.reader.rebuilding():
        if not placement.repair_tree(library.store, library.tree, library.thumbnail, check,
                                     library.thumbnails.path_for):
            if library.store.centroids()[0]:  # compared and found in step
                library.reader.in_step(before)
            _rename_links_if_asked(library, check)
    library.reader.trusted = True


def tend(library: Library) -> None:
    """The worker's regular look at the outside: answer the command line's requests, then read
    the user's edits of the tree when a check is due."""
    marking.serve(library.reader, library.config.paths.state)
    library.reader.tend()


def _rename_links_if_asked(library: Library, check: Pulse) -> None:
    """`tree.dated_names` changed since the tree was built: rebuild it under the new names."""
    wanted = "1" if library.tree.dated_names else "0"
    if library.store.meta(DATED_NAMES) in (None, wanted):
        library.store.set_meta(DATED_NAMES, wanted)
        return
    logger.info("tree.dated_names is now %s: renaming the links", library.tree.dated_names)
    last = library.store.last_recluster()
    placement.rebuild_tree(library.store, library.tree, library.thumbnail,
                           last.elbow if last else None, check, library.thumbnails.path_for)
    library.store.set_meta(DATED_NAMES, wanted)


def fill_thumbnails(library: Library, limit: int) -> bool:
    """Make up to `limit` missing thumbnails, for photos embedded before thumbnails were kept
    (new photos get theirs when they are decoded for the model). False once none is missing.
    A cursor in the catalog keeps the place between calls and across restarts."""
    cursor = int(library.store.meta(THUMBS_CURSOR) or 0)
    batch = library.store.canonical_after(cursor, limit)
    for _, content_hash, path, kind in batch:
        if kind == "photo" and not library.thumbnails.has(content_hash):
            _make_thumbnail(library, content_hash, path)
        library.pulse()
    if batch:
        library.store.set_meta(THUMBS_CURSOR, str(batch[-1][0] + 1))
    return len(batch) == limit


def _make_thumbnail(library: Library, content_hash: str, path: str) -> None:
    root, limits = library.config.paths.photos, library.limits
    try:
        found, rgb = thumbnail_from_file(root, path, limits.max_bytes, limits.max_pixels)
    except (BadPhotoError, OSError) as error:  # the next reconciliation deals with the file
        logger.debug("no thumbnail for %r: %s", path, error)
        return
    if found == content_hash:  # else it changed since: ingest makes the new one
        library.thumbnails.put(content_hash, rgb)


def sync(
    library: Library, subtree: str = "", show_bar: bool | None = None, stop: Stop | None = None
) -> ingest.IngestReport:
    """Reconcile the tree (or a subtree) with the catalog: ingest new, drop gone, place new,
    and place rows a crash left unplaced.

    Raises FileNotFoundError when the photo root is missing: never read as "all deleted".
    """
    work = reconcile(library, subtree)
    report = apply_work(library, work, Progress(len(work.to_read), "embedding", bar=show_bar), stop)
    _place_unclustered(library)
    return report


def rescan(library: Library, subtree: str, stop: Stop | None = None) -> None:
    """The daemon's periodic or event-driven reconciliation; a missing subtree is skipped. A
    rescan of everything also forgets vectors kept too long (`forget_old_vectors`)."""
    try:
        sync(library, subtree, show_bar=False, stop=stop)
    except FileNotFoundError as error:
        logger.warning("rescan of %r skipped: %s", subtree, error.strerror)
    if not subtree:
        forget_old_vectors(library)
    library.store.save_index()


def forget_old_vectors(library: Library) -> int:
    """Drop the vectors of contents deleted over `clustering.keep_vectors_days` ago (kept
    until then so that a re-download of the same file costs no embedding); returns how many."""
    days = library.config.clustering.keep_vectors_days
    forgotten = library.store.forget_gone(time.time() - days * 86_400)
    if forgotten:
        logger.info("forgot the vectors of %d photos deleted over %g days ago", forgotten, days)
    return forgotten


def recover(library: Library, stop: Stop | None = None) -> None:
    """Redo what a failed write may have lost: the tree from the catalog, the catalog from disk.

    Raises Stopping as `start` does."""
    mend(library, stop)
    rescan(library, "", stop)


def reconcile(library: Library, subtree: str = "") -> ingest.Work:
    """`ingest.reconcile` of the nearest real folder at or above `subtree`: a subtree that
    vanished (moved out) takes its photos along, one replaced by a symlink is not followed.
    A subtree that no longer exists at all costs only its own catalog rows: a folder of 10 000
    moved out of a library of a million is not a walk of the million.

    Raises FileNotFoundError when the photo root is missing, or empty while the catalog is
    not: an empty root is a bare mount point far more often than a deliberate wipe.
    """
    root = library.config.paths.photos
    wanted = "/".join(part for part in subtree.split("/") if part)
    subtree = _real_folder(root, wanted)
    if subtree != wanted and not os.path.lexists(root / wanted):
        missing = [record.path for record in library.store.files(f"{wanted}/")]
        return ingest.Work([], missing, 0, scope=wanted)
    if not subtree and _is_empty(root) and library.store.count():
        raise FileNotFoundError(errno.ENOENT, "the photo folder is empty (not mounted?)", root)
    excluder = library.excluder
    work = ingest.reconcile(root, library.store, library.fingerprint, subtree, excluder)
    if dropped := sum(1 for path in work.missing if excluder.excludes(path)):
        logger.info("%d files in excluded folders (paths.exclude) leave the clusters", dropped)
    return work


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


# ---- applying changes


def apply_work(
    library: Library, work: ingest.Work, progress: Progress, stop: Stop | None = None
) -> ingest.IngestReport:
    """Read what `work` lists, then drop what is gone: a content whose old path went and which
    was found at a new one (same bytes) was moved, keeping its vector and cluster."""

    def batch_done(count: int) -> None:
        progress(count)
        library.pulse()

    report = ingest.ingest(
        work.to_read,
        library.config.paths.photos,
        library.store,
        library.embedder,
        library.limits,
        batch_done,
        stop,
        library.thumbnails,
    )
    progress.close()
    missing = _deletable(library, work.missing, work.scope)
    gone = _removed(library, missing)
    report.written.extend(gone)
    _follow(library, report.written)
    report.moved = sum(1 for relink in gone.relinks if relink.new is not None)
    logger.info(
        "sync: %d embedded, %d reused, %d moved, %d removed, %d failed, %d unchanged",
        report.embedded,
        report.reused,
        report.moved,
        len(missing) - report.moved,
        report.failed,
        work.unchanged,
    )
    return report


def apply_changes(
    library: Library, changes: Sequence[Change], progress: ProgressFactory, stop: Stop
) -> None:
    """Apply the watcher's changes in its order (a delete then a move onto that name must not
    swap); consecutive upserts form one batch for the model, consecutive deletes one removal
    (one transaction per REMOVE_CHUNK: a folder of 10 000 deleted costs two, not 10 000)."""
    kind, paths = "", list[str]()  # the run of upserts or deletes in hand
    for change in changes:
        library.pulse()  # a burst of single deletes is one step too
        if change.kind in ("upsert", "delete"):
            if change.kind != kind:
                _apply_run(library, kind, paths, progress, stop)
                kind, paths = change.kind, []
            paths.append(change.path)
            continue
        _apply_run(library, kind, paths, progress, stop)
        kind, paths = "", list[str]()
        if change.kind == "move" and change.dest is not None:
            record = library.store.file(change.path)
            if record is None or record.still is not None:  # never seen, or a companion video
                remove(library, [change.path])  # (its still may not be beside it any more)
                kind, paths = "upsert", [change.dest]
            else:
                move(library, change.path, change.dest)
        elif change.kind == "rescan":
            rescan(library, change.path, stop)
    _apply_run(library, kind, paths, progress, stop)


def _apply_run(
    library: Library, kind: str, paths: list[str], progress: ProgressFactory, stop: Stop
) -> None:
    """A run of consecutive upserts or deletes, as one batch."""
    if kind == "upsert" and paths:
        apply_work(library, ingest.Work(paths, [], 0), progress(len(paths)), stop)
    elif kind == "delete":
        remove(library, paths)


def remove(library: Library, paths: list[str]) -> None:
    """Files deleted from the photo folder (unknown ones are ignored), but those a vanished
    folder holds back (`vanish`)."""
    if paths:
        _follow(library, _removed(library, _deletable(library, paths, None)))


def _deletable(library: Library, paths: Sequence[str], scope: str | None) -> list[str]:
    """Those of `paths` (gone from disk) to delete now; the rest are held and reported (see
    `vanish`). `scope`: the folder a reconciliation looked at (its old holds are replaced),
    None for paths the watcher reported."""
    if not paths and scope is None:
        return []
    store, config = library.store, library.config
    mounts = vanish.remembered_mounts(store, config.paths.photos)
    now, holds = vanish.split(paths, vanish.empty_mounts(config.paths.photos, mounts),
                              store.count(), config.watch.max_vanish_share,
                              vanish.confirmed(config.paths.state))
    for hold in holds:
        logger.warning("deletion paused: %s", vanish.describe(hold.folder, hold.photos))
    vanish.record_holds(store, scope, holds)
    return now


def apply_confirmed(library: Library, stop: Stop | None = None) -> None:
    """Carry out `photocluster confirm-deletions`: rescan the folders it names (their missing
    photos are deleted now), forget them as mount points unless mounted, drop the file."""
    folders = vanish.confirmed(library.config.paths.state)
    if not folders:
        return
    logger.info("deletions confirmed under %s; rescanning", ", ".join(map(repr, folders)))
    for folder in folders:
        rescan(library, folder, stop)
    vanish.forget_mounts(library.store, library.config.paths.photos, folders)
    vanish.clear_confirmation(library.config.paths.state)


def _removed(library: Library, paths: Sequence[str]) -> Written:
    """Forget those files in chunks, with a pulse after each."""
    written = Written()
    for start in range(0, len(paths), REMOVE_CHUNK):
        written.extend(library.store.remove(paths[start : start + REMOVE_CHUNK]))
        library.pulse()
    return written


def move(library: Library, old: str, new: str) -> None:
    """A rename inside the tree: same file, content, vector and cluster; the link moves when
    it pointed at the old name."""
    if library.store.file(old) is not None:
        _follow(library, library.store.move(old, new))


def _follow(library: Library, written: Written, link: bool = True) -> None:
    """The live tree follows a catalog write: the user's renames first (links go into the
    folders as they are named now), then links (`placement.follow`), then near-duplicate
    groups and their folders (`duplicates.follow`). The reader takes the folders it changed
    as they are after (`TreeReader.writing`): it does not read them back. Without `link`
    the photos are placed in the catalog only: a new tree is built from it next."""
    if link:
        library.reader.before_linking()
        with library.reader.writing():
            placed = placement.follow(written, library.store, library.tree)
    else:
        placed = placement.place(written.placeable, library.store, None)
    duplicates.follow(written, placed, library.store, library.tree, library.config.duplicates,
                      library.group_folders)


def _place_unclustered(library: Library, link: bool = True) -> None:
    """Place the contents left without a cluster (`placement.place_unclustered`); they join
    their near-duplicate groups as new photos do. Without `link` the catalog only: a new tree
    is built from it next, and the old one is left as the catalog before showed it."""
    unclustered = library.store.unclustered(library.fingerprint)
    _follow(library, Written(placeable=library.store.stored_vectors(unclustered)), link)


# ---- reclustering


def wants_recluster(library: Library) -> bool:
    """The library grew enough since the last recluster (or has none) to recluster now."""
    return recluster.needs_recluster(library.store, library.config.clustering.regrow_ratio)


def snapshot_if_dirty(library: Library, forced: bool) -> recluster.Snapshot | None:
    """A snapshot to recluster, or None when nothing changed since the last one (unforced)."""
    if not forced and not library.store.changed_since_recluster():
        return None
    return recluster.snapshot(library.store, library.fingerprint, library.config.clustering,
                              library.config.duplicates)


def apply_recluster(library: Library, result: recluster.Result, stop: Stop | None = None) -> None:
    """Commit the result, place photos that arrived meanwhile, then swap in a new tree.

    Raises Stopping when `stop()` turns true: before the commit, the result is dropped and
    nothing changes (the next recluster is still due); after it, the tree rebuild is abandoned
    (see `placement.rebuild_tree`) and the next start repairs the tree from the catalog."""
    store, tree = library.store, library.tree
    check = checkpoint(library.pulse, stop)
    check()
    library.reader.check(full=True, between=check)  # the user's edits before the result lands
    before = store.folder_names()
    with closing(store.read_view()) as shown:  # the catalog the old tree shows
        moves = recluster.commit(result, store)
        corrections.report_recluster(before, store.folder_names(), result.fates, moves)
        library.pulse()
        _place_unclustered(library, link=False)  # the old tree stays as `shown` says
        library.pulse()
        with library.reader.rebuilding(before, result.fates, shown):
            placement.rebuild_tree(store, tree, library.thumbnail, result.info.elbow, check,
                                   library.thumbnails.path_for)


def recluster_now(library: Library, force: bool, dry_run: bool = False) -> list[str] | None:
    """Elbow + KMeans++ over everything, then swap in the new tree.

    Skipped (returns None) when nothing changed since the last recluster, unless `force`.
    With `dry_run`, returns the changes it would make and writes nothing.
    """
    snap = snapshot_if_dirty(library, force or dry_run)
    if snap is None:
        logger.info("recluster skipped: nothing changed since the last one")
        return None
    if len(snap.ids) == 0:
        snap.close()
        logger.info("recluster skipped: no photos with vectors yet")
        return None
    result = recluster.compute(snap)
    if dry_run:
        return placement.describe(result.assignment, library.store, library.tree)
    apply_recluster(library, result)
    return []


def scan(library: Library, show_bar: bool | None = None) -> None:
    """The one-shot batch: read the user's edits of the tree, sync everything (confirmed
    deletions included), forget old vectors, recluster when needed, repair the tree."""
    mend(library)
    sync(library, show_bar=show_bar)
    vanish.clear_confirmation(library.config.paths.state)  # the sync applied it
    forget_old_vectors(library)
    if recluster_now(library, force=False) is None:
        with library.reader.rebuilding():
            placement.repair_tree(library.store, library.tree, library.thumbnail,
                                  thumbnail_file=library.thumbnails.path_for)

"""Ingest: bring the catalog in line with the photo tree.

`reconcile` compares a walk of the tree with the catalog and says what to read and what is
gone. `ingest` reads, hashes and decodes on a thread pool while the model embeds the batch
before (TensorFlow and OpenCV release the GIL), then stores each batch in one transaction. A
file whose content is already known is never decoded or embedded again: a copy, a rename or
move, a touched file, or a re-download of a photo deleted not long ago all reuse its vector.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from photocluster import copies, photos
from photocluster.embedder import Embedder
from photocluster.loading import Limits, Loaded, Loader
from photocluster.photos import Excluder, video
from photocluster.store import NewCompanion, NewFile, Store, Written
from photocluster.thumbs import Thumbnails

__all__ = ["IngestReport", "Limits", "Work", "ingest", "reconcile"]

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of photos just handled
# Batches decoded ahead of the one being embedded: two absorb a slow photo (a 12 MP HEIC costs
# as much to decode as ~20 JPEGs) without the model waiting; each is batch x 150 KB of pixels.
PREFETCH_BATCHES = 2
_SCAN_ABOVE = 1000  # paths; more than this and one read of every hash beats a lookup per path


@dataclass(frozen=True)
class Work:
    """What a reconciliation found: paths to read (best copies first), and catalog paths gone
    from disk."""

    to_read: list[str]
    missing: list[str]
    unchanged: int
    scope: str | None = None  # the folder reconciled ("" the root); None: not a reconciliation


@dataclass
class IngestReport:
    embedded: int = 0
    reused: int = 0
    failed: int = 0
    vanished: int = 0
    moved: int = 0  # missing paths whose content was found at a new path (set by the caller)
    written: Written = field(default_factory=Written)  # what the tree must follow


def reconcile(
    photo_root: Path, store: Store, fingerprint: str, subtree: str = "",
    excluder: Excluder | None = None,
) -> Work:
    """Compare the tree (or one subtree of it) with the catalog: photos and videos, minus what
    `excluder` leaves out (such folders are not even listed). The walk is compared as it
    goes: only the catalog's side is held (~230 bytes a file; at 1M the two sides held whole
    took 1.3 GB)."""
    top = photo_root / subtree if subtree else photo_root
    prefix = f"{subtree.rstrip('/')}/" if subtree else ""
    below = excluder.below(subtree.rstrip("/")) if excluder is not None and subtree else excluder
    known = store.file_stamps(fingerprint, prefix)  # what is left of it at the end is missing
    to_read, unchanged = [], 0
    for rel, stat in photos.walk(top, below, photos.is_media):
        stamp = known.pop(prefix + rel, None)
        # A failed file is retried only when it changes; a vector of another model is redone.
        if stamp is None or stamp != (stat.st_size, stat.st_mtime_ns, True):
            to_read.append(prefix + rel)
        else:
            unchanged += 1
    to_read.sort(key=copies.canonical_key)  # the first copy stored of a content is its best
    return Work(to_read=to_read, missing=sorted(known), unchanged=unchanged, scope=subtree)


def ingest(
    paths: Sequence[str],
    photo_root: Path,
    store: Store,
    embedder: Embedder,
    limits: Limits,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
    thumbnails: Thumbnails | None = None,
) -> IngestReport:
    """Read, embed and store `paths`, in that order, batch by batch.

    `stop` is asked between batches: the daemon's shutdown finishes the batch in hand and
    leaves the rest for the next start's reconciliation.
    """
    report = IngestReport()
    known = _known_hashes(store, paths, embedder.fingerprint)
    load = Loader(photo_root, embedder, limits, known, thumbnails)
    with ThreadPoolExecutor(decode_threads(), thread_name_prefix="decode") as pool:
        for batch in _prefetched(pool, load, paths, embedder.batch_size, PREFETCH_BATCHES):
            _store_batch(batch, store, embedder, report)
            if progress is not None:
                progress(len(batch))
            if stop is not None and stop():
                break
    return report


def decode_threads() -> int:
    """One per core. Decoding runs in bursts (until PREFETCH_BATCHES are ready), so the model
    loses no more CPU than the decoding needs: measured on 2 cores, CPU time per photo end to
    end is the model's plus the decoder's, with no spinning or contention on top; one thread,
    or decoding between batches instead of beside them, were no faster (bench/throughput.py)."""
    return os.cpu_count() or 1


def _known_hashes(store: Store, paths: Sequence[str], fingerprint: str) -> set[str]:
    """Hashes with a stored vector, so that their files need no decoding. A few paths are
    looked up one by one (a touched or re-synced file usually still holds the content its row
    has): one settled photo must not wait for a read of every hash. A new copy of a known
    content is caught after hashing instead, and then not embedded."""
    if len(paths) > _SCAN_ABOVE:
        return store.known_hashes(fingerprint)
    records = (store.file(path) for path in paths)
    return {r.content_hash for r in records
            if r is not None and r.content_hash and r.fingerprint == fingerprint}


def _prefetched(
    pool: ThreadPoolExecutor,
    load: Callable[[str], Loaded],
    paths: Sequence[str],
    size: int,
    ahead: int,
) -> Iterator[list[Loaded]]:
    """Yield loaded batches of `size`, in order, while the pool works on the next `ahead`.

    When the consumer stops early, work not yet started is cancelled.
    """
    pending: deque[list[Future[Loaded]]] = deque()
    try:
        for start in range(0, len(paths), size):
            pending.append([pool.submit(load, path) for path in paths[start : start + size]])
            if len(pending) > ahead:
                yield [future.result() for future in pending.popleft()]
        while pending:
            yield [future.result() for future in pending.popleft()]
    finally:
        for futures in pending:
            for future in futures:
                future.cancel()


def _store_batch(
    batch: list[Loaded], store: Store, embedder: Embedder, report: IngestReport
) -> None:
    """Failures first (one transaction each), then the batch's files in one transaction. Two
    copies of a new content in one batch are embedded once."""
    known: list[NewFile] = []
    to_embed: dict[str, Loaded] = {}  # content hash -> the first file holding it
    copies: list[NewFile] = []  # further files of a content in `to_embed`: stored after it
    companions: list[NewCompanion] = []
    for item in batch:
        if item.vanished:
            report.vanished += 1
        elif item.still is not None:
            companions.append(NewCompanion(item.path, item.size, item.mtime_ns, item.still))
        elif item.error is not None:
            logger.warning("skipped %r: %s", item.path, item.error)
            report.written.extend(store.put_failure(item.path, item.size, item.mtime_ns,
                                                    item.error))
            report.failed += 1
        elif item.content_hash in to_embed:
            copies.append(_file(item))
        elif item.frames is None or store.has_vector(item.content_hash, embedder.fingerprint):
            known.append(_file(item))
        else:
            to_embed[item.content_hash] = item
    items = known + _embedded(list(to_embed.values()), embedder) + copies
    written = store.put_files(items, embedder.fingerprint)
    if companions:  # after their stills, which may be in this batch
        written.extend(store.put_companions(companions))
    for path in written.skipped:  # its content was forgotten since reading began; rare
        logger.debug("the content of %r is no longer known; it will be read again", path)
    report.embedded += len(to_embed)
    report.reused += len(items) - len(to_embed) - len(written.skipped)
    report.written.extend(written)


def _file(item: Loaded, vector: np.ndarray | None = None) -> NewFile:
    return NewFile(item.path, item.size, item.mtime_ns, item.content_hash, vector, item.kind,
                   item.taken, item.dimensions)


def _embedded(items: list[Loaded], embedder: Embedder) -> list[NewFile]:
    """Embed every frame of the batch in one call; a video's vector is its frames' mean."""
    if not items:
        return []
    frames = [item.frames for item in items if item.frames is not None]
    vectors = embedder.embed(np.concatenate(frames))  # (total frames, 512) float32
    ends = np.cumsum([len(f) for f in frames])  # (n,)
    return [_file(item, video.mean_vector(vectors[end - len(f) : end]) if len(f) > 1 else
                  vectors[end - 1])
            for item, f, end in zip(items, frames, ends, strict=True)]

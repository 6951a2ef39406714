"""Ingest: bring the catalog in line with the photo tree.

`reconcile` compares a walk of the tree with the catalog and says what to read and what is
gone. `ingest` reads, hashes and decodes on a thread pool while the model embeds the batch
before (TensorFlow and OpenCV release the GIL), then stores each batch in one transaction. A
photo whose content hash is already known reuses its vector, so renames, moves and exact
duplicates are never embedded again.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from photocluster import photos
from photocluster.embedder import Embedder
from photocluster.errors import BadPhotoError
from photocluster.store import NewVector, PhotoRecord, Store, StoredVector

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of photos just handled
# Batches decoded ahead of the one being embedded: two absorb a slow photo (a 12 MP HEIC costs
# as much to decode as ~20 JPEGs) without the model waiting; each is batch x 150 KB of pixels.
PREFETCH_BATCHES = 2
_SCAN_ABOVE = 1000  # paths; more than this and one catalog scan beats a lookup per path


@dataclass(frozen=True)
class Work:
    """What a reconciliation found: paths to read, and catalog paths gone from disk."""

    to_read: list[str]
    missing: list[str]
    unchanged: int


@dataclass(frozen=True)
class Loaded:
    """One photo after the thread pool: decoded pixels, a reusable hash, or why it failed."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    content_hash: str = ""
    image: np.ndarray | None = None  # (s, s, 3) uint8 RGB; None when the hash is already known
    error: str | None = None
    vanished: bool = False


@dataclass
class IngestReport:
    embedded: int = 0
    reused: int = 0
    moved: int = 0
    failed: int = 0
    vanished: int = 0
    stored: list[StoredVector] = field(default_factory=list)  # rows whose vector was stored


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int


def reconcile(photo_root: Path, store: Store, fingerprint: str, subtree: str = "") -> Work:
    """Compare the tree (or one subtree of it) with the catalog."""
    top = photo_root / subtree if subtree else photo_root
    prefix = f"{subtree.rstrip('/')}/" if subtree else ""
    on_disk = {prefix + rel: stat for rel, stat in photos.walk(top)}
    known = {r.path: r for r in store.photos() if r.path.startswith(prefix)}
    to_read = [p for p, st in on_disk.items() if _needs_reading(known.get(p), st, fingerprint)]
    missing = sorted(set(known) - set(on_disk))
    return Work(to_read=to_read, missing=missing, unchanged=len(on_disk) - len(to_read))


def _needs_reading(record: PhotoRecord | None, stat: os.stat_result, fingerprint: str) -> bool:
    if record is None or record.size != stat.st_size or record.mtime_ns != stat.st_mtime_ns:
        return True
    # A failed photo is retried only when the file changes; a stale vector is redone.
    return record.error is None and record.fingerprint != fingerprint


def ingest(
    paths: Sequence[str],
    photo_root: Path,
    store: Store,
    embedder: Embedder,
    limits: Limits,
    missing: Iterable[str] = (),
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
) -> IngestReport:
    """Read, embed and store `paths`; a file whose hash matches a `missing` row is a move.

    `stop` is asked between batches: the daemon's shutdown finishes the batch in hand and
    leaves the rest for the next start's reconciliation.
    """
    report = IngestReport()
    moves = _hashes_of(store, missing)
    known = _known_hashes(store, paths, embedder.fingerprint) | set(moves)
    load = _loader(photo_root, embedder, limits, known)
    with ThreadPoolExecutor(decode_threads(), thread_name_prefix="decode") as pool:
        for batch in _prefetched(pool, load, paths, embedder.batch_size, PREFETCH_BATCHES):
            _store_batch(batch, store, embedder, moves, report)
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
    """Hashes with a stored vector, so that their photos need no decoding: a touched or
    re-synced file usually still holds the content its catalog row has. A few paths are looked
    up one by one: a scan of the catalog costs ~0.7 s at 100 000 photos, and one settled
    photo must not wait for it. A copy of another photo is caught after decoding instead."""
    if len(paths) > _SCAN_ABOVE:
        records = store.photos()
    else:
        records = [record for record in map(store.photo, paths) if record is not None]
    return {r.content_hash for r in records if r.content_hash and r.fingerprint == fingerprint}


def _hashes_of(store: Store, missing: Iterable[str]) -> dict[str, str]:
    """content hash -> catalog path, for rows whose file is gone (candidates for a move)."""
    moves: dict[str, str] = {}
    for path in missing:
        record = store.photo(path)
        if record is not None and record.content_hash and record.error is None:
            moves.setdefault(record.content_hash, path)
    return moves


def _loader(
    root: Path, embedder: Embedder, limits: Limits, known: set[str]
) -> Callable[[str], Loaded]:
    size, fill = embedder.input_size, embedder.pad_rgb  # the model's input rule

    def load(path: str) -> Loaded:
        try:
            file = photos.read_photo(root, path, limits.max_bytes)
        except FileNotFoundError:
            return Loaded(path, vanished=True)
        except BadPhotoError as error:
            return _failure(root, path, error.reason)
        base = Loaded(path, file.size, file.mtime_ns, file.content_hash)
        if file.content_hash in known:
            return base
        try:
            image = photos.decode_rgb(file.data, size, limits.max_pixels, fill)
        except BadPhotoError as error:
            return Loaded(path, file.size, file.mtime_ns, file.content_hash, error=error.reason)
        return Loaded(path, file.size, file.mtime_ns, file.content_hash, image=image)

    return load


def _failure(root: Path, path: str, reason: str) -> Loaded:
    try:
        stat = os.lstat(root / path)
    except OSError:
        return Loaded(path, vanished=True)
    return Loaded(path, stat.st_size, stat.st_mtime_ns, error=reason)


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
    batch: list[Loaded],
    store: Store,
    embedder: Embedder,
    moves: dict[str, str],
    report: IngestReport,
) -> None:
    fresh: list[NewVector] = []
    to_embed: list[Loaded] = []
    for item in batch:
        if item.vanished:
            report.vanished += 1
        elif item.error is not None:
            logger.warning("skipped %s: %s", item.path, item.error)
            store.put_failure(item.path, item.size, item.mtime_ns, item.error)
            report.failed += 1
        elif item.content_hash in moves and store.photo(item.path) is None:
            store.move(moves.pop(item.content_hash), item.path)
            report.moved += 1
        elif (reused := _reused(item, store, embedder.fingerprint)) is not None:
            fresh.append(reused)
            report.reused += 1
        elif item.image is not None:
            to_embed.append(item)
        else:  # its hash was known when reading began, but that row is gone since; rare
            logger.debug("hash of %s no longer known; it will be read again", item.path)
    fresh.extend(_embedded(to_embed, embedder))
    report.embedded += len(to_embed)
    if fresh:
        ids = store.put_vectors(fresh, embedder.fingerprint)
        report.stored += [
            StoredVector(i, item.path, item.vector) for i, item in zip(ids, fresh, strict=True)
        ]


def _reused(item: Loaded, store: Store, fingerprint: str) -> NewVector | None:
    """The stored vector of the same content (a rename, a copy, a touched file), if any."""
    vector = store.vector_for_hash(item.content_hash, fingerprint)
    if vector is None:
        return None
    return NewVector(item.path, item.size, item.mtime_ns, item.content_hash, vector)


def _embedded(items: list[Loaded], embedder: Embedder) -> list[NewVector]:
    if not items:
        return []
    images = np.stack([item.image for item in items if item.image is not None])  # (n, s, s, 3)
    vectors = embedder.embed(images)  # (n, 512) float32
    return [
        NewVector(item.path, item.size, item.mtime_ns, item.content_hash, vector)
        for item, vector in zip(items, vectors, strict=True)
    ]

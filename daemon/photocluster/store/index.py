"""The vector index: every live content's vector as a float32 row of a flat file beside the
catalog, searched chunk by chunk; ids = content ids.

Why a file and not a FAISS index in RAM: an in-memory `IndexFlatIP` holds 2 KiB a photo (2 GB
at 1M, three copies during a rebuild) for searches that scan every vector anyway (similar
photos, near duplicates). Here memory holds only two id arrays (slot -> id and id -> slot, 16
bytes a photo); a search maps the file `CHUNK_ROWS` rows (64 MiB) at a time, read-only, and
scores each chunk with one BLAS product, so what it reads is page cache (the kernel's to
reclaim), never more than a chunk of it mapped. float32, not float16: this machine's numpy and
faiss-cpu (its generic build) turn float16 into float32 element by element, so at 100 000
photos one query over float16 codes took ~180 ms against ~25-60 ms over float32 rows, and a
placed photo's near-duplicate join must stay near 50 ms there; the price is the file, 2 KiB a
photo (2 GB at 1M), and at 1M a search is bound by reading it (BENCHMARKS.md, scale). The
catalog keeps the vectors too, and stays the truth.

Crash safety without rewriting the file: rows the saved state refers to are never written
again until the next save. New vectors go into slots no saved state refers to (appended, or
freed before the last save); a removal only marks the slot free in memory. `save` fsyncs the
rows, then writes the slot list (`IDS`) and then the stamp (the catalog's change counter and
the slot list's digest), each atomically: a crash anywhere leaves either the old triple or a
stamp that no longer matches, and a stamp that does not match the catalog costs a rebuild,
never a wrong index. A save writes 8 bytes a photo (the slot list) plus the new rows' fsync:
under a second at 1M. When more than half the slots are free, a save compacts the file.

Inside a catalog transaction (`begin` .. `commit` or `rollback`) changes are journalled, so a
failed write restores the index in memory instead of rebuilding it from the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from photocluster import fsutil
from photocluster.errors import StateError

logger = logging.getLogger(__name__)

INDEX, IDS, STAMP = "index.f32", "index.ids", "index.stamp"
# earlier versions' index files, deleted at load: FAISS's, then float16 rows
LEGACY = ("index.faiss", "index.vectors")
ROW = np.dtype("<f4")  # one vector component on disk
CHUNK_ROWS = 32_768  # rows mapped at a time when searching: 64 MiB of 512-d float32
# A file up to this size stays mapped between searches (256k photos): a placed photo's search
# then finds its pages mapped instead of mapping and faulting them in again (at 100k photos
# ~30 against ~45 ms a query). Above it each search maps one chunk at a time, so that a
# million photos never show as 2 GB of the daemon's memory (they are page cache either way).
KEEP_MAPPED_BYTES = 512 << 20
Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]
Chunk = tuple[Ids, Vectors]  # (n,) ids and their (n, dim) vectors


class VectorIndex:
    """The index of one state folder; use it from one thread. Touches the disk from `load` or
    `rebuild` on; `close` releases the file."""

    def __init__(self, folder: Path, dim: int) -> None:
        self._folder, self._dim, self._row_bytes = folder, dim, dim * ROW.itemsize
        self._fd: int | None = None
        self._slots = np.full(0, -1, np.int64)  # (capacity,) slot -> content id, -1: free
        self._used = 0  # rows [0, used) are in the file
        self._slot_of = np.full(0, -1, np.int64)  # (max id + 1,) content id -> slot, -1: none
        self._count = 0
        self._reusable: list[int] = []  # free slots that no saved state refers to
        self._freed: list[int] = []  # freed since the last save: reusable after the next one
        self._saved = ""  # the stamp the files on disk hold for this very state, or ""
        self._saved_used = 0
        self._undo: list[tuple[int, int, bool]] | None = None  # (slot, id it held, reused)
        self._mark = (0, 0)  # (used, len(freed)) at `begin`
        self._map: Vectors | None = None  # the file's rows mapped, kept while the file is small

    @property
    def count(self) -> int:
        return self._count

    # ---- the files

    def load(self, stamp: str, expected: int) -> str | None:
        """Adopt the saved index if its stamp is `stamp` and it holds `expected` vectors.

        Returns None when loaded, else why not (the caller then rebuilds)."""
        for name in LEGACY:
            with contextlib.suppress(OSError):
                (self._folder / name).unlink()
        try:
            fields = (self._folder / STAMP).read_text().split()
            if fields[:1] != [stamp]:
                return f"stamp {fields[:1]} is not the catalog's {stamp}"
            raw = (self._folder / IDS).read_bytes()
            if fields[1:] != [_digest(raw), str(self._dim)]:
                return "the index's slot list is corrupt"
            size = os.stat(self._folder / INDEX).st_size
        except FileNotFoundError:
            return "no saved index"
        except (OSError, UnicodeDecodeError) as exc:
            return f"unreadable index: {exc}"
        slots = np.frombuffer(raw, "<i8").astype(np.int64)  # (n,)
        if size < len(slots) * self._row_bytes or int((slots >= 0).sum()) != expected:
            return "the index does not match the catalog"
        self._adopt(slots)
        self._saved, self._saved_used = stamp, len(slots)
        logger.debug("loaded the vector index (%d vectors)", self._count)
        return None

    def rebuild(self, chunks: Iterable[Chunk], reason: str) -> None:
        """Replace the contents with the vectors of `chunks`, written as they come (bounded
        memory). Raises StateError when the file cannot be written."""
        started = time.monotonic()
        try:
            self._forget_saved()
            self._map = None  # before the file shrinks under it
            fd = self._file()
            os.ftruncate(fd, 0)
            parts, offset = [], 0
            for ids, vectors in chunks:
                written = _write_all(fd, _rows(vectors, self._dim), offset)
                _write_behind(fd, offset, written)
                offset += written
                parts.append(np.asarray(ids, np.int64))
        except OSError as exc:
            raise StateError(f"cannot rebuild the vector index: {exc}") from exc
        self._adopt(np.concatenate(parts) if parts else np.full(0, -1, np.int64))
        logger.info("rebuilt the vector index from the catalog (%s): %d vectors in %.1f s",
                    reason, self._count, time.monotonic() - started)

    def save(self, stamp: str) -> None:
        """Make the file's rows durable, then write the slot list and the stamp, each
        atomically; a no-op when the files already hold this stamp. StateError when they
        cannot be written (a full disk): the stamp then no longer matches, and the next open
        rebuilds."""
        if stamp == self._saved:
            return
        try:
            if len(self._reusable) + len(self._freed) > max(self._used // 2, CHUNK_ROWS):
                self._compact()
            fd = self._file()
            os.ftruncate(fd, self._used * self._row_bytes)  # rows a rollback left behind
            os.fsync(fd)
            slots = self._slots[: self._used].astype("<i8").tobytes()
            fsutil.atomic_write(self._folder / IDS, slots)
            fsutil.atomic_write(self._folder / STAMP, f"{stamp} {_digest(slots)} {self._dim}\n"
                                .encode())
        except OSError as exc:
            raise StateError(f"cannot save the vector index in {self._folder}: {exc}") from exc
        self._saved, self._saved_used = stamp, self._used
        self._reusable += self._freed
        self._freed = []
        logger.debug("saved the vector index (%d vectors)", self._count)

    def close(self) -> None:
        self._map = None  # the file may be replaced (compaction) or left
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    # ---- changes, journalled between begin and commit/rollback

    def begin(self) -> None:
        """Start journalling: `rollback` undoes every change from here."""
        self._undo, self._mark = [], (self._used, len(self._freed))

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        """Undo the changes since `begin` (rows written meanwhile become garbage past `used`
        or in free slots, which nothing reads)."""
        undo, self._undo = self._undo or [], None
        for slot, previous, reused in reversed(undo):
            self._assign(slot, previous)
            if reused:
                self._reusable.append(slot)
        self._used = self._mark[0]
        del self._freed[self._mark[1]:]

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """Add (n,) ids with their (n, dim) vectors; an id already held gets the new vector.
        Raises StateError when the file cannot be written (a full disk)."""
        rows = _rows(vectors, self._dim)
        try:
            for position, content in enumerate(np.asarray(ids, np.int64).tolist()):
                self._remove_one(content)
                slot = self._take_slot()
                row = rows[position * self._row_bytes: (position + 1) * self._row_bytes]
                _write_all(self._file(), row, slot * self._row_bytes)
                self._assign(slot, content)
        except OSError as exc:
            raise StateError(f"cannot write the vector index: {exc}") from exc

    def remove(self, ids: Ids) -> None:
        """Forget those ids (unknown ones are ignored): O(1) each, nothing written."""
        for content in np.asarray(ids, np.int64).tolist():
            self._remove_one(content)

    # ---- reads

    def ids(self) -> Ids:
        """(n,) int64: every id held, in slot order (for consistency checks)."""
        slots = self._slots[: self._used]
        return slots[slots >= 0].copy()

    def reconstruct(self, ids: Ids) -> Vectors:
        """(n, dim) float32 vectors of those ids as stored. KeyError for an id the index does
        not hold."""
        wanted = np.asarray(ids, np.int64)
        inside = (wanted >= 0) & (wanted < len(self._slot_of))
        slots = np.full(len(wanted), -1, np.int64)
        slots[inside] = self._slot_of[wanted[inside]]
        if (slots < 0).any():
            raise KeyError(f"not in the vector index: {wanted[slots < 0][:5].tolist()}")
        result = np.empty((len(wanted), self._dim), np.float32)
        for position, slot in enumerate(slots.tolist()):
            data = os.pread(self._file(), self._row_bytes, slot * self._row_bytes)
            result[position] = np.frombuffer(data, ROW)
        return result

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        """The `k` held vectors with the largest inner product with each of the (m, dim)
        `queries` (a (dim,) one is one query): scores (m, k) float32 and ids (m, k) int64, best
        first; where fewer than k are held, the rest are -inf and -1. One pass over the file.
        ValueError for queries of another dimension or k < 1."""
        matrix = self._queries(queries)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        scores = np.full((len(matrix), k), -np.inf, np.float32)  # (m, k)
        found = np.full((len(matrix), k), -1, np.int64)  # (m, k)
        for slots, block in self._chunks():
            products = matrix @ block.T  # (m, c)
            products[:, slots < 0] = -np.inf  # free slots hold stale rows
            if k < products.shape[1]:  # the chunk's best k first: the merge stays small
                part = np.argpartition(-products, k - 1, axis=1)[:, :k]  # (m, k), unordered
                products, columns = np.take_along_axis(products, part, 1), part
            else:
                columns = np.broadcast_to(np.arange(products.shape[1]), products.shape)
            chunk_ids = np.where(np.isfinite(products), slots[columns], -1)  # (m, k')
            scores, found = _best(np.hstack([scores, products]),
                                  np.hstack([found, chunk_ids]), k)
        return scores, found

    def range_search(self, vector: Vectors, radius: float) -> tuple[Ids, Vectors]:
        """Every held vector whose inner product with the (dim,) `vector` exceeds `radius`:
        ids (r,) int64 and scores (r,) float32, best first. One pass over the file."""
        query = self._queries(vector)[0]  # (dim,)
        ids, scores = [np.full(0, -1, np.int64)], [np.full(0, 0, np.float32)]
        for slots, block in self._chunks():
            products = block @ query  # (c,)
            keep = (products > radius) & (slots >= 0)
            ids.append(slots[keep])
            scores.append(products[keep].astype(np.float32))
        all_ids, all_scores = np.concatenate(ids), np.concatenate(scores)
        order = np.argsort(-all_scores, kind="stable")
        return all_ids[order], all_scores[order]

    # ---- helpers

    def _queries(self, queries: Vectors) -> Vectors:
        matrix = np.ascontiguousarray(queries, np.float32)
        matrix = matrix.reshape(1, -1) if matrix.ndim == 1 else matrix
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            raise ValueError(f"expected (m, {self._dim}) queries, got shape {matrix.shape}")
        return matrix

    def _chunks(self) -> Iterator[tuple[Ids, Vectors]]:
        """(slots (c,), their rows (c, dim) float32) for each chunk of the file, read through
        a read-only map: the whole file's while it is small (`KEEP_MAPPED_BYTES`), else a map
        of that chunk alone, unmapped once the caller lets go of it."""
        if self._used and os.fstat(self._file()).st_size < self._used * self._row_bytes:
            raise StateError(f"the vector index in {self._folder} is shorter than it was")
        whole = self._kept_map()
        for start in range(0, self._used, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, self._used - start)
            block = whole[start: start + rows] if whole is not None else np.asarray(np.memmap(
                self._folder / INDEX, ROW, "r", start * self._row_bytes, (rows, self._dim)))
            yield self._slots[start: start + rows], block
            del block

    def _kept_map(self) -> Vectors | None:
        """The first `used` rows of the file mapped and kept, or None for a large file. Rows
        written since it was made are seen through it (one page cache); rows appended past
        it make a new one."""
        size = self._used * self._row_bytes
        if not size or size > KEEP_MAPPED_BYTES:
            self._map = None
            return None
        if self._map is None or len(self._map) < self._used:
            self._map = np.asarray(np.memmap(self._folder / INDEX, ROW, "r", 0,
                                             (self._used, self._dim)))
        return self._map[: self._used]

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._folder / INDEX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                               fsutil.PRIVATE_FILE)
            os.fchmod(self._fd, fsutil.PRIVATE_FILE)  # O_CREAT's mode is cut by the umask
        return self._fd

    def _adopt(self, slots: Ids) -> None:
        """Take `slots` (slot -> id, -1 free) as the layout of the whole file."""
        self._slots, self._used = slots.copy(), len(slots)
        live = slots >= 0
        self._slot_of = np.full(int(slots.max(initial=-1)) + 1, -1, np.int64)
        self._slot_of[slots[live]] = np.flatnonzero(live)
        self._count = int(live.sum())
        self._reusable, self._freed = np.flatnonzero(~live).tolist(), []
        self._undo = None

    def _forget_saved(self) -> None:
        """Before rows a saved state refers to are rewritten: its stamp goes first, durably."""
        (self._folder / STAMP).unlink(missing_ok=True)
        fsutil.fsync_dir(self._folder)
        self._saved, self._saved_used = "", 0

    def _compact(self) -> None:
        """Rewrite the file with its live rows only (more than half its slots were free)."""
        live = np.flatnonzero(self._slots[: self._used] >= 0)
        started, kept = time.monotonic(), self._slots[live]

        def write(temp: str) -> None:
            with open(temp, "wb") as out:
                for start in range(0, len(live), CHUNK_ROWS):
                    for slot in live[start: start + CHUNK_ROWS].tolist():
                        out.write(os.pread(self._file(), self._row_bytes,
                                           slot * self._row_bytes))

        self._forget_saved()
        fsutil.atomic_write(self._folder / INDEX, write)
        self.close()
        self._adopt(kept)
        logger.info("compacted the vector index to %d vectors in %.1f s", len(kept),
                    time.monotonic() - started)

    def _take_slot(self) -> int:
        if self._reusable:
            slot = self._reusable.pop()
            self._journal(slot, -1, True)
            return slot
        if self._used == len(self._slots):
            grown = np.full(max(2 * len(self._slots), 1024), -1, np.int64)
            grown[: len(self._slots)] = self._slots
            self._slots = grown
        self._used += 1
        self._journal(self._used - 1, -1, False)
        return self._used - 1

    def _remove_one(self, content: int) -> None:
        slot = self._slot_of[content] if 0 <= content < len(self._slot_of) else -1
        if slot < 0:
            return
        self._journal(int(slot), content, False)
        self._assign(int(slot), -1)
        self._freed.append(int(slot))

    def _assign(self, slot: int, content: int) -> None:
        """Slot `slot` now holds `content` (-1: nothing); the id map follows."""
        before = int(self._slots[slot])
        if before >= 0:
            self._slot_of[before] = -1
            self._count -= 1
        self._slots[slot] = content
        if content >= 0:
            if content >= len(self._slot_of):
                grown = np.full(max(2 * len(self._slot_of), content + 1, 1024), -1, np.int64)
                grown[: len(self._slot_of)] = self._slot_of
                self._slot_of = grown
            self._slot_of[content] = slot
            self._count += 1

    def _journal(self, slot: int, previous: int, reused: bool) -> None:
        if self._undo is not None:
            self._undo.append((slot, previous, reused))


def _rows(vectors: Vectors, dim: int) -> bytes:
    """(n, dim) vectors as stored: little-endian float32 rows. ValueError for another shape."""
    array = np.asarray(vectors, np.float32)
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"expected (n, {dim}) vectors, got shape {array.shape}")
    return array.astype(ROW).tobytes()


def _best(scores: Vectors, ids: Ids, k: int) -> tuple[Vectors, Ids]:
    """The k best of each row of (m, c) scores and ids, best first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (m, k)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _write_all(fd: int, data: bytes, offset: int) -> int:
    view, written = memoryview(data), 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
    return written


def _write_behind(fd: int, offset: int, length: int) -> None:
    """Start writing those rows to disk now, without waiting: on Linux POSIX_FADV_DONTNEED
    starts writeback of the dirty range (and drops only pages already clean), as PostgreSQL's
    pg_flush_data does where sync_file_range is missing. A rebuilt index at 1M photos is 2 GB:
    left to the kernel's lazy writeback, the fsync of the next save took 16 s, at a stop."""
    with contextlib.suppress(OSError, AttributeError):  # advice only; not every OS has it
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()

"""The SQLite catalog (the truth) and a FAISS index of its vectors (a rebuildable cache).

Every write transaction bumps a change counter in `meta`. `index.stamp` holds the counter the
index was saved at (and the index file's digest); the index is loaded only when that matches the
catalog, so a crash between a catalog write and an index save costs a rebuild, never a wrong index.

Vectors live in their own table, in 16 KiB pages. A 2 KiB vector in the photo row (schema 1)
made every row fill a 4 KiB page alone: a catalog twice the size of its vectors, and every
metadata scan (reconciliation, the tree plan, a recluster commit) read or rewrote all of them.
Measured at 100k photos of 512-d, schema 1 -> 2, same run, 2 shared cores: catalog 421 -> 255 MB;
photos() 0.50-0.67 -> 0.31-0.35 s; commit_recluster renaming every photo 2.9-8.1 -> 0.5-0.6 s;
put_vectors of 100k in batches of 5000 8.0-12.7 -> 5.3-5.4 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from photocluster import fsutil, locking
from photocluster.errors import StateError
from photocluster.records import ElbowCurve, ReclusterInfo

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # PRAGMA user_version; each version adds its migration in _open_schema
PAGE_SIZE = 16_384  # new catalogs: 7 vectors of 512-d a page (a 4 KiB page holds only one)
CATALOG, INDEX, STAMP = "catalog.sqlite", "index.faiss", "index.stamp"
_CHANGES, _CATALOG_ID, _DIM = "store.changes", "store.catalog_id", "store.dim"  # reserved keys
_PHOTOS = """
CREATE TABLE photos (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE, -- os.fsencode(path)
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, content_hash TEXT,
    fingerprint TEXT, -- the model of its row in `vectors`; NULL when it has none (failed)
    cluster TEXT, error TEXT, added_at REAL NOT NULL,
    in_recluster INTEGER NOT NULL DEFAULT 0); -- 1: the last recluster clustered this vector
CREATE TABLE vectors (id INTEGER PRIMARY KEY, -- photos.id; a row iff its fingerprint is set
    vector BLOB NOT NULL); -- (dim,) little-endian float32
CREATE INDEX photos_content_hash ON photos (content_hash);
CREATE INDEX photos_ok ON photos (fingerprint, cluster, in_recluster)
    WHERE fingerprint IS NOT NULL;
"""
_SCHEMA = _PHOTOS + """
CREATE TABLE clusters (name TEXT PRIMARY KEY, centroid BLOB NOT NULL, active INTEGER NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE reclusters (id INTEGER PRIMARY KEY, at REAL NOT NULL, k INTEGER NOT NULL,
    photos INTEGER NOT NULL, changed INTEGER NOT NULL, ks TEXT NOT NULL, -- JSON lists
    inertias TEXT NOT NULL, knee_found INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_RECORD = "SELECT id, path, size, mtime_ns, content_hash, fingerprint, cluster, error FROM photos"
# ?7: the row's vector is unchanged, so it keeps its cluster
_UPSERT_VECTOR = """INSERT INTO photos
    (path, size, mtime_ns, content_hash, fingerprint, added_at) VALUES (?1,?2,?3,?4,?5,?6)
ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
    content_hash = excluded.content_hash, error = NULL, fingerprint = excluded.fingerprint,
    cluster = CASE WHEN ?7 THEN cluster END,
    in_recluster = CASE WHEN ?7 THEN in_recluster ELSE 0 END"""
_PUT_VECTOR = "INSERT OR REPLACE INTO vectors (id, vector) VALUES (?, ?)"
_UPSERT_FAILURE = """INSERT INTO photos (path, size, mtime_ns, error, added_at) VALUES (?,?,?,?,?)
ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
    error = excluded.error, content_hash = NULL, fingerprint = NULL,
    cluster = NULL, in_recluster = 0"""
_SET_CLUSTER = """UPDATE photos SET cluster = ?, in_recluster = 1
    WHERE id = ? AND fingerprint IS NOT NULL AND (cluster IS NOT ? OR in_recluster = 0)"""
_UNSET_CLUSTER = """UPDATE photos SET cluster = NULL, in_recluster = 0
    WHERE (cluster IS NOT NULL OR in_recluster = 1)
    AND id NOT IN (SELECT value FROM json_each(?))"""

_FS_CODEC = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PhotoRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    fingerprint: str | None  # None when there is no vector (failed)
    cluster: str | None
    error: str | None


@dataclass(frozen=True)
class StoredVector:
    """A row with its vector, as placement needs it: in hand after ingest, or read by id."""

    id: int
    path: str
    vector: Vectors  # (dim,) float32


@dataclass(frozen=True)
class NewVector:
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    vector: Vectors  # (dim,) float32


class Store:
    """The catalog and index of one state directory; a context manager, one instance = one writer.

    Use it from one thread at a time. A writer holds the state directory's lock
    (`locking.STATE_LOCK`, with `role` as the holder's role) and raises LockedError when another
    process holds it; `open_readonly` takes no lock, has no index and cannot write.
    """

    _index: faiss.IndexIDMap2 | None  # IndexFlatIP(dim) inside, ids = photo ids
    _lock: contextlib.ExitStack | None

    def __init__(self, state_dir: Path, dim: int = 512, role: str = "writer") -> None:
        """Open or create the catalog; load the index if its stamp matches, else rebuild it.

        Raises LockedError, or StateError for an unusable state dir or catalog (unwritable,
        newer schema, other dim)."""
        self._dim, self._index, self._saved, self._index_touched = dim, None, "", False
        self._index_path, self._stamp_path, self._lock = state_dir / INDEX, state_dir / STAMP, None
        try:
            self._open_writer(state_dir, role)
        except (OSError, sqlite3.Error) as exc:
            self._release()
            raise StateError(f"cannot use the state directory {state_dir}: {exc}") from exc
        except BaseException:
            self._release()
            raise

    def _open_writer(self, state_dir: Path, role: str) -> None:
        fsutil.private_dir(state_dir)
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(locking.hold(state_dir / locking.STATE_LOCK, role))
        self._conn = _connect_writer(state_dir / CATALOG)
        _open_schema(self._conn, self._dim)
        fsutil.remove_temp_files(state_dir)  # a crash during a save left them
        self._index = self._load_index()

    @classmethod
    def open_readonly(cls, state_dir: Path) -> Store:
        """The catalog opened with `mode=ro`, for `status` while the daemon writes.

        Raises StateError when there is no readable catalog; its writes raise StateError."""
        store = cls.__new__(cls)
        store._index, store._lock, store._saved, store._index_touched = None, None, "", False
        uri = f"{(state_dir / CATALOG).resolve().as_uri()}?mode=ro"
        try:
            store._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            store._conn.execute("PRAGMA query_only = 1")
            store._dim = int(store.meta(_DIM) or 0)
        except sqlite3.Error as exc:
            store._release()
            raise StateError(f"cannot read the catalog in {state_dir}: {exc}") from exc
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Save the index (a writer), close the catalog, release the lock; idempotent.

        An index that cannot be saved (a full disk) is logged, not raised: the old file's
        stamp no longer matches, so the next open rebuilds it from the catalog."""
        try:
            if self._index is not None and self._lock is not None:
                self.save_index()
        except StateError as error:
            logger.error("%s; it will be rebuilt from the catalog at the next start", error)
        finally:
            self._release()

    def _release(self) -> None:
        with contextlib.suppress(AttributeError):  # __init__ failed before connecting
            self._conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ---- reads

    def photo(self, path: str) -> PhotoRecord | None:
        row = self._conn.execute(f"{_RECORD} WHERE path = ?", (os.fsencode(path),)).fetchone()
        return None if row is None else _record(row)

    def photos(self) -> list[PhotoRecord]:
        return [_record(row) for row in self._conn.execute(f"{_RECORD} ORDER BY id")]

    def count(self) -> int:
        """len(photos()), failed ones included, without reading them: ~5 ms at 100k photos
        against 0.3-0.7 s for photos()."""
        return self._count("")

    def vector_for_hash(self, content_hash: str, fingerprint: str) -> Vectors | None:
        """A stored (dim,) vector of the same content and model: a renamed or duplicated photo."""
        row = self._conn.execute(
            "SELECT vector FROM photos JOIN vectors USING (id)"
            " WHERE content_hash = ? AND fingerprint = ? LIMIT 1",
            (content_hash, fingerprint)).fetchone()
        return None if row is None else _stack([row[0]], self._dim)[0]

    def vectors(self, fingerprint: str) -> tuple[Ids, Vectors]:
        """Ids (n,) int64 and vectors (n, dim) float32 of the ok rows of that model, id order."""
        # Measured at 100k x 512 (faiss 1.15, SQLite 3.40, 2 shared cores, median of 7, two
        # rounds): ids from the covering index + index.reconstruct_batch 0.15-0.19 s; the blobs
        # joined + np.frombuffer 0.73-0.84 s (0.54 s after a checkpoint). Hence the index here.
        if self._index is None:  # read-only: no index
            return self._read_vectors(fingerprint)
        ids = np.fromiter((row[0] for row in self._conn.execute(
            "SELECT id FROM photos WHERE fingerprint = ? ORDER BY id", (fingerprint,))), np.int64)
        return ids, self._index.reconstruct_batch(ids)  # (n, dim) float32

    def stored_vectors(self, ids: Sequence[int]) -> list[StoredVector]:
        """Path and vector of each of those ids that has a vector, in the order given."""
        paths = self.paths_of(ids)
        found = [photo_id for photo_id in ids if photo_id in paths]
        if not found:
            return []
        vectors = self._vectors_by_id(np.asarray(found, np.int64))  # (m, dim)
        return [StoredVector(i, paths[i], v) for i, v in zip(found, vectors, strict=True)]

    def paths_of(self, ids: Iterable[int]) -> dict[int, str]:
        """id -> path of those ids that are in the catalog (one lookup each: for a batch)."""
        query = "SELECT path FROM photos WHERE id = ?"
        rows = ((photo_id, self._conn.execute(query, (int(photo_id),)).fetchone())
                for photo_id in ids)
        return {photo_id: row[0].decode(*_FS_CODEC) for photo_id, row in rows if row is not None}

    def clusters_of_all(self) -> dict[int, str]:
        """photo id -> cluster of every clustered row, without reading the rest of the rows."""
        return dict(self._conn.execute(
            "SELECT id, cluster FROM photos WHERE cluster IS NOT NULL").fetchall())

    def without_cluster(self, ids: Sequence[int]) -> set[int]:
        """Those of `ids` that have a vector and no cluster."""
        wanted = json.dumps([int(i) for i in ids])
        return {row[0] for row in self._conn.execute(
            "SELECT id FROM photos WHERE id IN (SELECT value FROM json_each(?))"
            " AND fingerprint IS NOT NULL AND cluster IS NULL", (wanted,))}

    def unclustered(self, fingerprint: str) -> list[int]:
        """Ids with a vector of that model but no cluster, id order."""
        return [row[0] for row in self._conn.execute(
            "SELECT id FROM photos WHERE fingerprint = ? AND cluster IS NULL ORDER BY id",
            (fingerprint,))]

    def centroids(self) -> tuple[list[str], Vectors]:
        """Active cluster names (sorted) and their centroids (k, dim) float32."""
        rows = self._conn.execute(
            "SELECT name, centroid FROM clusters WHERE active = 1 ORDER BY name").fetchall()
        return [row[0] for row in rows], _stack([row[1] for row in rows], self._dim)

    def used_names(self) -> set[str]:
        """Every cluster name ever used, active or retired: names are never reused."""
        return {row[0] for row in self._conn.execute(
            "SELECT name FROM clusters UNION SELECT cluster FROM photos WHERE cluster IS NOT NULL")}

    def last_recluster(self) -> ReclusterInfo | None:
        row = self._conn.execute("SELECT at, k, photos, changed, ks, inertias, knee_found"
                                 " FROM reclusters ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        ks, inertias = tuple(json.loads(row[4])), tuple(json.loads(row[5]))
        return ReclusterInfo(row[0], row[2], row[3], ElbowCurve(ks, inertias, row[1], bool(row[6])))

    def photos_since_recluster(self) -> int:
        """Ok photos whose vector the last recluster did not see (added or changed since)."""
        return self._count("WHERE fingerprint IS NOT NULL AND in_recluster = 0")

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # ---- writes: one transaction each, no fsync of their own (synchronous=NORMAL)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, bumping the change counter. On an error the catalog rolls
        back, and the index, if already changed, is rebuilt from it. StateError when read-only,
        or when the disk is full or failing (the catalog keeps its last good state)."""
        if self._index is None:
            raise StateError("the store was opened read-only")
        self._index_touched = False
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _raise_if_environmental(exc)
            raise
        try:
            yield self._conn
            self._conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?", (_CHANGES,))
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if self._index_touched:
                self._index = self._rebuild_index("a write failed")
            if isinstance(exc, sqlite3.Error):
                _raise_if_environmental(exc)
            raise

    def put_vectors(self, items: Sequence[NewVector], fingerprint: str) -> list[int]:
        """Insert or replace by path, clearing the error; returns the ids in item order. A row
        keeps its cluster only if its vector is unchanged. ValueError for a wrong shape."""
        if not items:
            return []
        latest = {item.path: item for item in items}  # a path twice in one batch: the last wins
        blobs = {path: self._blob(item.vector) for path, item in latest.items()}
        with self._transaction() as conn:
            old = self._vector_rows(latest)  # path -> (id, blob) of rows holding one
            conn.executemany(_UPSERT_VECTOR, [
                (os.fsencode(path), item.size, item.mtime_ns, item.content_hash, fingerprint,
                 time.time(), old.get(path, (0, b""))[1] == blobs[path])
                for path, item in latest.items()])
            ids = {path: self._id(path) for path in latest}
            conn.executemany(_PUT_VECTOR, [(ids[path], blobs[path]) for path in latest])
            self._drop_from_index([photo_id for photo_id, _ in old.values()])
            self._add_to_index(list(ids.values()), list(blobs.values()))
        return [ids[item.path] for item in items]

    def put_failure(self, path: str, size: int, mtime_ns: int, reason: str) -> None:
        """Record a photo that could not be used: keeps or creates its row, drops its vector."""
        with self._transaction() as conn:
            replaced = [photo_id for photo_id, _ in self._vector_rows([path]).values()]
            conn.execute(_UPSERT_FAILURE, (os.fsencode(path), size, mtime_ns, reason, time.time()))
            conn.executemany("DELETE FROM vectors WHERE id = ?", [(i,) for i in replaced])
            self._drop_from_index(replaced)

    def remove(self, paths: Sequence[str]) -> list[PhotoRecord]:
        """Delete the rows of those paths (unknown ones are ignored); returns the removed rows."""
        with self._transaction() as conn:
            removed = [record for record in map(self.photo, dict.fromkeys(paths)) if record]
            conn.executemany("DELETE FROM photos WHERE id = ?", [(r.id,) for r in removed])
            conn.executemany("DELETE FROM vectors WHERE id = ?", [(r.id,) for r in removed])
            self._drop_from_index([r.id for r in removed if r.fingerprint is not None])
        return removed

    def move(self, old: str, new: str) -> None:
        """Rename a row keeping id, vector and cluster; a row at `new` is replaced (as the file
        was). KeyError when `old` is not in the catalog."""
        if old == new:
            return
        with self._transaction() as conn:
            old_id = self._id(old)
            displaced = [photo_id for photo_id, _ in self._vector_rows([new]).values()]
            conn.execute("DELETE FROM photos WHERE path = ?", (os.fsencode(new),))
            conn.executemany("DELETE FROM vectors WHERE id = ?", [(i,) for i in displaced])
            conn.execute("UPDATE photos SET path = ? WHERE id = ?", (os.fsencode(new), old_id))
            self._drop_from_index(displaced)

    def assign(self, assignment: Mapping[int, str]) -> None:
        """Live assignment: photo id -> cluster name."""
        with self._transaction() as conn:
            conn.executemany("UPDATE photos SET cluster = ? WHERE id = ?",  # ids may be np.int64
                             [(name, int(photo_id)) for photo_id, name in assignment.items()])

    def commit_recluster(self, assignment: Mapping[int, str], centroids: Mapping[str, Vectors],
                         info: ReclusterInfo) -> None:
        """One transaction: every photo's cluster (a photo missing from `assignment`, e.g. added
        while the recluster ran, becomes unclustered), the active clusters and their (dim,)
        centroids (all others retired), the info row. ValueError: a name without a centroid."""
        if missing := set(assignment.values()) - set(centroids):
            raise ValueError(f"clusters without a centroid: {sorted(missing)}")
        rows = [(name, self._blob(centroid), time.time()) for name, centroid in centroids.items()]
        # Write only the rows that change: a recluster with stable names changes few.
        with self._transaction() as conn:
            conn.executemany(_SET_CLUSTER, [(name, int(photo_id), name)
                                            for photo_id, name in assignment.items()])
            conn.execute(_UNSET_CLUSTER, (json.dumps([int(i) for i in assignment]),))
            conn.execute("UPDATE clusters SET active = 0")
            conn.executemany("INSERT INTO clusters VALUES (?, ?, 1, ?) ON CONFLICT (name)"
                             " DO UPDATE SET centroid = excluded.centroid, active = 1", rows)
            conn.execute("INSERT INTO reclusters (at, k, photos, changed, ks, inertias,"
                         " knee_found) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (float(info.at), int(info.k), int(info.photos), int(info.changed),
                          json.dumps([int(k) for k in info.elbow.ks]),
                          json.dumps([float(inertia) for inertia in info.elbow.inertias]),
                          int(info.elbow.knee_found)))

    def set_meta(self, key: str, value: str) -> None:
        """ValueError for the store's own keys ("store.*")."""
        if key.startswith("store."):
            raise ValueError(f"meta key {key!r} is reserved for the store")
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ---- the index

    def save_index(self) -> None:
        """Write the index, then its stamp, each atomically; a no-op when nothing changed.

        StateError when it cannot be written (a full disk): the files saved before stay."""
        index, stamp = self._index, self._stamp()
        if index is None:
            raise StateError("the store was opened read-only")
        if stamp == self._saved:
            return
        # A crash between the two writes leaves an old stamp: the next open rebuilds.
        try:
            fsutil.atomic_write(self._index_path, lambda temp: faiss.write_index(index, temp))
            stamp_line = f"{stamp} {_digest(self._index_path)}\n"
            fsutil.atomic_write(self._stamp_path, stamp_line.encode())
        except (OSError, RuntimeError) as exc:  # faiss reports a failed write as RuntimeError
            raise StateError(f"cannot save the vector index {self._index_path}: {exc}") from exc
        self._saved = stamp
        logger.debug("saved the vector index (%d vectors)", index.ntotal)

    def _load_index(self) -> faiss.IndexIDMap2:
        stamp = self._stamp()
        try:
            fields = self._stamp_path.read_text().split()
            if fields[:1] != [stamp]:
                return self._rebuild_index(f"stamp {fields[:1]} is not the catalog's {stamp}")
            if fields[1:] != [_digest(self._index_path)]:
                return self._rebuild_index("the index file is corrupt")
            index = faiss.read_index(str(self._index_path))
        except FileNotFoundError:
            return self._rebuild_index("no saved index")
        except (OSError, RuntimeError) as exc:  # faiss reports a bad file as RuntimeError
            return self._rebuild_index(f"unreadable index: {exc}")
        if not isinstance(index, faiss.IndexIDMap2) or (index.d, index.ntotal) != (
                self._dim, self._count("WHERE fingerprint IS NOT NULL")):
            return self._rebuild_index("the index does not match the catalog")
        self._saved = stamp
        logger.debug("loaded the vector index (%d vectors)", index.ntotal)
        return index

    def _rebuild_index(self, reason: str) -> faiss.IndexIDMap2:
        started = time.monotonic()
        ids, vectors = self._read_vectors(None)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        index.add_with_ids(vectors, ids)
        self._saved = ""
        logger.info("rebuilt the vector index from the catalog (%s): %d vectors in %.1f s",
                    reason, len(ids), time.monotonic() - started)
        return index

    def _add_to_index(self, ids: list[int], blobs: list[bytes]) -> None:
        if ids and self._index is not None:
            self._index_touched = True
            self._index.add_with_ids(_stack(blobs, self._dim), np.asarray(ids, np.int64))

    def _drop_from_index(self, ids: list[int]) -> None:
        if ids and self._index is not None:  # remove_ids is O(ntotal): only when there is some
            self._index_touched = True
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, np.int64)))

    # ---- helpers

    def _vectors_by_id(self, ids: Ids) -> Vectors:
        if self._index is not None:
            return np.asarray(self._index.reconstruct_batch(ids), np.float32)  # (m, dim)
        rows = [self._conn.execute("SELECT vector FROM vectors WHERE id = ?",
                                   (int(i),)).fetchone()[0] for i in ids]
        return _stack(rows, self._dim)

    def _read_vectors(self, fingerprint: str | None) -> tuple[Ids, Vectors]:
        """Every stored vector, or those of one model, in id order."""
        if fingerprint is None:
            rows = self._conn.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall()
        else:  # CROSS JOIN keeps `vectors` outside: read in id order, never sorted
            rows = self._conn.execute(
                "SELECT v.id, v.vector FROM vectors AS v CROSS JOIN photos AS p ON p.id = v.id"
                " WHERE p.fingerprint = ? ORDER BY v.id", (fingerprint,)).fetchall()
        ids = np.fromiter((row[0] for row in rows), np.int64, len(rows))
        return ids, _stack([row[1] for row in rows], self._dim)

    def _vector_rows(self, paths: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        """path -> (id, vector blob) of those paths that are in the catalog with a vector."""
        query = "SELECT id, vector FROM photos JOIN vectors USING (id) WHERE path = ?"
        rows = {path: self._conn.execute(query, (os.fsencode(path),)).fetchone()
                for path in paths}
        return {path: (row[0], row[1]) for path, row in rows.items() if row is not None}

    def _id(self, path: str) -> int:
        row = self._conn.execute("SELECT id FROM photos WHERE path = ?",
                                 (os.fsencode(path),)).fetchone()
        if row is None:
            raise KeyError(path)
        return int(row[0])

    def _count(self, where: str) -> int:
        return int(self._conn.execute(f"SELECT count(*) FROM photos {where}").fetchone()[0])

    def _blob(self, vector: Vectors) -> bytes:
        array = np.ascontiguousarray(vector, "<f4")
        if array.shape != (self._dim,):
            raise ValueError(f"expected a ({self._dim},) vector, got shape {array.shape}")
        return array.tobytes()

    def _stamp(self) -> str:
        return f"{self.meta(_CATALOG_ID)}:{self.meta(_CHANGES)}"


# SQLite result codes the environment causes: full, I/O error, read-only, cannot open, busy.
_ENVIRONMENTAL = frozenset({5, 8, 10, 13, 14})


def _raise_if_environmental(exc: sqlite3.Error) -> None:
    """StateError for what the environment causes (a full disk, a read-only file system);
    anything else is a bug and is left to propagate as it is."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _ENVIRONMENTAL:
        raise StateError(f"cannot write the catalog: {exc}") from exc


def _record(row: tuple[Any, ...]) -> PhotoRecord:
    return PhotoRecord(row[0], row[1].decode(*_FS_CODEC), *row[2:])  # os.fsdecode, inlined


def _stack(blobs: list[bytes], dim: int) -> Vectors:
    """Blobs of (dim,) little-endian float32 -> (n, dim) float32, one copy."""
    return np.frombuffer(b"".join(blobs), "<f4").astype(np.float32).reshape(len(blobs), dim)



def _connect_writer(path: Path) -> sqlite3.Connection:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # private before SQLite opens it
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # takes effect only in a new catalog
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
        conn.close()
        raise StateError(f"{path}: SQLite cannot use WAL here (a network file system?)")
    conn.execute("PRAGMA synchronous = NORMAL")
    for name in (f"{path}", f"{path}-wal", f"{path}-shm"):  # SQLite copies the db's mode; be sure
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)
    return conn


def _open_schema(conn: sqlite3.Connection, dim: int) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        conn.executescript(
            f"BEGIN IMMEDIATE; {_SCHEMA} INSERT INTO meta VALUES ('{_CATALOG_ID}',"
            f" '{uuid.uuid4().hex}'), ('{_CHANGES}', '0'), ('{_DIM}', '{int(dim)}');"
            f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    elif version == 1:
        _migrate_from_1(conn)
    elif version != SCHEMA_VERSION:
        raise StateError(f"catalog schema {version}; this photocluster reads {SCHEMA_VERSION}")
    stored = conn.execute("SELECT value FROM meta WHERE key = ?", (_DIM,)).fetchone()[0]
    if int(stored) != dim:
        raise StateError(f"the catalog holds {stored}-d vectors, not {dim}-d")


def _migrate_from_1(conn: sqlite3.Connection) -> None:
    """Schema 1 kept each vector in its photo row: move them to `vectors`, in one transaction.

    Ids, and so the saved index and its stamp, stay valid. The page size stays what it was
    (changing it means a VACUUM: a full copy of the catalog in the temp directory).
    """
    started = time.monotonic()
    try:
        _run_migration(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    logger.info("catalog migrated from schema 1 to 2 in %.1f s", time.monotonic() - started)


def _run_migration(conn: sqlite3.Connection) -> None:
    conn.executescript(f"""BEGIN IMMEDIATE;
        ALTER TABLE photos RENAME TO photos_v1;
        DROP INDEX photos_content_hash; DROP INDEX photos_ok;
        {_PHOTOS}
        INSERT INTO vectors (id, vector) SELECT id, vector FROM photos_v1
            WHERE vector IS NOT NULL;
        INSERT INTO photos (id, path, size, mtime_ns, content_hash, fingerprint, cluster, error,
                added_at, in_recluster)
            SELECT id, path, size, mtime_ns, content_hash,
                CASE WHEN vector IS NOT NULL THEN fingerprint END, cluster, error, added_at,
                in_recluster FROM photos_v1;
        DROP TABLE photos_v1;
        PRAGMA user_version = 2;
        COMMIT;""")


def _digest(path: Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, lambda: hashlib.blake2b(digest_size=16)).hexdigest()

"""The catalog: SQLite is the truth about every file, content, vector and cluster.

One `Store` per state directory and process: the writer holds the state directory's lock and
keeps the vector index of the live contents (`index.VectorIndex`, a file beside it, a rebuildable
cache);
`Store.open_readonly` serves `status` and other readers while the daemon writes.

Every write is one transaction that bumps a change counter (the index's stamp). Writes that
change what the tree shows return a `Written`: the contents that need a cluster (new, back, or
re-embedded) with their canonical path and vector in hand, and the links that must move because
a content's canonical copy changed or the content went. The caller applies those to the tree:
nothing here touches the file system outside the state directory.

Why one long module: `Store` is the one face of the catalog callers hold. The SQL of each part
lives in its own module (`schema`, `rows`, `contents`, `marks`, `groups`); what stays here is
the owner of the connection, the index and the transaction, with one short method per read or
write, which cannot move out without a second object owning the same transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from photocluster import fsutil, locking
from photocluster.errors import StateError
from photocluster.records import ElbowCurve, ReclusterInfo, Taken
from photocluster.store import groups, marks, schema
from photocluster.store.contents import Contents
from photocluster.store.index import VectorIndex
from photocluster.store.rows import (
    ClusterMap,
    FileRecord,
    Ids,
    Members,
    NewCompanion,
    NewFile,
    StoredVector,
    Vectors,
    Written,
    blob,
    decode,
    encode,
    file_record,
    read_vectors,
    search_catalog,
    stack,
    taken_of,
)

logger = logging.getLogger(__name__)

CATALOG = "catalog.sqlite"
_PLAN_MEMBERS = """SELECT c.cluster, f.path, c.taken_at, c.taken_offset, c.taken_source
    FROM contents AS c JOIN files AS f ON f.id = c.canonical
    WHERE c.cluster IS NOT NULL AND c.gone_at IS NULL
UNION ALL SELECT c.cluster, k.path, c.taken_at, c.taken_offset, c.taken_source
    FROM files AS k JOIN files AS f ON f.path = k.still JOIN contents AS c ON c.canonical = f.id
    WHERE k.still IS NOT NULL AND c.cluster IS NOT NULL AND c.gone_at IS NULL"""
_READ_CHUNK = 8192  # rows a bulk read of vectors holds at once: 16 MiB of 512-d float32
_FILE = """SELECT f.id, f.path, f.size, f.mtime_ns, f.content, c.hash, c.fingerprint, c.cluster,
    f.error, c.canonical = f.id, f.still FROM files AS f LEFT JOIN contents AS c
    ON c.id = f.content"""


class Store:
    """The catalog of one state directory; a context manager. Use it from one thread."""

    def __init__(self, state_dir: Path, dim: int = 512, role: str = "writer") -> None:
        """Open or create the catalog (migrating an older schema) and load or rebuild the index.

        Raises LockedError, or StateError for an unusable state dir or catalog (unwritable,
        newer schema, other dim)."""
        self._dim, self._index = dim, VectorIndex(state_dir, dim)
        self._state_dir = state_dir
        self._writer = True
        self._lock = contextlib.ExitStack()
        try:
            self._open(state_dir, role)
        except (OSError, sqlite3.Error) as exc:
            self._release()
            raise StateError(f"cannot use the state directory {state_dir}: {exc}") from exc
        except BaseException:
            self._release()
            raise

    def _open(self, state_dir: Path, role: str) -> None:
        fsutil.private_dir(state_dir)
        self._lock.enter_context(locking.hold(state_dir / locking.STATE_LOCK, role))
        self._conn = schema.connect_writer(state_dir / CATALOG)
        schema.open_schema(self._conn, self._dim)
        self._contents = Contents(self._conn, self._index, self._dim)
        fsutil.remove_temp_files(state_dir)  # a crash during a save left them
        self._pick_missing_canonicals()
        reason = self._index.load(self._stamp(), self._count_live_vectors())
        if reason is not None:
            self._rebuild_index(reason)

    @classmethod
    def open_readonly(cls, state_dir: Path) -> Store:
        """The catalog opened read-only, without lock or index, while a writer may write.

        Raises StateError when there is no readable catalog; its writes raise StateError."""
        store = cls.__new__(cls)
        store._writer, store._lock = False, contextlib.ExitStack()
        store._state_dir = state_dir
        try:
            store._conn = schema.connect_reader(state_dir / CATALOG)
            store._dim = int(store.meta(schema.DIM) or 0)
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

        An index that cannot be saved (a full disk) is logged, not raised: the old file's stamp
        no longer matches, so the next open rebuilds it from the catalog."""
        try:
            if self._writer and self._lock is not None and hasattr(self, "_conn"):
                self.save_index()
        except StateError as error:
            logger.error("%s; it will be rebuilt from the catalog at the next start", error)
        finally:
            self._release()

    def _release(self) -> None:
        with contextlib.suppress(AttributeError):  # the open failed before connecting
            self._conn.close()
        with contextlib.suppress(AttributeError):  # read-only: no index
            self._index.close()
        self._lock.close()

    # ---- reads: files

    def file(self, path: str) -> FileRecord | None:
        row = self._conn.execute(f"{_FILE} WHERE f.path = ?", (encode(path),)).fetchone()
        return None if row is None else file_record(row)

    def files(self, prefix: str = "") -> list[FileRecord]:
        """Every file, or those below the folder `prefix` ("a/b/"), in path order."""
        if not prefix:
            return [file_record(r) for r in self._conn.execute(f"{_FILE} ORDER BY f.path")]
        low, high = encode(prefix), encode(prefix[:-1] + chr(ord("/") + 1))
        return [file_record(r) for r in self._conn.execute(
            f"{_FILE} WHERE f.path >= ? AND f.path < ? ORDER BY f.path", (low, high))]

    def file_stamps(self, fingerprint: str, prefix: str = "") -> dict[str, tuple[int, int, bool]]:
        """path -> (size, mtime_ns, settled) of every file (below the folder `prefix`): what a
        reconciliation compares with the disk. `settled`: it failed, or its content has a
        vector of that model; otherwise it must be read again even if unchanged. A tuple, not
        a FileRecord: ~230 bytes a file instead of ~600, at a million files."""
        low, high = encode(prefix), encode(prefix[:-1] + chr(ord("/") + 1)) if prefix else None
        query = ("SELECT f.path, f.size, f.mtime_ns, f.error IS NOT NULL OR c.fingerprint IS ?"
                 " FROM files AS f LEFT JOIN contents AS c ON c.id = f.content")
        rows = (self._conn.execute(query, (fingerprint,)) if high is None else
                self._conn.execute(f"{query} WHERE f.path >= ? AND f.path < ?",
                                   (fingerprint, low, high)))
        return {decode(path): (size, mtime_ns, bool(settled))
                for path, size, mtime_ns, settled in rows}

    def count(self) -> int:
        """Files in the catalog, failed ones included, without reading them."""
        return int(self._conn.execute("SELECT count(*) FROM files").fetchone()[0])

    def model_fingerprint(self) -> str | None:
        """The model most of the live vectors were made with (None in an empty catalog)."""
        row = self._conn.execute(
            "SELECT fingerprint FROM contents WHERE fingerprint IS NOT NULL AND gone_at IS NULL"
            " GROUP BY fingerprint ORDER BY count(*) DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def known_hashes(self, fingerprint: str) -> set[str]:
        """Hashes of every content with a vector of that model, gone ones included."""
        return {row[0] for row in self._conn.execute(
            "SELECT hash FROM contents WHERE fingerprint = ?", (fingerprint,))}

    def has_vector(self, content_hash: str, fingerprint: str) -> bool:
        return self._conn.execute(
            "SELECT 1 FROM contents WHERE hash = ? AND fingerprint = ?",
            (content_hash, fingerprint)).fetchone() is not None

    # ---- reads: contents

    def members(self, fingerprint: str) -> Members:
        """The live contents with a vector of that model (a recluster's input), id order; read
        in chunks into arrays (24 bytes a content)."""
        cursor = self._conn.execute(
            "SELECT id, version, cluster FROM contents WHERE fingerprint = ? AND gone_at IS NULL"
            " ORDER BY id", (fingerprint,))
        ids, versions, codes = [], [], []
        code_of: dict[str | None, int] = {None: -1}  # cluster name -> its code
        while rows := cursor.fetchmany(_READ_CHUNK):
            ids.append(np.fromiter((row[0] for row in rows), np.int64, len(rows)))
            versions.append(np.fromiter((row[1] for row in rows), np.int64, len(rows)))
            codes.append(np.fromiter((code_of.setdefault(row[2], len(code_of) - 1)
                                      for row in rows), np.int32, len(rows)))
        every, names = _joined(ids, np.int64), [name for name in code_of if name is not None]
        clusters = ClusterMap(every, _joined(codes, np.int32), names)
        return Members(every, _joined(versions, np.int64), clusters, self._content_changes())

    def vector_chunks(self, ids: Ids) -> Iterator[tuple[Ids, Vectors]]:
        """Positions in `ids` (sorted, (n,) int64) and their (c, dim) vectors, `_READ_CHUNK`
        rows at a time in id order, for the contents of `ids` that have a vector: one pass
        over the vectors table, bounded memory."""
        cursor = self._conn.execute("SELECT id, vector FROM vectors WHERE id BETWEEN ? AND ?"
                                    " ORDER BY id", (int(ids[0]), int(ids[-1])) if len(ids)
                                    else (1, 0))
        while rows := cursor.fetchmany(_READ_CHUNK):
            found = np.fromiter((row[0] for row in rows), np.int64, len(rows))
            positions = np.searchsorted(ids, found).clip(0, len(ids) - 1)
            wanted = np.flatnonzero(ids[positions] == found)
            if len(wanted):
                yield positions[wanted], stack([rows[i][1] for i in wanted.tolist()], self._dim)

    def read_view(self) -> Store:
        """The catalog as committed now, read-only, on a connection of its own held in one
        read transaction (WAL keeps showing it that state while the writer goes on): hand it to
        another thread, which must `close` it. StateError when it cannot be opened."""
        view = Store.open_readonly(self._state_dir)
        try:
            view._conn.execute("BEGIN")
            view.meta(schema.CHANGES)  # the first read fixes the snapshot
        except sqlite3.Error as exc:
            view.close()
            raise StateError(f"cannot read the catalog in {self._state_dir}: {exc}") from exc
        return view

    def vectors_of(self, ids: Ids) -> Vectors:
        """(n, dim) float32 vectors of live contents, in the order given, exactly as stored
        (the catalog's, not the index's float16 copies)."""
        return read_vectors(self._conn, ids, self._dim)

    def vectors(self, fingerprint: str) -> tuple[Ids, Vectors]:
        """Ids (n,) int64 and vectors (n, dim) float32 of the live contents of that model."""
        ids = self.members(fingerprint).ids
        return ids, self.vectors_of(ids)

    def stored_vectors(self, ids: Sequence[int]) -> list[StoredVector]:
        """Canonical path, vector and taken time of each of those live contents, in the order
        given (the taken time names a dated link)."""
        links = self.link_rows(ids)
        found = [content for content in ids if content in links]
        if not found:
            return []
        vectors = self.vectors_of(np.asarray(found, np.int64))  # (m, dim)
        return [StoredVector(i, links[i][0], v, links[i][1])
                for i, v in zip(found, vectors, strict=True)]

    def link_rows(self, ids: Iterable[int]) -> dict[int, tuple[str, Taken | None]]:
        """content id -> (canonical path, taken time), for those of `ids` that are live."""
        query = ("SELECT f.path, c.taken_at, c.taken_offset, c.taken_source FROM contents AS c"
                 " JOIN files AS f ON f.id = c.canonical WHERE c.id = ?")
        rows = ((int(i), self._conn.execute(query, (int(i),)).fetchone()) for i in ids)
        return {content: (decode(row[0]), taken_of(row[1], row[2], row[3]))
                for content, row in rows if row is not None}

    def paths_of(self, ids: Iterable[int]) -> dict[int, str]:
        """content id -> canonical path, for those of `ids` that are live."""
        query = ("SELECT f.path FROM contents AS c JOIN files AS f ON f.id = c.canonical"
                 " WHERE c.id = ?")
        rows = ((int(i), self._conn.execute(query, (int(i),)).fetchone()) for i in ids)
        return {content: decode(row[0]) for content, row in rows if row is not None}

    def without_cluster(self, ids: Sequence[int]) -> set[int]:
        """Those of `ids` that are live, have a vector and no cluster."""
        return {row[0] for row in self._conn.execute(
            "SELECT id FROM contents WHERE id IN (SELECT value FROM json_each(?))"
            " AND fingerprint IS NOT NULL AND cluster IS NULL AND gone_at IS NULL",
            (json.dumps([int(i) for i in ids]),))}

    def unclustered(self, fingerprint: str) -> list[int]:
        """Live contents with a vector of that model but no cluster, id order."""
        return [row[0] for row in self._conn.execute(
            "SELECT id FROM contents WHERE fingerprint = ? AND cluster IS NULL"
            " AND gone_at IS NULL ORDER BY id", (fingerprint,))]

    def plan_members(self) -> Iterator[tuple[str, str, Taken | None]]:
        """(cluster, path, taken) of every link the catalog asks for: each clustered content's
        canonical copy, and each companion video beside one (with its still's taken time)."""
        for cluster, path, *taken in self._conn.execute(_PLAN_MEMBERS):
            yield cluster, decode(path), taken_of(taken[0], taken[1], taken[2])

    def canonical_after(self, first: int, limit: int) -> list[tuple[int, str, str, str]]:
        """(id, hash, canonical path, kind) of up to `limit` live contents from id `first` on,
        id order: a cursor over the library for background work."""
        return [(row[0], row[1], decode(row[2]), row[3]) for row in self._conn.execute(
            "SELECT c.id, c.hash, f.path, c.kind FROM contents AS c JOIN files AS f"
            " ON f.id = c.canonical WHERE c.id >= ? AND c.gone_at IS NULL ORDER BY c.id LIMIT ?",
            (first, limit))]

    def companions_of(self, still: str) -> list[str]:
        """Paths of the companion videos beside the still at `still`."""
        return [decode(row[0]) for row in self._conn.execute(
            "SELECT path FROM files WHERE still = ?", (encode(still),))]

    def content_counts(self) -> dict[str, int]:
        """Figures for `status`: live contents, clustered ones, contents with extra copies and
        how many extra files that is, failed files. Each is a count over an index, or a seek
        where it counts what is rare (0.07 s at 1M photos; BENCHMARKS.md, scale)."""
        def one(query: str) -> int:
            return int(self._conn.execute(query).fetchone()[0])

        live = one("SELECT count(*) FROM contents WHERE gone_at IS NULL")
        counts = {  # live contents without a vector or without a cluster are few: seeks
            "contents": live - one("SELECT count(*) FROM contents WHERE gone_at IS NULL"
                                   " AND fingerprint IS NULL"),
            "unclustered": one("SELECT count(*) FROM contents WHERE gone_at IS NULL"
                               " AND cluster IS NULL AND fingerprint IS NOT NULL"),
            "failed": one("SELECT count(*) FROM files WHERE content IS NULL"),
            "with_copies": 0, "extra_files": 0,
        }
        # Every file holding a content beyond one per live content is an extra copy: counted
        # at once. Which contents have them takes a pass over every file: only when there are.
        if self.count() - counts["failed"] - live > 0:
            counts.update(zip(("with_copies", "extra_files"), self._conn.execute(
                "SELECT count(*), coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM files"
                " WHERE content IS NOT NULL GROUP BY content HAVING n > 1)").fetchone(),
                strict=True))
        return counts

    def cluster_sizes(self) -> dict[str, int]:
        """cluster -> live contents in it, by name: one pass over the `contents_cluster`
        index, in its order."""
        return {row[0]: row[1] for row in self._conn.execute(
            "SELECT cluster, count(*) FROM contents WHERE cluster IS NOT NULL AND gone_at IS NULL"
            " GROUP BY cluster ORDER BY cluster")}

    def cluster_dates(self, clusters: Iterable[str]) -> dict[str, tuple[float, float]]:
        """cluster -> (earliest, latest) taken time of its photos, where known, for those
        clusters: two seeks each in the `contents_cluster` index (grouping every row took 0.7 s
        at 1M photos)."""
        dates = {}
        for name in clusters:
            ends = [self._conn.execute(
                "SELECT taken_at FROM contents WHERE cluster = ? AND gone_at IS NULL AND taken_at"
                f" IS NOT NULL ORDER BY taken_at {order} LIMIT 1", (name,)).fetchone()
                for order in ("ASC", "DESC")]
            if ends[0] is not None and ends[1] is not None:
                dates[name] = (float(ends[0][0]), float(ends[1][0]))
        return dates

    def failures(self, limit: int) -> list[tuple[str, str]]:
        """(path, reason) of up to `limit` failed files, path order."""
        return [(decode(row[0]), row[1]) for row in self._conn.execute(
            "SELECT path, error FROM files WHERE content IS NULL ORDER BY path LIMIT ?", (limit,))]

    # ---- reads: clusters and reclusters

    def centroids(self) -> tuple[list[str], Vectors]:
        """Active cluster names (sorted) and their centroids (k, dim) float32."""
        rows = self._conn.execute(
            "SELECT name, centroid FROM clusters WHERE active = 1 ORDER BY name").fetchall()
        return [row[0] for row in rows], stack([row[1] for row in rows], self._dim)

    def used_names(self) -> set[str]:
        """Every cluster name ever used, active or retired: names are never reused."""
        return {row[0] for row in self._conn.execute(
            "SELECT name FROM clusters UNION SELECT cluster FROM contents"
            " WHERE cluster IS NOT NULL")}

    # ---- reads: the user's corrections (store/marks.py)

    def labels(self) -> dict[str, str]:
        """identity -> label of the active clusters a user named."""
        return marks.labels(self._conn)

    def folder_names(self) -> dict[str, str]:
        """identity -> folder name (its label, else its identity) of every active cluster."""
        return {name: label or name for name, label in self._conn.execute(
            "SELECT name, label FROM clusters WHERE active = 1")}

    def label_holder(self, label: str) -> tuple[str, bool] | None:
        """(identity, active) of the cluster holding `label`, if any."""
        return marks.label_holder(self._conn, label)

    def pins(self) -> dict[int, str]:
        return marks.pins(self._conn)

    def pinned_paths(self, limit: int) -> list[tuple[str, str]]:
        return marks.pinned_paths(self._conn, limit)

    def mark_counts(self) -> dict[str, int]:
        return marks.counts(self._conn)

    def steering(self, ids: Sequence[int]) -> tuple[dict[int, str], dict[int, set[str]]]:
        """Pins (content -> cluster) and rejections (content -> clusters) of those contents."""
        return marks.steering(self._conn, ids)

    def homes(self, paths: Iterable[str]) -> dict[str, tuple[int, str | None]]:
        """canonical path -> (content, cluster), for those of `paths` that are one."""
        return marks.homes(self._conn, paths)

    def members_of(self, cluster: str) -> dict[str, int]:
        """canonical path -> content of the live members of `cluster`."""
        return marks.members_of(self._conn, cluster)

    def last_recluster(self) -> ReclusterInfo | None:
        row = self._conn.execute("SELECT at, k, photos, changed, ks, inertias, knee_found"
                                 " FROM reclusters ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        ks, inertias = tuple(json.loads(row[4])), tuple(json.loads(row[5]))
        return ReclusterInfo(row[0], row[2], row[3], ElbowCurve(ks, inertias, row[1], bool(row[6])))

    def photos_since_recluster(self) -> int:
        """Live contents with a vector that the last recluster did not place."""
        return int(self._conn.execute(
            "SELECT count(*) FROM contents WHERE fingerprint IS NOT NULL AND in_recluster = 0"
            " AND gone_at IS NULL").fetchone()[0])

    def changed_since_recluster(self) -> bool:
        """The set of contents (or a vector) changed since the last committed recluster saw it."""
        return self._content_changes() != int(self.meta(schema.RECLUSTERED_AT) or -1)

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # ---- writes: one transaction each, no fsync of their own (synchronous=NORMAL)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, bumping the change counter. On an error the catalog rolls
        back, and the index, if already changed, is rebuilt from it. StateError when read-only,
        or when the disk is full or failing (the catalog keeps its last good state)."""
        if not self._writer:
            raise StateError("the store was opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _raise_if_environmental(exc)
            raise
        self._index.begin()
        try:
            yield self._conn
            self._contents.bump(schema.CHANGES)
            self._conn.execute("COMMIT")
            self._index.commit()
        except BaseException as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._index.rollback()
            if isinstance(exc, sqlite3.Error):
                _raise_if_environmental(exc)
            raise

    def put_files(self, items: Sequence[NewFile], fingerprint: str) -> Written:
        """Record files read and hashed: each path points at its content, created with the
        item's vector when new (or brought back, or re-embedded for this model). A path twice
        in one batch: the last wins. ValueError for a vector of the wrong shape."""
        latest = list({item.path: item for item in items}.values())
        written = Written()
        if not latest:
            return written
        with self._transaction():
            fresh: dict[int, Vectors] = {}
            for item in latest:
                content = self._contents.content_for(item, fingerprint, fresh)
                if content is None:
                    written.skipped.append(item.path)
                    continue
                written.extend(self._contents.attach(item.path, item.size, item.mtime_ns,
                                                     content, None))
            self._contents.pick_canonicals(list(fresh))
            written.placeable += self._contents.placeable(fresh)
        return written

    def put_failure(self, path: str, size: int, mtime_ns: int, reason: str) -> Written:
        """Record a file that could not be used; it no longer holds its old content."""
        with self._transaction():
            return self._contents.attach(path, size, mtime_ns, None, reason)

    def remove(self, paths: Sequence[str]) -> Written:
        """Forget those files (unknown ones are ignored). A content keeps living while another
        copy of it does; its last copy gone, it leaves the clusters and its vector is kept for
        a while (a re-download of the same file reuses it)."""
        written = Written()
        with self._transaction():
            for path in dict.fromkeys(paths):
                written.extend(self._contents.forget_file(path))
        return written

    def put_companions(self, items: Sequence[NewCompanion]) -> Written:
        """Record motion/live-photo videos beside their stills (one transaction)."""
        written = Written()
        with self._transaction():
            for item in items:
                written.extend(self._contents.attach(item.path, item.size, item.mtime_ns, None,
                                                     None, item.still))
        return written

    def move(self, old: str, new: str) -> Written:
        """A file renamed inside the photo folder: same file row (a file at `new` is replaced,
        as on disk); its content's link moves with it if it was the canonical copy.
        KeyError when `old` is not in the catalog."""
        written = Written()
        if old == new:
            return written
        with self._transaction() as conn:
            file_id, content = self._file_row(old)
            written.extend(self._contents.forget_file(new))
            conn.execute("UPDATE files SET path = ? WHERE id = ?", (encode(new), file_id))
            if content is not None:
                written.extend(self._contents.repick(content, file_id, old))
        return written

    def assign(self, assignment: Mapping[int, str]) -> None:
        """Live placement: content id -> cluster name."""
        with self._transaction() as conn:
            conn.executemany("UPDATE contents SET cluster = ? WHERE id = ? AND gone_at IS NULL",
                             [(name, int(content)) for content, name in assignment.items()])

    def commit_recluster(self, assignment: Iterable[tuple[int, int, str]],
                         centroids: Mapping[str, Vectors], info: ReclusterInfo,
                         seen_changes: int, heirs: Mapping[str, str] | None = None
                         ) -> marks.PinMoves:
        """One transaction: each content's cluster, where its version is still the one the
        recluster saw (others, and contents it did not see, become unclustered for the caller
        to place), the active clusters and their (dim,) centroids (all others retired), the
        info row, and the change counter the result reflects; then the user's pins and
        rejections are enforced (`marks.enforce`; `heirs`: retired cluster -> the one that
        took most of its members). `assignment` yields (content id, the version the recluster
        saw, cluster name), read once, as it goes. Returns what happened to pins of retired
        clusters. ValueError: a name without a centroid (nothing is written)."""

        def checked() -> Iterator[tuple[int, int, str]]:
            for content, version, name in assignment:
                if name not in centroids:
                    raise ValueError(f"cluster without a centroid: {name!r}")
                yield int(content), int(version), name

        rows = [(name, blob(centroid, self._dim), time.time())
                for name, centroid in centroids.items()]
        with self._transaction() as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS result (id INTEGER PRIMARY KEY,"
                         " version INTEGER NOT NULL, name TEXT NOT NULL)")
            conn.execute("DELETE FROM result")
            conn.executemany("INSERT INTO result VALUES (?, ?, ?)", checked())
            # Write only the rows that change: a recluster with stable names changes few.
            conn.execute("""UPDATE contents SET cluster = r.name, in_recluster = 1 FROM result AS r
                WHERE contents.id = r.id AND contents.version = r.version
                AND contents.gone_at IS NULL
                AND (contents.cluster IS NOT r.name OR contents.in_recluster = 0)""")
            conn.execute("""UPDATE contents SET cluster = NULL, in_recluster = 0
                WHERE (cluster IS NOT NULL OR in_recluster = 1) AND NOT EXISTS (SELECT 1 FROM
                result AS r WHERE r.id = contents.id AND r.version = contents.version)""")
            conn.execute("DELETE FROM result")
            conn.execute("UPDATE clusters SET active = 0")
            conn.executemany("INSERT INTO clusters (name, centroid, active, created_at)"
                             " VALUES (?, ?, 1, ?) ON CONFLICT (name)"
                             " DO UPDATE SET centroid = excluded.centroid, active = 1", rows)
            conn.execute("INSERT INTO reclusters (at, k, photos, changed, ks, inertias,"
                         " knee_found) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (float(info.at), int(info.k), int(info.photos), int(info.changed),
                          json.dumps([int(k) for k in info.elbow.ks]),
                          json.dumps([float(inertia) for inertia in info.elbow.inertias]),
                          int(info.elbow.knee_found)))
            self._set_meta(schema.RECLUSTERED_AT, str(int(seen_changes)))
            return marks.enforce(conn, heirs or {})

    def correct(self, corrections: marks.Marks) -> None:
        """Record the user's corrections in one transaction (`marks.apply`)."""
        if corrections:
            with self._transaction() as conn:
                marks.apply(conn, corrections)

    def forget_gone(self, before: float) -> int:
        """Delete the contents (and vectors) whose last copy went before `before`; returns how
        many. Their files are long gone; a re-download after this is embedded again."""
        if self._conn.execute("SELECT 1 FROM contents WHERE gone_at IS NOT NULL AND gone_at < ?"
                              " LIMIT 1", (before,)).fetchone() is None:
            return 0  # no transaction: it would change the index's stamp for nothing
        with self._transaction() as conn:
            doomed = [row[0] for row in conn.execute(
                "SELECT id FROM contents WHERE gone_at IS NOT NULL AND gone_at < ?", (before,))]
            conn.executemany("DELETE FROM vectors WHERE id = ?", [(i,) for i in doomed])
            conn.executemany("DELETE FROM contents WHERE id = ?", [(i,) for i in doomed])
        return len(doomed)

    def set_meta(self, key: str, value: str) -> None:
        """ValueError for the store's own keys ("store.*")."""
        if key.startswith("store."):
            raise ValueError(f"meta key {key!r} is reserved for the store")
        with self._transaction():
            self._set_meta(key, value)

    def range_search(self, vector: Vectors, radius: float) -> tuple[Ids, Vectors]:
        """Live contents whose inner product with the (dim,) `vector` exceeds `radius`: ids
        (r,) and scores (r,), best first (`VectorIndex.range_search`). A writer's."""
        return self._index.range_search(vector, radius)

    def index_ids(self) -> Ids:
        """The content ids the vector index holds (a writer's; for consistency checks)."""
        return self._index.ids()

    def save_index(self) -> None:
        """Save the vector index if it changed since it was last saved or loaded."""
        if not self._writer:
            raise StateError("the store was opened read-only")
        self._index.save(self._stamp())

    def _pick_missing_canonicals(self) -> None:
        """Contents with copies but no canonical one (a migrated catalog) get theirs."""
        missing = [row[0] for row in self._conn.execute(
            "SELECT id FROM contents WHERE canonical IS NULL AND gone_at IS NULL"
            " AND EXISTS (SELECT 1 FROM files WHERE content = contents.id)")]
        if missing:
            with self._transaction():
                self._contents.pick_canonicals(missing)

    def _file_row(self, path: str) -> tuple[int, int | None]:
        row = self._conn.execute("SELECT id, content FROM files WHERE path = ?",
                                 (encode(path),)).fetchone()
        if row is None:
            raise KeyError(path)
        return int(row[0]), row[1]

    # ---- near-duplicates and similar photos (store/groups.py)

    def search(self, vectors: Vectors, k: int) -> tuple[Vectors, Ids]:
        """The `k` live contents most like each of the (m, dim) `vectors` (inner product):
        scores (m, k) float32 and ids (m, k) int64, best first, -inf and -1 where there are
        fewer. A writer searches its index; a reader the catalog's vectors, chunk by chunk."""
        if self._writer:
            return self._index.search(vectors, k)
        return search_catalog(self._conn, vectors, k, self._dim)

    def shown(self, ids: Iterable[int]) -> dict[int, groups.Shown]:
        """content id -> its canonical copy, taken time, size and group, for the live ones."""
        return groups.shown(self._conn, ids)

    def shown_clustered(self) -> Iterator[groups.Shown]:
        """Every live content that has a cluster, in cluster then id order."""
        return groups.clustered(self._conn)

    def duplicate_groups(self, keys: Iterable[int] | None = None) -> dict[int, list[groups.Shown]]:
        """key -> live members of each near-duplicate group of two or more (or of `keys`)."""
        return groups.live_groups(self._conn, keys)

    def duplicate_keys(self, ids: Iterable[int]) -> dict[int, int]:
        """content id -> its group's key, for those of `ids` (live or gone) in one."""
        return groups.groups_of(self._conn, ids)

    def duplicate_counts(self) -> tuple[int, int]:
        """(groups of two or more live photos, photos in them), for `status`."""
        return groups.counts(self._conn)

    def capture_times(self, ids: Ids) -> npt.NDArray[np.float64]:
        """(n,) EXIF or sidecar capture times of those contents; NaN where there is none."""
        return groups.capture_times(self._conn, ids)

    def content_of(self, content_hash: str) -> int | None:
        """The live content with that hash and a vector, if there is one."""
        row = self._conn.execute("SELECT id FROM contents WHERE hash = ? AND fingerprint IS NOT"
                                 " NULL AND gone_at IS NULL", (content_hash,)).fetchone()
        return None if row is None else int(row[0])

    def has_model(self, fingerprint: str) -> bool:
        """Some live content has a vector of that model."""
        return self._conn.execute("SELECT 1 FROM contents WHERE fingerprint = ? AND gone_at"
                                  " IS NULL LIMIT 1", (fingerprint,)).fetchone() is not None

    def regroup(self, assign: Mapping[int, int | None], renames: Mapping[int, int]) -> None:
        """Live joins, one transaction: every member of group `old` moves to `renames[old]`,
        then each content of `assign` goes to its group key (None: none)."""
        if assign or renames:
            with self._transaction() as conn:
                groups.regroup(conn, assign, renames)

    def commit_duplicates(self, rows: Iterable[tuple[int, int, int]]) -> None:
        """A full pass, one transaction: (content, version, key) of every grouped content;
        a content whose version moved since, and every content not named, leaves its group."""
        with self._transaction() as conn:
            groups.replace_all(conn, rows)

    # ---- the index

    def _rebuild_index(self, reason: str) -> None:
        """Rebuild the index from the catalog and save it at once, while its rows are on their
        way to disk (`index._write_behind`): the stop after it has nothing big left to sync."""
        self._index.rebuild(self._live_vector_chunks(), reason)
        try:
            self.save_index()
        except StateError as error:  # a full disk: the index works; the next open rebuilds
            logger.error("%s; it will be rebuilt from the catalog at the next start", error)

    def _live_vector_chunks(self) -> Iterator[tuple[Ids, Vectors]]:
        """Ids (c,) and vectors (c, dim) of the live contents, id order, `_READ_CHUNK` rows at
        a time: a rebuild at 1M never holds more than one chunk."""
        cursor = self._conn.execute(
            "SELECT v.id, v.vector FROM vectors AS v JOIN contents AS c ON c.id = v.id"
            " WHERE c.gone_at IS NULL ORDER BY v.id")
        while rows := cursor.fetchmany(_READ_CHUNK):
            yield (np.fromiter((row[0] for row in rows), np.int64, len(rows)),
                   stack([row[1] for row in rows], self._dim))

    def _count_live_vectors(self) -> int:
        return int(self._conn.execute(
            "SELECT count(*) FROM contents WHERE fingerprint IS NOT NULL AND gone_at IS NULL"
        ).fetchone()[0])


    # ---- helpers


    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _content_changes(self) -> int:
        return int(self.meta(schema.CONTENT_CHANGES) or 0)


    def _stamp(self) -> str:
        return f"{self.meta(schema.CATALOG_ID)}:{self.meta(schema.CHANGES)}"


def _joined(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


# SQLite result codes the environment causes: full, I/O error, read-only, cannot open, busy.
_ENVIRONMENTAL = frozenset({5, 8, 10, 13, 14})


def _raise_if_environmental(exc: sqlite3.Error) -> None:
    """StateError for what the environment causes (a full disk, a read-only file system);
    anything else is a bug and is left to propagate as it is."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _ENVIRONMENTAL:
        raise StateError(f"cannot write the catalog: {exc}") from exc

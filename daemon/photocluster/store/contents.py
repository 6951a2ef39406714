"""Files and their contents inside one catalog transaction: which content a file holds, which
copy of a content is its canonical one, a content that goes and comes back.

A `Contents` works on the writer's connection inside a transaction the `Store` opened, and keeps
the vector index in step; every change to what the tree shows is returned as a `Written`.
"""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from photocluster import copies
from photocluster.records import Taken
from photocluster.store import schema
from photocluster.store.index import VectorIndex
from photocluster.store.rows import (
    NewFile,
    Relink,
    StoredVector,
    Vectors,
    Written,
    blob,
    decode,
    encode,
    read_vectors,
    stack,
    taken_of,
)


class Contents:
    def __init__(self, conn: sqlite3.Connection, index: VectorIndex, dim: int) -> None:
        self._conn, self._index, self._dim = conn, index, dim

    # ---- a file's content

    def content_for(
        self, item: NewFile, fingerprint: str, fresh: dict[int, Vectors]
    ) -> int | None:
        """The content id for the item's hash: found, brought back, re-embedded or created;
        those needing a place go into `fresh` with their vector. None when the item carries no
        vector and none of this model is stored (it was forgotten since the item was read)."""
        row = self._conn.execute("SELECT id, fingerprint, gone_at FROM contents WHERE hash = ?",
                                 (item.content_hash,)).fetchone()
        if row is None:
            return None if item.vector is None else self._create(item, fingerprint, fresh)
        content, stored_model, gone_at = int(row[0]), row[1], row[2]
        self._better_taken(content, item.taken)
        if stored_model != fingerprint:  # embedded by another model (or never): re-embed
            if item.vector is None:
                return None
            self._fill_dimensions(content, item.dimensions)
            self._set_vector(content, item.vector, fingerprint, stored_model is not None)
            fresh[content] = item.vector
        elif gone_at is not None:  # its last copy went a while ago; it is back
            self._revive(content, fresh)
        return content

    def attach(self, path: str, size: int, mtime_ns: int, content: int | None,
               error: str | None, still: str | None = None) -> Written:
        """Point the file at `path` at `content` (None: failed with `error`, or a companion of
        the still at `still`), creating its row; the content it held before loses a copy."""
        row = self._conn.execute("SELECT id, content, still FROM files WHERE path = ?",
                                 (encode(path),)).fetchone()
        stored_still = None if still is None else encode(still)
        if row is None:
            self._conn.execute("INSERT INTO files (path, size, mtime_ns, content, error, added_at,"
                               " still) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (encode(path), size, mtime_ns, content, error, time.time(),
                                stored_still))
            return self._companion_change(path, None, still)
        file_id, before, was_companion_of = row
        self._conn.execute("UPDATE files SET size = ?, mtime_ns = ?, content = ?, error = ?,"
                           " still = ? WHERE id = ?",
                           (size, mtime_ns, content, error, stored_still, file_id))
        written = self._companion_change(path, _decoded(was_companion_of), still)
        if before is not None and before != content:
            written.extend(self.detach(before, file_id, path))
        return written

    def forget_file(self, path: str) -> Written:
        """The file at `path` left the photo folder (unknown paths are ignored)."""
        row = self._conn.execute("SELECT id, content, still FROM files WHERE path = ?",
                                 (encode(path),)).fetchone()
        if row is None:
            return Written()
        self._conn.execute("DELETE FROM files WHERE id = ?", (row[0],))
        written = self._companion_change(path, _decoded(row[2]), None)
        if row[1] is not None:
            written.extend(self.detach(row[1], row[0], path))
        return written

    def _companion_change(self, path: str, before: str | None, after: str | None) -> Written:
        """The link of the companion video at `path`, which belonged beside `before` and now
        beside `after` (None: no still)."""
        if before == after:
            return Written()
        relinks = []
        for still, old, new in ((before, path, None), (after, None, path)):
            home = self._still_home(still) if still is not None else None
            if home is not None:
                relinks.append(Relink(None, home[0], old, new, home[1]))
        return Written(relinks=relinks)

    def _still_home(self, still: str) -> tuple[str, Taken | None] | None:
        """(cluster, taken) of the content whose canonical copy is at `still`, if clustered."""
        row = self._conn.execute(
            "SELECT c.cluster, c.taken_at, c.taken_offset, c.taken_source FROM files AS f"
            " JOIN contents AS c ON c.canonical = f.id WHERE f.path = ? AND c.cluster IS NOT NULL",
            (encode(still),)).fetchone()
        return None if row is None else (row[0], _taken(row[1:]))

    def detach(self, content: int, file_id: int, path: str) -> Written:
        """`content` lost its copy `file_id` (at `path`): re-pick its canonical copy, or, when
        that was its last, it is gone (its vector stays for a while, out of the index)."""
        remaining = self._conn.execute("SELECT 1 FROM files WHERE content = ? LIMIT 1",
                                       (content,)).fetchone()
        if remaining is not None:
            return self.repick(content, file_id, path)
        cluster, canonical, taken = self._content_row(content)
        self._conn.execute("UPDATE contents SET gone_at = ?, cluster = NULL, in_recluster = 0,"
                           " canonical = NULL, version = version + 1 WHERE id = ?",
                           (time.time(), content))
        self._index.remove(np.asarray([content], np.int64))
        self.bump(schema.CONTENT_CHANGES)
        if canonical != file_id:
            return Written()
        gone = [Relink(content, cluster, path, None, taken)]
        gone += [Relink(None, cluster, companion, None, taken)
                 for companion in self._companions(path)]
        return Written(relinks=gone)

    def _companions(self, still: str) -> list[str]:
        return [decode(row[0]) for row in self._conn.execute(
            "SELECT path FROM files WHERE still = ?", (encode(still),))]

    def repick(self, content: int, file_id: int, old_path: str) -> Written:
        """If `file_id` (once at `old_path`) was the content's canonical copy, choose again."""
        cluster, canonical, taken = self._content_row(content)
        if canonical is not None and canonical != file_id:
            return Written()
        chosen_id, chosen_path = self._best_copy(content)
        self._conn.execute("UPDATE contents SET canonical = ? WHERE id = ?", (chosen_id, content))
        if chosen_path == old_path:
            return Written()
        return Written(relinks=[Relink(content, cluster, old_path, chosen_path, taken)])

    def _content_row(self, content: int) -> tuple[str | None, int | None, Taken | None]:
        row = self._conn.execute("SELECT cluster, canonical, taken_at, taken_offset, taken_source"
                                 " FROM contents WHERE id = ?", (content,)).fetchone()
        return row[0], row[1], _taken(row[2:])

    def pick_canonicals(self, contents: list[int]) -> None:
        """Apply the canonical-copy rule to each of `contents` among its current copies."""
        for content in contents:
            chosen_id, _ = self._best_copy(content)
            self._conn.execute("UPDATE contents SET canonical = ? WHERE id = ?",
                               (chosen_id, content))

    def placeable(self, fresh: dict[int, Vectors]) -> list[StoredVector]:
        """The fresh contents with their canonical path, ready for placement."""
        query = ("SELECT f.path, c.taken_at, c.taken_offset, c.taken_source FROM contents AS c"
                 " JOIN files AS f ON f.id = c.canonical WHERE c.id = ?")
        rows = ((content, self._conn.execute(query, (content,)).fetchone()) for content in fresh)
        return [StoredVector(content, decode(row[0]), fresh[content], _taken(row[1:]))
                for content, row in rows if row is not None]

    # ---- helpers

    def bump(self, key: str) -> None:
        self._conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?",
                           (key,))

    def _create(self, item: NewFile, fingerprint: str, fresh: dict[int, Vectors]) -> int:
        assert item.vector is not None
        stored = blob(item.vector, self._dim)
        taken, (width, height) = item.taken, item.dimensions or (None, None)
        cursor = self._conn.execute(
            "INSERT INTO contents (hash, kind, fingerprint, added_at, taken_at, taken_offset,"
            " taken_source, width, height) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item.content_hash, item.kind, fingerprint, time.time(),
             None if taken is None else taken.at, None if taken is None else taken.offset_minutes,
             None if taken is None else taken.source, width, height))
        content = int(cursor.lastrowid or 0)
        self._conn.execute("INSERT INTO vectors (id, vector) VALUES (?, ?)", (content, stored))
        self._index.add(np.asarray([content], np.int64), stack([stored], self._dim))
        self.bump(schema.CONTENT_CHANGES)
        fresh[content] = item.vector
        return content

    def _revive(self, content: int, fresh: dict[int, Vectors]) -> None:
        ids = np.asarray([content], np.int64)
        self._conn.execute("UPDATE contents SET gone_at = NULL, version = version + 1"
                           " WHERE id = ?", (content,))
        fresh[content] = read_vectors(self._conn, ids, self._dim)[0]
        self._index.add(ids, fresh[content][None])
        self.bump(schema.CONTENT_CHANGES)

    def _set_vector(self, content: int, vector: Vectors, fingerprint: str, had: bool) -> None:
        stored, ids = blob(vector, self._dim), np.asarray([content], np.int64)
        self._conn.execute("UPDATE contents SET fingerprint = ?, cluster = NULL, in_recluster = 0,"
                           " version = version + 1, gone_at = NULL WHERE id = ?",
                           (fingerprint, content))
        self._conn.execute("INSERT OR REPLACE INTO vectors (id, vector) VALUES (?, ?)",
                           (content, stored))
        if had:
            self._index.remove(ids)
        self._index.add(ids, stack([stored], self._dim))
        self.bump(schema.CONTENT_CHANGES)

    def _fill_dimensions(self, content: int, dimensions: tuple[int, int] | None) -> None:
        """A content stored before sizes were kept gets the size its new decode saw."""
        if dimensions is not None:
            self._conn.execute("UPDATE contents SET width = ?, height = ? WHERE id = ?"
                               " AND width IS NULL", (*dimensions, content))

    def _better_taken(self, content: int, taken: Taken | None) -> None:
        """Keep the best-sourced taken time a copy offers (EXIF over a sidecar over an mtime):
        an album copy may carry the sidecar the first copy lacked."""
        if taken is None:
            return
        rank = _SOURCE_RANK[taken.source]
        self._conn.execute(
            "UPDATE contents SET taken_at = ?, taken_offset = ?, taken_source = ? WHERE id = ?"
            " AND (taken_source IS NULL OR CASE taken_source WHEN 'exif' THEN 0"
            " WHEN 'sidecar' THEN 1 ELSE 2 END > ?)",
            (taken.at, taken.offset_minutes, taken.source, content, rank))

    def _best_copy(self, content: int) -> tuple[int, str]:
        copies_of = {decode(path): file_id for file_id, path in self._conn.execute(
            "SELECT id, path FROM files WHERE content = ?", (content,))}
        chosen = copies.best(copies_of)
        return copies_of[chosen], chosen


_SOURCE_RANK = {"exif": 0, "sidecar": 1, "mtime": 2}


def _taken(row: tuple[float | None, int | None, str | None]) -> Taken | None:
    return taken_of(*row)


def _decoded(path: bytes | None) -> str | None:
    return None if path is None else decode(path)

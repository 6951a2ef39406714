"""Near-duplicate groups in the catalog, and the live contents as ranked folders show them.

A content's group is the `contents.dup_group` column: a key, the smallest content id the group
had when it formed (`neardup`'s rule). A group is its *live* members: a member that went keeps
its key (so the folder it leaves can be found and rewritten) until the next full pass clears
it, and a group with fewer than two live members is not shown. Functions over the store's
connection; the writes run inside a transaction the `Store` opened.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from photocluster.records import Taken
from photocluster.store.rows import Ids, decode, taken_of

_SHOWN = """SELECT c.id, f.path, c.hash, c.cluster, c.taken_at, c.taken_offset, c.taken_source,
    coalesce(c.width * c.height, 0), c.dup_group FROM contents AS c
    JOIN files AS f ON f.id = c.canonical WHERE c.gone_at IS NULL"""
_LIVE_GROUPS = """SELECT dup_group FROM contents WHERE dup_group IS NOT NULL
    AND gone_at IS NULL AND canonical IS NOT NULL GROUP BY dup_group HAVING count(*) >= 2"""


@dataclass(frozen=True)
class Shown:
    """A live content as a folder of links shows it: its canonical copy, what names its link."""

    id: int  # contents.id
    path: str  # its canonical copy
    content_hash: str
    cluster: str | None
    taken: Taken | None
    pixels: int  # width x height of the original; 0 when unknown (stored before sizes were)
    group: int | None  # its near-duplicate group's key


def shown(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, Shown]:
    """content id -> Shown, for those of `ids` that are live."""
    query = f"{_SHOWN} AND c.id IN (SELECT value FROM json_each(?))"
    return {row.id: row for row in map(_shown, conn.execute(query, (_json(ids),)))}


def clustered(conn: sqlite3.Connection) -> Iterator[Shown]:
    """Every live content that has a cluster, in cluster then id order."""
    yield from map(_shown, conn.execute(f"{_SHOWN} AND c.cluster IS NOT NULL"
                                        " ORDER BY c.cluster, c.id"))


def live_groups(conn: sqlite3.Connection, keys: Iterable[int] | None = None
                ) -> dict[int, list[Shown]]:
    """key -> the live members (id order) of each group that has two or more: every such
    group, or those among `keys`."""
    query = f"{_SHOWN} AND c.dup_group IN ({_LIVE_GROUPS})"
    args: tuple[str, ...] = ()
    if keys is not None:
        query = f"{_SHOWN} AND c.dup_group IN (SELECT value FROM json_each(?))"
        args = (_json(keys),)
    members: dict[int, list[Shown]] = defaultdict(list)
    for row in map(_shown, conn.execute(f"{query} ORDER BY c.dup_group, c.id", args)):
        assert row.group is not None
        members[row.group].append(row)
    return {key: found for key, found in members.items() if len(found) >= 2}


def groups_of(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, int]:
    """content id -> group key, for those of `ids` (live or not) that have one."""
    return {row[0]: row[1] for row in conn.execute(
        "SELECT id, dup_group FROM contents WHERE dup_group IS NOT NULL"
        " AND id IN (SELECT value FROM json_each(?))", (_json(ids),))}


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(groups of two or more live photos, live photos in them): one aggregate query."""
    row = conn.execute(f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT count(*) AS n"
                       f" FROM contents WHERE dup_group IN ({_LIVE_GROUPS})"
                       " AND gone_at IS NULL AND canonical IS NOT NULL GROUP BY dup_group)"
                       ).fetchone()
    return int(row[0]), int(row[1])


def capture_times(conn: sqlite3.Connection, ids: Ids) -> npt.NDArray[np.float64]:
    """(n,) float64 capture times of those contents from EXIF or a sidecar, NaN otherwise
    (unknown, or only an mtime, which a copy does not keep from its original). One pass over
    the live contents into arrays: a recluster asks for a million."""
    times = np.full(len(ids), np.nan)
    if not len(ids):
        return times
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    cursor = conn.execute(  # a copy keeps its original's EXIF or sidecar time, not its mtime
        "SELECT id, taken_at FROM contents WHERE taken_source IN ('exif', 'sidecar')"
        " AND id BETWEEN ? AND ?", (int(ordered[0]), int(ordered[-1])))
    while rows := cursor.fetchmany(8192):
        found = np.fromiter((row[0] for row in rows), np.int64, len(rows))
        at = np.fromiter((row[1] for row in rows), np.float64, len(rows))
        where = np.searchsorted(ordered, found).clip(0, len(ordered) - 1)
        hit = ordered[where] == found
        times[order[where[hit]]] = at[hit]
    return times


def regroup(conn: sqlite3.Connection, assign: Mapping[int, int | None],
            renames: Mapping[int, int]) -> None:
    """Move every member of group `old` to `renames[old]`, then set each content of `assign`
    to its key (None: no group)."""
    conn.executemany("UPDATE contents SET dup_group = ? WHERE dup_group = ?",
                     [(new, old) for old, new in renames.items()])
    conn.executemany("UPDATE contents SET dup_group = ? WHERE id = ?",
                     [(key, content) for content, key in assign.items()])


def replace_all(conn: sqlite3.Connection, rows: Iterable[tuple[int, int, int]]) -> None:
    """A full pass's result: each (content, version, key) where the content's version is still
    that one; every other content leaves its group (changed since: its placement joins it
    again)."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS dup_result (id INTEGER PRIMARY KEY,"
                 " version INTEGER NOT NULL, key INTEGER NOT NULL)")
    conn.execute("DELETE FROM dup_result")
    conn.executemany("INSERT INTO dup_result VALUES (?, ?, ?)", rows)
    conn.execute("""UPDATE contents SET dup_group = NULL WHERE dup_group IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM dup_result AS r WHERE r.id = contents.id
        AND r.version = contents.version)""")
    conn.execute("""UPDATE contents SET dup_group = r.key FROM dup_result AS r
        WHERE contents.id = r.id AND contents.version = r.version
        AND contents.dup_group IS NOT r.key""")
    conn.execute("DELETE FROM dup_result")


def _shown(row: tuple[Any, ...]) -> Shown:
    content, path, content_hash, cluster, at, offset, source, pixels, group = row
    return Shown(content, decode(path), content_hash, cluster, taken_of(at, offset, source),
                 pixels, group)


def _json(ids: Iterable[int]) -> str:
    return json.dumps([int(i) for i in ids])

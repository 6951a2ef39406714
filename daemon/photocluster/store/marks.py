"""The user's corrections in the catalog: cluster labels, pins, "not this cluster".

- `clusters.label`: the name a user gave a cluster; its folder is called by it. A retired
  cluster keeps its label (the name is retired with it) until a user gives that name to
  another cluster.
- `contents.pinned`: the cluster (identity name) a user put a photo in; while that cluster is
  active the photo is in it, whatever k-means says.
- `rejections (content, cluster)`: a user took the photo out of that cluster; it is never
  placed there again while the cluster lives.

Reads take the writer's or a reader's connection; writes run inside a transaction the `Store`
opened (`Store.correct`, `Store.commit_recluster`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from photocluster.store.rows import decode, encode

logger = logging.getLogger(__name__)

_CHUNK = 500  # parameters per IN (...) query, below SQLite's limit


@dataclass
class Marks:
    """Corrections to record in one transaction (`Store.correct`)."""

    labels: dict[str, str | None] = field(default_factory=dict)  # identity -> label; None clears
    pins: dict[int, str] = field(default_factory=dict)  # content -> identity
    unpins: set[int] = field(default_factory=set)
    rejections: dict[int, str] = field(default_factory=dict)  # content -> identity it left
    retired: set[str] = field(default_factory=set)  # identities whose folder the user deleted

    def __bool__(self) -> bool:
        return bool(self.labels or self.pins or self.unpins or self.rejections or self.retired)


@dataclass(frozen=True)
class PinMoves:
    """What a recluster did to pins of clusters it retired: content -> its new pin (moved),
    and the contents whose pin was dropped."""

    moved: dict[int, tuple[str, str]]  # content -> (old, new)
    dropped: dict[int, str]  # content -> old


# ---- reads


def labels(conn: sqlite3.Connection) -> dict[str, str]:
    """identity -> label of the active clusters a user named."""
    return dict(conn.execute(
        "SELECT name, label FROM clusters WHERE active = 1 AND label IS NOT NULL"))


def label_holder(conn: sqlite3.Connection, label: str) -> tuple[str, bool] | None:
    """(identity, active) of the cluster holding `label`, if any."""
    row = conn.execute("SELECT name, active FROM clusters WHERE label = ?", (label,)).fetchone()
    return None if row is None else (row[0], bool(row[1]))


def pins(conn: sqlite3.Connection) -> dict[int, str]:
    """content -> pinned cluster, for every live pinned content."""
    return dict(conn.execute(
        "SELECT id, pinned FROM contents WHERE pinned IS NOT NULL AND gone_at IS NULL"))


def pinned_paths(conn: sqlite3.Connection, limit: int) -> list[tuple[str, str]]:
    """(canonical path, pinned cluster) of up to `limit` live pinned contents, path order."""
    return [(decode(path), cluster) for path, cluster in conn.execute(
        "SELECT f.path, c.pinned FROM contents AS c JOIN files AS f ON f.id = c.canonical"
        " WHERE c.pinned IS NOT NULL AND c.gone_at IS NULL ORDER BY f.path LIMIT ?", (limit,))]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many live contents are pinned, and how many "not this cluster" marks stand."""
    one = conn.execute
    return {
        "pinned": int(one("SELECT count(*) FROM contents WHERE pinned IS NOT NULL"
                          " AND gone_at IS NULL").fetchone()[0]),
        "rejections": int(one("SELECT count(*) FROM rejections").fetchone()[0]),
    }


def steering(
    conn: sqlite3.Connection, ids: Sequence[int]
) -> tuple[dict[int, str], dict[int, set[str]]]:
    """Pins and rejections of those contents: what placing them must respect."""
    pinned: dict[int, str] = {}
    refused: dict[int, set[str]] = {}
    for chunk in _chunks([int(i) for i in ids]):
        marks = ",".join("?" * len(chunk))
        pinned.update(conn.execute(
            f"SELECT id, pinned FROM contents WHERE id IN ({marks}) AND pinned IS NOT NULL",
            chunk))
        for content, cluster in conn.execute(
                f"SELECT content, cluster FROM rejections WHERE content IN ({marks})", chunk):
            refused.setdefault(content, set()).add(cluster)
    return pinned, refused


def homes(conn: sqlite3.Connection, paths: Iterable[str]) -> dict[str, tuple[int, str | None]]:
    """canonical path -> (content, cluster) for those of `paths` that are the canonical copy of
    a live content; other paths (copies, companions, unknown) are left out."""
    found: dict[str, tuple[int, str | None]] = {}
    for chunk in _chunks([encode(path) for path in paths]):
        marks = ",".join("?" * len(chunk))
        # CROSS JOIN keeps files the outer loop: a path lookup each, not a scan of contents
        for path, content, cluster in conn.execute(
                f"SELECT f.path, c.id, c.cluster FROM files AS f CROSS JOIN contents AS c"
                f" ON c.id = f.content WHERE f.path IN ({marks}) AND c.canonical = f.id"
                " AND c.gone_at IS NULL", chunk):
            found[decode(path)] = (content, cluster)
    return found


def members_of(conn: sqlite3.Connection, cluster: str) -> dict[str, int]:
    """canonical path -> content of every live member of `cluster`."""
    return {decode(path): content for path, content in conn.execute(
        "SELECT f.path, c.id FROM contents AS c JOIN files AS f ON f.id = c.canonical"
        " WHERE c.cluster = ? AND c.gone_at IS NULL", (cluster,))}


# ---- writes, inside the caller's transaction


def apply(conn: sqlite3.Connection, marks: Marks) -> None:
    """Record `marks`: labels first (a label a retired cluster held moves), then retired
    clusters, pins, unpins and rejections. A pin lifts a rejection of the same cluster; a
    rejection lifts a pin to it and takes the photo out of it (the caller places it anew)."""
    for identity, label in marks.labels.items():
        if label is not None:
            conn.execute("UPDATE clusters SET label = NULL WHERE label = ? AND name != ?",
                         (label, identity))
        conn.execute("UPDATE clusters SET label = ? WHERE name = ?", (label, identity))
    for identity in sorted(marks.retired):
        _retire(conn, identity)
    for content, identity in marks.pins.items():
        conn.execute("UPDATE contents SET pinned = ?, cluster = ? WHERE id = ?",
                     (identity, identity, content))
        conn.execute("DELETE FROM rejections WHERE content = ? AND cluster = ?",
                     (content, identity))
    conn.executemany("UPDATE contents SET pinned = NULL WHERE id = ?",
                     [(content,) for content in marks.unpins])
    for content, identity in marks.rejections.items():
        conn.execute("INSERT OR IGNORE INTO rejections (content, cluster) VALUES (?, ?)",
                     (content, identity))
        conn.execute("UPDATE contents SET pinned = NULL WHERE id = ? AND pinned = ?",
                     (content, identity))
        conn.execute("UPDATE contents SET cluster = NULL WHERE id = ? AND cluster = ?",
                     (content, identity))


def _retire(conn: sqlite3.Connection, identity: str) -> None:
    """The user deleted the cluster's folder: it takes no more photos; its members lose it
    (to be placed by nearest centroid), and so do pins to it."""
    conn.execute("UPDATE clusters SET active = 0 WHERE name = ?", (identity,))
    conn.execute("UPDATE contents SET cluster = NULL WHERE cluster = ? AND gone_at IS NULL",
                 (identity,))
    conn.execute("UPDATE contents SET pinned = NULL WHERE pinned = ?", (identity,))
    conn.execute("DELETE FROM rejections WHERE cluster = ?", (identity,))


def enforce(conn: sqlite3.Connection, heirs: Mapping[str, str]) -> PinMoves:
    """After a recluster's assignment is written: a pin to a retired cluster moves to its heir
    (`heirs`: retired identity -> the cluster that took most of its members) unless the photo
    refused that one, else it is dropped; every pinned photo is put in its cluster; a photo
    put in a cluster it refused loses it (the caller places it by its nearest allowed
    centroid); marks on retired clusters go."""
    active = {row[0] for row in conn.execute("SELECT name FROM clusters WHERE active = 1")}
    moves = PinMoves({}, {})
    stale = conn.execute("SELECT id, pinned FROM contents WHERE pinned IS NOT NULL").fetchall()
    for content, pin in stale:
        if pin in active:
            continue
        heir = heirs.get(pin)
        if heir is not None and heir in active and not _refused(conn, content, heir):
            moves.moved[content] = (pin, heir)
        else:
            moves.dropped[content] = pin
    conn.executemany("UPDATE contents SET pinned = ? WHERE id = ?",
                     [(new, content) for content, (_, new) in moves.moved.items()])
    conn.executemany("UPDATE contents SET pinned = NULL WHERE id = ?",
                     [(content,) for content in moves.dropped])
    conn.execute("UPDATE contents SET cluster = pinned WHERE pinned IS NOT NULL"
                 " AND gone_at IS NULL AND cluster IS NOT pinned")
    conn.execute("DELETE FROM rejections WHERE cluster NOT IN"
                 " (SELECT name FROM clusters WHERE active = 1)")
    conn.execute("UPDATE contents SET cluster = NULL WHERE id IN (SELECT r.content FROM"
                 " rejections AS r JOIN contents AS c ON c.id = r.content"
                 " AND c.cluster = r.cluster)")
    return moves


def _refused(conn: sqlite3.Connection, content: int, cluster: str) -> bool:
    return conn.execute("SELECT 1 FROM rejections WHERE content = ? AND cluster = ?",
                        (content, cluster)).fetchone() is not None


def _chunks(items: list[int] | list[bytes]) -> Iterable[list[int] | list[bytes]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]

"""The catalog's SQLite schema, its connection settings and its migrations.

Schema 3 made the *content* the unit of everything: one `contents` row per distinct file
content (blake2b of the bytes), holding the one vector, cluster and canonical copy; one `files`
row per path, pointing at its content (or carrying the reason it failed). A photo copied into
three album folders is one content with three files: one clustering member, one link.

Ids are AUTOINCREMENT: never reused, so a result computed for a content that was deleted meanwhile
can never land on another. `contents.version` grows whenever what a recluster computed on changes
(its vector, or its going and coming back); a recluster commits only rows whose version it saw.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import uuid
from pathlib import Path

from photocluster.errors import StateError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 4  # PRAGMA user_version; each older version has its migration below
PAGE_SIZE = 16_384  # new catalogs: 7 vectors of 512-d a page (a 4 KiB page holds only one)
# meta keys the store owns
CHANGES = "store.changes"  # bumped by every write transaction: the index's stamp
CATALOG_ID = "store.catalog_id"
DIM = "store.dim"
CONTENT_CHANGES = "store.content_changes"  # bumped when the set of clustering members changes
RECLUSTERED_AT = "store.reclustered_at"  # CONTENT_CHANGES as the last committed recluster saw it

_TABLES = """
CREATE TABLE contents (id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE, -- blake2b-128 hex of the bytes (of a sample for a big video)
    kind TEXT NOT NULL DEFAULT 'photo', -- 'photo' | 'video'
    fingerprint TEXT, -- the model of its row in `vectors`; NULL: none
    cluster TEXT, in_recluster INTEGER NOT NULL DEFAULT 0, -- 1: the last recluster placed it
    version INTEGER NOT NULL DEFAULT 1,
    canonical INTEGER, -- files.id of the copy its link points at; NULL while it has no file
    taken_at REAL, taken_offset INTEGER, -- UTC epoch seconds; minutes east of UTC, if known
    taken_source TEXT, -- 'exif' | 'sidecar' | 'mtime'
    width INTEGER, height INTEGER, -- of the original, upright, where its header said
    dup_group INTEGER, -- its near-duplicate group: the key (smallest id) the group had when
                       -- it was formed; a group is its live members (duplicates.py)
    pinned TEXT, -- a cluster the user put it in (its identity name)
    gone_at REAL, -- when its last file went; its vector is kept a while for a re-download
    added_at REAL NOT NULL);
CREATE TABLE vectors (id INTEGER PRIMARY KEY, -- contents.id; a row iff fingerprint is set
    vector BLOB NOT NULL); -- (dim,) little-endian float32
CREATE TABLE files (id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE, -- os.fsencode(path relative to the photo root)
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    content INTEGER, -- contents.id; NULL when it failed (error) or is a companion (still)
    error TEXT, added_at REAL NOT NULL,
    still BLOB); -- a motion/live-photo video: the path of the still it belongs beside
CREATE INDEX files_content ON files (content);
CREATE INDEX files_still ON files (still) WHERE still IS NOT NULL;
CREATE INDEX contents_live ON contents (fingerprint, cluster, in_recluster)
    WHERE gone_at IS NULL;
CREATE INDEX contents_dup ON contents (dup_group) WHERE dup_group IS NOT NULL;
CREATE INDEX contents_gone ON contents (gone_at) WHERE gone_at IS NOT NULL;
CREATE INDEX contents_unseen ON contents (fingerprint) -- photos_since_recluster: O(unseen)
    WHERE in_recluster = 0 AND gone_at IS NULL;
CREATE INDEX contents_cluster ON contents (cluster, taken_at) -- a folder's members: O(its
    WHERE gone_at IS NULL;                        -- size); its dates: O(log n) (schema 4)
CREATE INDEX contents_pinned ON contents (pinned) WHERE pinned IS NOT NULL;
CREATE TABLE rejections (content INTEGER NOT NULL, cluster TEXT NOT NULL,
    PRIMARY KEY (content, cluster)) WITHOUT ROWID; -- "not this cluster" corrections
CREATE TABLE clusters (name TEXT PRIMARY KEY, centroid BLOB NOT NULL, active INTEGER NOT NULL,
    created_at REAL NOT NULL, label TEXT UNIQUE); -- label: the folder name a user gave it
CREATE TABLE reclusters (id INTEGER PRIMARY KEY, at REAL NOT NULL, k INTEGER NOT NULL,
    photos INTEGER NOT NULL, changed INTEGER NOT NULL, ks TEXT NOT NULL, -- JSON lists
    inertias TEXT NOT NULL, knee_found INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def connect_writer(path: Path) -> sqlite3.Connection:
    """The writer's connection: WAL, synchronous=NORMAL, private files.

    Raises StateError where SQLite cannot use WAL (a network file system)."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))  # private first
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


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection (`status`, a recluster's snapshot): sees the last commit, and in
    a read transaction keeps seeing it while the writer goes on (WAL)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    return conn


def open_schema(conn: sqlite3.Connection, dim: int) -> None:
    """Create the schema in a new catalog, or migrate an older one in one transaction.

    Raises StateError for a newer schema or another vector size."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        _create(conn, dim)
    elif version in _MIGRATIONS:
        _migrate(conn, version)
    elif version != SCHEMA_VERSION:
        raise StateError(f"catalog schema {version}; this photocluster reads {SCHEMA_VERSION}")
    stored = conn.execute("SELECT value FROM meta WHERE key = ?", (DIM,)).fetchone()[0]
    if int(stored) != dim:
        raise StateError(f"the catalog holds {stored}-d vectors, not {dim}-d")


def _create(conn: sqlite3.Connection, dim: int) -> None:
    meta = {CATALOG_ID: uuid.uuid4().hex, CHANGES: "0", DIM: str(int(dim)),
            CONTENT_CHANGES: "0", RECLUSTERED_AT: "-1"}
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(_TABLES):
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring an older catalog to SCHEMA_VERSION, one step after another, in one transaction."""
    started = time.monotonic()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in _MIGRATIONS[version]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    logger.info("catalog migrated from schema %d to %d in %.1f s", version, SCHEMA_VERSION,
                time.monotonic() - started)


def _from_1(conn: sqlite3.Connection) -> None:
    """Schema 1 kept each vector in its photo row; schema 2 moved them to `vectors`."""
    for statement in _statements("""
        ALTER TABLE photos RENAME TO photos_v1;
        DROP INDEX photos_content_hash; DROP INDEX photos_ok;
        CREATE TABLE photos (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE, size INTEGER
            NOT NULL, mtime_ns INTEGER NOT NULL, content_hash TEXT, fingerprint TEXT,
            cluster TEXT, error TEXT, added_at REAL NOT NULL,
            in_recluster INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL);
        INSERT INTO vectors (id, vector) SELECT id, vector FROM photos_v1
            WHERE vector IS NOT NULL;
        INSERT INTO photos (id, path, size, mtime_ns, content_hash, fingerprint, cluster, error,
                added_at, in_recluster)
            SELECT id, path, size, mtime_ns, content_hash,
                CASE WHEN vector IS NOT NULL THEN fingerprint END, cluster, error, added_at,
                in_recluster FROM photos_v1;
        DROP TABLE photos_v1"""):
        conn.execute(statement)


def _from_2(conn: sqlite3.Connection) -> None:
    """Schema 2 had one row per path; schema 3 one per content, its paths in `files`.

    Copies of one content become one content (the vector and cluster of its oldest row) with
    several files; its canonical copy is picked by the rule (`canonical.best`) by the store at
    its next open (rows whose canonical is NULL). The index is rebuilt (new ids), and the tree
    disagrees with the catalog until the start-up repair rebuilds it with one link per content.
    """
    dirty = conn.execute(
        "SELECT value FROM meta WHERE key = 'changed_since_recluster'").fetchone()
    for statement in _statements("""
        ALTER TABLE photos RENAME TO photos_v2;
        ALTER TABLE vectors RENAME TO vectors_v2;
        ALTER TABLE clusters RENAME TO clusters_v2;
        DROP INDEX IF EXISTS photos_content_hash; DROP INDEX IF EXISTS photos_ok"""):
        conn.execute(statement)
    for statement in _statements(_TABLES.split("CREATE TABLE reclusters")[0]):
        conn.execute(statement)
    for statement in _statements(f"""
        CREATE TEMP TABLE firsts AS SELECT min(id) AS old, content_hash AS hash FROM photos_v2
            WHERE fingerprint IS NOT NULL AND content_hash IS NOT NULL GROUP BY content_hash;
        INSERT INTO contents (hash, fingerprint, cluster, in_recluster, added_at)
            SELECT p.content_hash, p.fingerprint, p.cluster, p.in_recluster, p.added_at
            FROM photos_v2 AS p JOIN firsts AS f ON f.old = p.id ORDER BY p.id;
        INSERT INTO vectors (id, vector) SELECT c.id, v.vector FROM firsts AS f
            JOIN contents AS c ON c.hash = f.hash JOIN vectors_v2 AS v ON v.id = f.old;
        INSERT INTO files (path, size, mtime_ns, content, error, added_at)
            SELECT p.path, p.size, p.mtime_ns, c.id, p.error, p.added_at FROM photos_v2 AS p
            LEFT JOIN contents AS c ON c.hash = p.content_hash AND p.fingerprint IS NOT NULL
            ORDER BY p.id;
        INSERT INTO clusters (name, centroid, active, created_at)
            SELECT name, centroid, active, created_at FROM clusters_v2;
        DROP TABLE firsts; DROP TABLE photos_v2; DROP TABLE vectors_v2; DROP TABLE clusters_v2;
        DELETE FROM meta WHERE key = 'changed_since_recluster';
        INSERT INTO meta VALUES ('{CONTENT_CHANGES}', '0'),
            ('{RECLUSTERED_AT}', '{0 if dirty and dirty[0] == "0" else -1}')"""):
        conn.execute(statement)


def _from_3(conn: sqlite3.Connection) -> None:
    """Schema 4 adds the taken time to the `contents_cluster` index: `status` reads each
    cluster's earliest and latest photo from it instead of grouping a million rows (0.7 s)."""
    for statement in _statements("""
        DROP INDEX IF EXISTS contents_cluster;
        CREATE INDEX contents_cluster ON contents (cluster, taken_at) WHERE gone_at IS NULL"""):
        conn.execute(statement)


_MIGRATIONS = {1: (_from_1, _from_2, _from_3), 2: (_from_2, _from_3), 3: (_from_3,)}


def _statements(script: str) -> list[str]:
    """The SQL statements of a script, split where SQLite says a statement is complete (so a
    ';' inside a comment or a literal does not split one)."""
    statements, buffer = [], ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                statements.append(buffer.strip())
            buffer = ""
    return statements

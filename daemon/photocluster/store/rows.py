"""What the catalog hands out and takes in, and how paths and vectors are stored in it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from photocluster.records import Taken

_FS_CODEC = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FileRecord:
    """One path in the photo folder, with what the catalog knows of its content."""

    id: int  # files.id
    path: str
    size: int
    mtime_ns: int
    content: int | None  # contents.id; None when it failed
    content_hash: str | None
    fingerprint: str | None  # the model of its content's vector
    cluster: str | None
    error: str | None
    canonical: bool  # its content's link points here
    still: str | None = None  # a companion video: the still it belongs beside


@dataclass(frozen=True)
class NewFile:
    """A file read and hashed; `vector` when it was embedded, None when its content's vector of
    this model is already in the catalog (a copy, a move, a touched file)."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    vector: Vectors | None = None  # (dim,) float32
    kind: str = "photo"  # "photo" | "video"
    taken: Taken | None = None
    dimensions: tuple[int, int] | None = None  # (width, height) of the original, upright


@dataclass(frozen=True)
class NewCompanion:
    """A motion or live-photo video beside its still: not clustered on its own, linked next to
    the still wherever the still's content is linked."""

    path: str
    size: int
    mtime_ns: int
    still: str  # the still's path

@dataclass(frozen=True)
class StoredVector:
    """A content with its vector and canonical path, as placement needs it."""

    id: int  # contents.id
    path: str
    vector: Vectors  # (dim,) float32
    taken: Taken | None = None


@dataclass(frozen=True)
class Relink:
    """A link in `cluster` must move from `old` to `new`: a content's canonical copy changed,
    or its last copy went (`new` None), or a companion video came (`old` None) or went."""

    content: int | None  # None for a companion's own link
    cluster: str | None
    old: str | None
    new: str | None
    taken: Taken | None = None  # of the content: the link's name may carry its date


@dataclass
class Written:
    """What a write asks of the tree: contents to place, links to move."""

    placeable: list[StoredVector] = field(default_factory=list)
    relinks: list[Relink] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # paths whose vector vanished meanwhile

    def extend(self, other: Written) -> None:
        self.placeable += other.placeable
        self.relinks += other.relinks
        self.skipped += other.skipped


@dataclass(frozen=True)
class Members:
    """The live contents of one model, for a recluster: ids, versions, previous clusters."""

    ids: Ids  # (n,) int64, id order
    versions: Ids  # (n,) int64
    clusters: ClusterMap  # content id -> cluster, for those that have one
    changes: int  # the content-change counter they were read at


class ClusterMap(Mapping[int, str]):
    """content id -> cluster name, held as arrays (a dict of a million ids costs ~100 MB):
    `codes` (n,) int32 indexes `names` for each of the sorted `ids` (n,), -1 for no cluster."""

    def __init__(self, ids: Ids, codes: npt.NDArray[np.int32], names: Sequence[str]) -> None:
        self.ids, self.codes, self.names = ids, codes, tuple(names)

    @classmethod
    def of(cls, ids: Ids, clusters: Mapping[int, str]) -> ClusterMap:
        """The map of `clusters` over the sorted `ids` (ids missing from it have none)."""
        names = sorted(set(clusters.values()))
        column = {name: code for code, name in enumerate(names)}
        codes = np.fromiter((column.get(clusters.get(i, ""), -1) for i in ids.tolist()),
                            np.int32, len(ids))
        return cls(ids, codes, names)

    def __getitem__(self, content: int) -> str:
        position = int(np.searchsorted(self.ids, content))
        if position == len(self.ids) or self.ids[position] != content:
            raise KeyError(content)
        code = int(self.codes[position])
        if code < 0:
            raise KeyError(content)
        return self.names[code]

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids[self.codes >= 0].tolist())

    def __len__(self) -> int:
        return int((self.codes >= 0).sum())


def file_record(row: tuple[Any, ...]) -> FileRecord:
    (file_id, path, size, mtime_ns, content, content_hash, fingerprint, cluster, error, first,
     still) = row
    return FileRecord(file_id, decode(path), size, mtime_ns, content, content_hash, fingerprint,
                      cluster, error, bool(first), None if still is None else decode(still))


def encode(path: str) -> bytes:
    return os.fsencode(path)


def decode(blob: bytes) -> str:
    return blob.decode(*_FS_CODEC)  # os.fsdecode, inlined: it runs once per row


def stack(blobs: list[bytes], dim: int) -> Vectors:
    """Blobs of (dim,) little-endian float32 -> (n, dim) float32, one copy."""
    return np.frombuffer(b"".join(blobs), "<f4").astype(np.float32).reshape(len(blobs), dim)


def blob(vector: Vectors, dim: int) -> bytes:
    """A (dim,) vector as stored: little-endian float32. ValueError for another shape."""
    array = np.ascontiguousarray(vector, "<f4")
    if array.shape != (dim,):
        raise ValueError(f"expected a ({dim},) vector, got shape {array.shape}")
    return array.tobytes()


def read_vectors(conn: sqlite3.Connection, ids: Ids, dim: int) -> Vectors:
    """(n, dim) vectors of those contents from the catalog, in the order given."""
    query = "SELECT vector FROM vectors WHERE id = ?"
    return stack([conn.execute(query, (int(i),)).fetchone()[0] for i in ids], dim)


def search_catalog(conn: sqlite3.Connection, queries: Vectors, k: int, dim: int,
                   chunk: int = 8192) -> tuple[Vectors, Ids]:
    """The `k` live vectors of the catalog with the largest inner product with each of the
    (m, dim) `queries`: scores (m, k) float32 and ids (m, k) int64, best first, -inf and -1
    where there are fewer. Memory stays at a chunk of `chunk` rows whatever the library's
    size.

    The `vectors` table is scanned alone, and the few vectors of gone contents are masked out
    (one read transaction for both reads): a join with `contents` for every row doubled the
    scan (100 000 vectors, 2 loaded cores: 1.3 s of fetching against 0.5-0.6 s)."""
    matrix = np.ascontiguousarray(queries, np.float32).reshape(-1, dim)  # (m, dim)
    scores = np.full((len(matrix), k), -np.inf, np.float32)  # (m, k)
    found = np.full((len(matrix), k), -1, np.int64)  # (m, k)
    with _read_transaction(conn):
        gone = np.fromiter((row[0] for row in conn.execute(
            "SELECT id FROM contents WHERE gone_at IS NOT NULL")), np.int64)
        cursor = conn.execute("SELECT id, vector FROM vectors")
        while rows := cursor.fetchmany(chunk):
            ids = np.fromiter((row[0] for row in rows), np.int64, len(rows))  # (c,)
            block = np.frombuffer(b"".join([row[1] for row in rows]), "<f4").reshape(-1, dim)
            products = matrix @ block.T  # (m, c)
            products[:, np.isin(ids, gone)] = -np.inf
            scores, found = _top(np.hstack([scores, products]),
                                 np.hstack([found, np.broadcast_to(ids, products.shape)]), k)
    return scores, found


@contextlib.contextmanager
def _read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Reads inside see one state of the catalog (a WAL snapshot), unless one is open."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _top(scores: Vectors, ids: Ids, k: int) -> tuple[Vectors, Ids]:
    """The k best of each row of (m, c) scores and ids, best first."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (m, k), unordered
        scores, ids = np.take_along_axis(scores, part, 1), np.take_along_axis(ids, part, 1)
    best = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)


def taken_of(at: float | None, offset: int | None, source: str | None) -> Taken | None:
    """A Taken from the (taken_at, taken_offset, taken_source) columns; None when unknown."""
    if at is None or source not in ("exif", "sidecar", "mtime"):
        return None
    return Taken(at, offset, source)  # type: ignore[arg-type]

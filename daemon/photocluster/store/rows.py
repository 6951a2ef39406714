"""What the catalog hands out and takes in, and how paths and vectors are stored in it."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

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


@dataclass(frozen=True)
class NewFile:
    """A file read and hashed; `vector` when it was embedded, None when its content's vector of
    this model is already in the catalog (a copy, a move, a touched file)."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    vector: Vectors | None = None  # (dim,) float32
    kind: str = "photo"


@dataclass(frozen=True)
class StoredVector:
    """A content with its vector and canonical path, as placement needs it."""

    id: int  # contents.id
    path: str
    vector: Vectors  # (dim,) float32


@dataclass(frozen=True)
class Relink:
    """A content's link must move from `old` (its canonical path until now) to `new`, or go
    (`new` None: its last copy went)."""

    content: int
    cluster: str | None
    old: str
    new: str | None


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
    file_id, path, size, mtime_ns, content, content_hash, fingerprint, cluster, error, first = row
    return FileRecord(file_id, decode(path), size, mtime_ns, content, content_hash, fingerprint,
                      cluster, error, bool(first))


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

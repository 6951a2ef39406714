"""A synthetic library of any size, made fast: empty photo files, a catalog filled by direct SQL
(one row per file and content, a vector each, clustered), and the cluster tree the catalog asks
for. What the daemon then does with it is real; only the making is shortcut (the store's own
`put_files` costs ~10 statements a photo: a million would take most of an hour here).

Vectors are `CLUSTERS` gaussian blobs on the 512-d sphere; each photo's cluster is its blob.
The index is not written: the daemon's first open rebuilds it from the catalog, as after an
upgrade, and saves it when it stops.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.common import stopwatch, timed
from photocluster import photos, placement
from photocluster.library import THUMBS_CURSOR
from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.store import Store
from photocluster.store.catalog import CATALOG
from photocluster.store.schema import CHANGES, CONTENT_CHANGES, RECLUSTERED_AT
from photocluster.tree import ClusterTree

CLUSTERS = 20
SPREAD = 0.04  # per-dimension noise: a member lies ~0.9 from its centre, centres ~1.4 apart
PER_FOLDER = 1000
TOP_FOLDER = 10_000  # a top folder (a year, say) of ten folders: what is moved away at once
CHUNK = 20_000

Vectors = npt.NDArray[np.float32]


def blobs(count: int, centres: int, seed: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
    """`count` unit vectors around `centres` random unit centres, and each one's centre."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, 512), dtype=np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    labels = rng.integers(0, centres, count)  # (n,) int64
    vectors = np.empty((count, 512), np.float32)  # filled in chunks: no (n, 512) temporaries
    for start in range(0, count, 65_536):
        part = labels[start:start + 65_536]
        chunk = middle[part] + SPREAD * rng.standard_normal((len(part), 512), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        vectors[start:start + len(part)] = chunk
    return vectors, labels


def folder_of(index: int) -> str:
    """Top folders of TOP_FOLDER photos ("003"), each in folders of PER_FOLDER ("003/07")."""
    return f"{index // TOP_FOLDER:03d}/{index % TOP_FOLDER // PER_FOLDER:02d}"


def index_of(name: str) -> int:
    """The photo number in a name `make_library` gave ("IMG_0012345.jpg" -> 12345)."""
    return int(name[4:11])


def make_library(base: Path, count: int, fingerprint: str) -> dict[str, float]:
    """photos/ with `count` empty files in folders of PER_FOLDER, state/ with their catalog,
    clusters/ with their tree. Returns seconds spent on each part."""
    spent: dict[str, float] = {}
    spent[f"{count} empty files"] = timed(lambda: _write_files(base / "photos", count))
    spent["catalog by direct SQL"] = timed(
        lambda: _fill_catalog(base / "state", base / "photos", count, fingerprint))
    with stopwatch() as took, Store(base / "state") as store:  # the index rebuilt once, saved
        tree = ClusterTree(base / "clusters", base / "photos")
        placement.rebuild_tree(store, tree, None, None)
    spent["index and cluster tree"] = took.wall
    return spent


def _write_files(root: Path, count: int) -> None:
    for folder in range(0, count, PER_FOLDER):
        os.makedirs(root / folder_of(folder), exist_ok=True)
    for index in range(count):
        descriptor = os.open(root / folder_of(index) / f"IMG_{index:07d}.jpg",
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(descriptor)  # empty: no data block to allocate, or to discard at clean-up


def _fill_catalog(state: Path, root: Path, count: int, fingerprint: str) -> None:
    vectors, labels = blobs(count, CLUSTERS, seed=0)  # (n, 512), (n,)
    centres = [vectors[labels == c].mean(axis=0) for c in range(CLUSTERS)]
    names = [f"cluster-{c + 1:03d}" for c in range(CLUSTERS)]
    now = time.time()
    with Store(state):
        pass  # creates the catalog and its schema, then lets go of it
    # White box: the bench writes the rows the store would, by SQL, on a connection of its own
    # (the public schema; no store object is open meanwhile). Ingesting a million rows through
    # the store would take hours here.
    conn = sqlite3.connect(state / CATALOG, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for ids, found in _walked(root, count):
            conn.executemany(
                "INSERT INTO contents (id, hash, fingerprint, cluster, in_recluster, canonical,"
                " added_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
                ((i, f"{i:032x}", fingerprint, names[labels[i - 1]], i, now) for i in ids))
            conn.executemany("INSERT INTO vectors (id, vector) VALUES (?, ?)",
                             ((i, vectors[i - 1].astype("<f4").tobytes()) for i in ids))
            conn.executemany(
                "INSERT INTO files (id, path, size, mtime_ns, content, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                ((i, os.fsencode(path), info.st_size, info.st_mtime_ns, i, now)
                 for i, (path, info) in zip(ids, found, strict=True)))
        conn.executemany("INSERT INTO clusters (name, centroid, active, created_at)"
                         " VALUES (?, ?, 1, ?)",
                         [(name, (centre / np.linalg.norm(centre)).astype("<f4").tobytes(), now)
                          for name, centre in zip(names, centres, strict=True)])
        info = ReclusterInfo(now, count, 0, ElbowCurve((CLUSTERS,), (1.0,), CLUSTERS, True))
        conn.execute("INSERT INTO reclusters (at, k, photos, changed, ks, inertias, knee_found)"
                     " VALUES (?, ?, ?, 0, ?, ?, 1)",
                     (info.at, info.k, info.photos, json.dumps([CLUSTERS]), json.dumps([1.0])))
        for key, value in ((CHANGES, 1), (CONTENT_CHANGES, 1), (RECLUSTERED_AT, 1)):
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (str(value), key))
        # As this version leaves a library: the idle thumbnail fill done (for an upgraded one
        # it would try each of a million empty files first, and the "idle" figures measure it)
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (THUMBS_CURSOR, str(count + 1)))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _walked(root: Path, count: int) -> Iterator[tuple[list[int], list[tuple[str, os.stat_result]]]]:
    """(ids 1.., (path, lstat)) of the photo files in walk order, CHUNK at a time."""
    batch: list[tuple[str, os.stat_result]] = []
    next_id = 1
    for item in photos.walk(root):
        batch.append(item)
        if len(batch) == CHUNK:
            yield list(range(next_id, next_id + len(batch))), batch
            next_id, batch = next_id + len(batch), []
    if batch:
        yield list(range(next_id, next_id + len(batch))), batch
    if next_id + len(batch) - 1 != count:
        raise RuntimeError(f"walked {next_id + len(batch) - 1} photos, made {count}")

"""Near-duplicate groups: photos whose vectors lie within a calibrated cosine distance.

Burst shots, resized or re-compressed copies, small crops, edited versions: the embedder's
L2-normalised vectors of such photos lie much closer to each other than those of two different
photos, even of one subject. A group is a connected component of the "closer than the threshold"
graph with two or more members; identical files never get here (one content = one photo).

Pure functions over arrays, numpy and faiss only. Distances are cosine distances, 1 - the inner
product of two unit vectors; FAISS range searches an `IndexFlatIP` for inner products above
1 - threshold.

A group's key is its smallest photo id: `groups` lists each group sorted, key first, and `join`
keeps that rule when a new photo arrives, so the two agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

import faiss
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

# Cosine distance below which two photos are linked. Calibrated by `python -m bench neardup`
# (BENCHMARKS.md, "Near-duplicates"): copies of setA and setC photos (resized, JPEG q40, cropped,
# brightened, tinted, sepia, rotated) against different photos of the same category, real model.
# Photos with a longer side of 224 px or more (camera photos): at 0.09 precision 0.977, recall
# 0.904, the one threshold that meets the goal (>= 0.97 / >= 0.90); 0.08 gives 0.985 /
# 0.891 (recall 0.97-1.0 per transform but sepia, 0.35), 0.10 precision 0.945. Photos under
# 224 px are enlarged by repeating pixels and fare worse (at 0.08 precision 0.917, recall 0.746).
# The daemon's default, `duplicates.threshold` in config.py, is this value.
SHIPPED_THRESHOLD = 0.09
# Up to this many photos a pass compares every pair. Measured on synthetic vectors (2 loaded
# cores): exhaustive 0.55 s vs partitioned 0.67 s at 4 000 photos, 2.1 s vs 1.3 s at 8 000.
FLAT_LIMIT = 5_000
# Above it, photos are split into lists of about this many (k-means on the vectors) and each
# photo is compared with the photos of its PROBES nearest lists (see `linked_pairs`).
LIST_SIZE = 1_000
PROBES = 2
KMEANS_ITERATIONS = 10
KMEANS_SEED = 1234

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]
Times = npt.NDArray[np.float64]
Pairs = npt.NDArray[np.int64]  # (m, 2) row indices, i < j


def groups(
    ids: Sequence[int] | Ids,
    vectors: Vectors,
    threshold: float,
    taken: Times | None = None,
    burst_seconds: float | None = None,
) -> list[list[int]]:
    """Near-duplicate groups of a library: each a sorted list of 2+ ids, groups sorted by key.

    `vectors` (n, d) are unit rows, `ids` (n,) their photo ids. Two photos are linked when their
    cosine distance is below `threshold`; a group is a connected component of those links.
    With `taken` (n,) capture times in seconds (NaN where unknown) and `burst_seconds`, a link
    between two photos whose capture times are both known and further apart than that is
    dropped: a copy keeps its original's capture time (or has none: stripped by a messenger, a
    screenshot), while two shots of one scene minutes apart are two moments. Unknown times never
    drop a link. Raises ValueError when the shapes disagree.
    """
    row_ids = np.asarray(ids, np.int64)
    _check(row_ids, vectors, taken)
    pairs = linked_pairs(vectors, threshold)
    if taken is not None and burst_seconds is not None:
        pairs = pairs[same_moment(taken[pairs[:, 0]], taken[pairs[:, 1]], burst_seconds)]
    found = _components(row_ids, pairs)
    logger.debug("near-duplicates: %d groups from %d links among %d photos", len(found),
                 len(pairs), len(row_ids))
    return found


def linked_pairs(vectors: Vectors, threshold: float, flat_limit: int = FLAT_LIMIT,
                 list_size: int = LIST_SIZE) -> Pairs:
    """(m, 2) row index pairs i < j of `vectors` (n, d) closer than `threshold`, unique, sorted.

    Up to `flat_limit` rows every pair is compared (one range search). Above it the rows are
    partitioned by k-means into lists of about `list_size`, and each row is range-searched
    against the rows whose nearest list is one of its own PROBES nearest: an inverted-file
    search, but done list by list as one matrix product each, where FAISS's IVF range search
    goes photo by photo. A pair is missed only when neither photo's nearest list is among the
    other's PROBES nearest (BENCHMARKS.md measures how rarely).
    """
    rows = np.ascontiguousarray(vectors, np.float32)  # (n, d)
    if len(rows) < 2:
        return np.empty((0, 2), np.int64)
    if len(rows) <= flat_limit:
        everything = np.arange(len(rows), dtype=np.int64)
        return _unique(_range_pairs(rows, everything, everything, threshold))
    nearest = _nearest_lists(rows, max(2, len(rows) // list_size))  # (n, PROBES)
    found = [_range_pairs(rows, np.flatnonzero((nearest == index).any(axis=1)),
                          np.flatnonzero(nearest[:, 0] == index), threshold)
             for index in range(int(nearest.max()) + 1)]
    return _unique(np.concatenate(found))


def same_moment(first: Times, second: Times, burst_seconds: float) -> npt.NDArray[np.bool_]:
    """(m,) True where a link between photos taken at `first` and `second` (m,) may stand:
    either time unknown (NaN), or at most `burst_seconds` apart."""
    with np.errstate(invalid="ignore"):
        apart = np.abs(first - second) > burst_seconds  # NaN compares False: it never drops
    return ~apart


@dataclass(frozen=True)
class Joined:
    """What a new photo changes: `key` is its group's key (None: it stays alone); `photos`
    (the new one and neighbours that were alone) go into that group, and every member of the
    groups `absorbed` moves to it. Keys are smallest member ids, so `key` is the smallest of
    them all."""

    key: int | None
    photos: tuple[int, ...]
    absorbed: tuple[int, ...]


def join(
    photo_id: int,
    neighbour_ids: Sequence[int] | Ids,
    similarities: Sequence[float] | npt.NDArray[np.float32],
    group_of: Mapping[int, int],
    threshold: float,
    taken: float | None = None,
    neighbour_taken: Sequence[float | None] | None = None,
    burst_seconds: float | None = None,
) -> Joined:
    """A new photo joins, merges or forms groups without a full pass.

    `neighbour_ids` and `similarities` (k,) are a FAISS search of the library for its vector
    (inner products; id -1 means none, its own id is ignored); `group_of` maps a grouped
    neighbour's id to its group key (neighbours missing from it are alone). `taken`,
    `neighbour_taken` and `burst_seconds` apply `groups`' burst rule. The result agrees with
    a full pass as long as every linked photo is among the k neighbours or in a group with one.
    """
    linked = _linked_neighbours(photo_id, neighbour_ids, similarities, threshold)
    if taken is not None and neighbour_taken is not None and burst_seconds is not None:
        times = dict(zip(np.asarray(neighbour_ids, np.int64).tolist(), neighbour_taken,
                         strict=True))
        linked = [i for i in linked if _same_moment_one(taken, times[i], burst_seconds)]
    if not linked:
        return Joined(None, (), ())
    keys = sorted({group_of[i] for i in linked if i in group_of})
    alone = sorted({photo_id, *(i for i in linked if i not in group_of)})
    return Joined(min(keys[:1] + alone), tuple(alone), tuple(keys))


class Member(TypedDict):
    """What best-first ordering reads of a photo."""

    id: int
    pixels: int  # width x height of the original
    taken: float | None  # capture time, seconds; None when unknown


def best_first(members: Iterable[Member]) -> list[Member]:
    """The group's photos, the one to keep first: most pixels, then the oldest capture time
    (an unknown time after every known one), then the smallest id."""
    return sorted(members, key=lambda m: (-m["pixels"], m["taken"] is None, m["taken"] or 0.0,
                                          m["id"]))


# ---- the range searches


def _range_pairs(rows: Vectors, queries: Ids, base: Ids, threshold: float) -> Pairs:
    """(m, 2) pairs (i, j), i < j, of `queries` x `base` row indices closer than `threshold`."""
    if len(queries) == 0 or len(base) == 0:
        return np.empty((0, 2), np.int64)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows[base])
    limits, _, found = index.range_search(rows[queries], 1.0 - threshold)
    first = np.repeat(queries, np.diff(limits.astype(np.int64)))  # (m,) query of each result
    second = base[found]  # (m,)
    keep = first != second
    return np.sort(np.stack([first[keep], second[keep]], axis=1), axis=1)  # (m, 2)


def _nearest_lists(rows: Vectors, lists: int) -> npt.NDArray[np.int64]:
    """(n, PROBES) the nearest k-means lists of each row, nearest first."""
    kmeans = faiss.Kmeans(rows.shape[1], lists, niter=KMEANS_ITERATIONS, seed=KMEANS_SEED,
                          spherical=True, max_points_per_centroid=256)
    kmeans.train(rows)
    _, nearest = kmeans.index.search(rows, PROBES)
    return np.asarray(nearest, np.int64)


def _unique(pairs: Pairs) -> Pairs:
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    return np.unique(pairs, axis=0)


# ---- connected components


def _components(ids: Ids, pairs: Pairs) -> list[list[int]]:
    parent = list(range(len(ids)))  # union-find forest over rows
    for first, second in pairs.tolist():
        root_a, root_b = _root(parent, first), _root(parent, second)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    members: dict[int, list[int]] = {}
    for row in np.unique(pairs).tolist():
        members.setdefault(_root(parent, row), []).append(int(ids[row]))
    return sorted(sorted(group) for group in members.values())


def _root(parent: list[int], row: int) -> int:
    while parent[row] != row:
        parent[row] = parent[parent[row]]  # path halving keeps the trees shallow
        row = parent[row]
    return row


# ---- helpers


def _linked_neighbours(photo_id: int, neighbour_ids: Sequence[int] | Ids,
                       similarities: Sequence[float] | npt.NDArray[np.float32],
                       threshold: float) -> list[int]:
    found = np.asarray(neighbour_ids, np.int64)  # (k,)
    close = np.asarray(similarities, np.float64) > 1.0 - threshold  # (k,)
    return [int(i) for i in found[close & (found >= 0) & (found != photo_id)]]


def _same_moment_one(first: float | None, second: float | None, burst_seconds: float) -> bool:
    """`same_moment` for one pair; None or NaN is an unknown time."""
    if first is None or second is None or math.isnan(first) or math.isnan(second):
        return True
    return abs(first - second) <= burst_seconds


def _check(ids: Ids, vectors: Vectors, taken: Times | None) -> None:
    if vectors.ndim != 2 or ids.shape != (len(vectors),):
        raise ValueError(f"ids {ids.shape} and vectors {vectors.shape} do not match")
    if taken is not None and taken.shape != ids.shape:
        raise ValueError(f"taken {taken.shape} does not match ids {ids.shape}")

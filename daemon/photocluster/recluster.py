"""The full recluster: snapshot the catalog, compute on the snapshot, commit the result.

A recluster is computed on a snapshot (`compute`, no writes, safe on another thread) and
committed by the one writer (`commit`, one catalog transaction). Keeping the cluster tree in
step with the committed result is `placement`'s job.

Memory stays bounded at any library size. The writer's snapshot holds ids, versions and
previous clusters as arrays (24 bytes a photo) and no vectors: those are read by the thread
that computes, through the snapshot's own read transaction (`Store.read_view`), so they are
the catalog as the snapshot saw it. Up to `FIT_LIMIT` photos the elbow and k-means see every
vector, as they always did; above it they run on a seeded sample of `FIT_LIMIT`, and then every
photo goes to its nearest centroid, one chunk of the catalog at a time (as live placement
places a new photo). Names are matched on every photo either way, the user's pins counted
(`steering`). The near-duplicate full pass (`duplicates.full_pass`) sees every vector up to
`FIT_LIMIT`; above it, it runs cluster by cluster (near duplicates are far closer to each
other than to any other cluster's photos), so memory stays at the largest cluster's vectors.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from photocluster import clustering, duplicates, steering
from photocluster.config import ClusteringConfig, DuplicatesConfig
from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.steering import Fate
from photocluster.store import ClusterMap, PinMoves, Store

logger = logging.getLogger(__name__)

# Photos k-means fits on: (100 000, 512) float32 is 200 MB. A larger library is fitted on a
# seeded sample of this size, which still holds thousands of photos for each of at most 100
# clusters; bench/scale.py measures the labels a sample gives against a fit on everything.
FIT_LIMIT = 100_000
_CHUNK = 65_536  # rows per nearest-centroid pass over an in-memory snapshot

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


class CatalogVectors:
    """A snapshot's vectors, still in the catalog: read on the thread that computes, through
    the snapshot's own read-only connection and read transaction, chunk by chunk. `close` ends
    the transaction (WAL cannot checkpoint past it meanwhile)."""

    def __init__(self, view: Store, ids: Ids) -> None:
        self._view, self._ids = view, ids

    def take(self, positions: Ids) -> Vectors:
        """(m, dim) vectors of the contents at those positions of the snapshot's ids."""
        return self._view.vectors_of(self._ids[positions])

    def chunks(self) -> Iterator[tuple[Ids, Vectors]]:
        """(positions (c,), vectors (c, dim)) over every content, in id order."""
        return self._view.vector_chunks(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        self._view.close()


@dataclass(frozen=True)
class Snapshot:
    """What a recluster computes on, taken by the writer, with the settings the writer held at
    that moment (so the computing thread reads no shared configuration)."""

    ids: Ids  # (n,) int64: content ids
    vectors: Vectors | CatalogVectors  # (n, 512) float32, or where to read them
    previous: Mapping[int, str]  # content id -> cluster name before this recluster
    used_names: frozenset[str]
    previous_k: int | None
    settings: ClusteringConfig
    versions: Ids | None = None  # (n,) int64: each content's version when taken
    changes: int = 0  # the catalog's content-change counter when taken
    pins: Mapping[int, str] = field(default_factory=dict)  # content id -> the cluster pinned to
    # near-duplicates: the settings, and (n,) float64 capture times for the burst rule
    duplicates: DuplicatesConfig = DuplicatesConfig()
    taken: npt.NDArray[np.float64] | None = None

    def close(self) -> None:
        """Release what the snapshot reads from (its read transaction); idempotent."""
        if isinstance(self.vectors, CatalogVectors):
            self.vectors.close()


@dataclass(frozen=True)
class Result:
    """Each content's cluster: `names[labels[i]]` for `ids[i]`, computed for `versions[i]`."""

    ids: Ids  # (n,) int64
    labels: Ids  # (n,) int64: index into `names`
    names: tuple[str, ...]  # label -> cluster name
    versions: Ids  # (n,) int64: the version each assignment was computed for
    centroids: dict[str, np.ndarray]  # name -> (512,) float32
    info: ReclusterInfo
    changes: int  # the content-change counter the result reflects
    fates: dict[str, Fate] = field(default_factory=dict)  # each retired name -> where it went
    duplicates: dict[int, int] = field(default_factory=dict)  # content id -> group key

    @cached_property
    def assignment(self) -> dict[int, str]:
        """content id -> cluster name (built on first use: a dry run's report, tests)."""
        return {content: self.names[label] for content, label
                in zip(self.ids.tolist(), self.labels.tolist(), strict=True)}

    def rows(self) -> Iterator[tuple[int, int, str]]:
        """(content id, version, cluster name) for `Store.commit_recluster`."""
        for content, version, label in zip(self.ids.tolist(), self.versions.tolist(),
                                           self.labels.tolist(), strict=True):
            yield content, version, self.names[label]


def snapshot(store: Store, fingerprint: str, settings: ClusteringConfig,
             near: DuplicatesConfig | None = None) -> Snapshot:
    """The writer's part: the members as arrays, read in a read transaction of their own that
    the snapshot keeps for reading the vectors later. Close it (`compute` does). `near`: the
    near-duplicate settings (default: the shipped ones)."""
    near = near or DuplicatesConfig()
    view = store.read_view()
    try:
        members = view.members(fingerprint)
        last = view.last_recluster()
        used = frozenset(view.used_names())
        taken = view.capture_times(members.ids) if near.burst_seconds else None  # (n,)
        pins = view.pins()
    except BaseException:
        view.close()
        raise
    return Snapshot(members.ids, CatalogVectors(view, members.ids), members.clusters, used,
                    last.k if last else None, settings, members.versions, members.changes,
                    pins, near, taken)


def compute(snap: Snapshot) -> Result:
    """Elbow, KMeans++ and stable names over the snapshot. Pure: writes nothing; closes the
    snapshot. Raises ValueError for an empty snapshot."""
    started = time.monotonic()
    settings = snap.settings
    try:
        codes, old_names = _previous_codes(snap)  # (n,) int32, names
        fitted = _fitted_rows(len(snap.ids), settings.seed)  # None: every row
        vectors = _take(snap.vectors, fitted)  # (m, 512) float32
        curve = clustering.choose_k(vectors, settings.k_min, settings.k_max,
                                    settings.sample_size, settings.seed, snap.previous_k)
        sample_codes = codes if fitted is None else codes[fitted]
        start = _centres(vectors, sample_codes, old_names)  # fit brings them to chosen_k
        labels, centroids = clustering.fit(vectors, curve.chosen_k, settings.seed, start)
        if fitted is None:  # every vector is in hand: one near-duplicate pass over them all
            groups = _duplicates(snap, [(np.arange(len(snap.ids)), vectors)])
            del vectors
        else:  # the sample goes first; then a chunk, and a cluster, at a time
            del vectors
            labels = _nearest_all(snap.vectors, centroids, len(snap.ids))
            groups = _duplicates(snap, _by_cluster(snap.vectors, labels))
    finally:
        snap.close()
    return _named(snap, codes, old_names, labels, centroids, curve, started, groups)


def _named(snap: Snapshot, codes: npt.NDArray[np.int32], old_names: list[str], labels: Ids,
           centroids: Vectors, curve: ElbowCurve, started: float,
           groups: dict[int, int]) -> Result:
    """The result of `labels` (n,) (-1: no vector): names matched (pins counted), the change
    counted, the fate of each retired name told."""
    present = labels >= 0  # a content whose vector vanished from the catalog meanwhile: none
    used = sorted({int(label) for label in np.unique(labels[present]).tolist()})
    by_label = steering.name_codes(codes, old_names, labels, _pinned_rows(snap), snap.used_names,
                                   snap.settings.min_overlap)
    names = tuple(by_label[label] for label in used)
    relabel = np.full(len(centroids), -1, np.int64)
    relabel[used] = np.arange(len(used))
    ids, new_labels = snap.ids[present], relabel[labels[present]]
    versions = snap.versions if snap.versions is not None else np.zeros(len(snap.ids), np.int64)
    known = codes[present] >= 0
    old = np.asarray(old_names + [""], dtype=object)[codes[present]]
    changed = int((known & (old != np.asarray(names, dtype=object)[new_labels])).sum())
    info = ReclusterInfo(at=time.time(), photos=len(ids), changed=changed, elbow=curve)
    logger.info("recluster: %d photos, K=%d%s, %d changed folder (%.1f s)", info.photos, info.k,
                "" if curve.knee_found else " (no knee; fallback)", changed,
                time.monotonic() - started)
    centres = {by_label[label]: centroids[label] for label in used}
    moved = Counter({(old, by_label[label]): count for (old, label), count
                     in steering.pair_counts(codes, old_names, labels).items()})
    fates = steering.fates_counted(moved, set(old_names) - set(names))
    return Result(ids, new_labels, names, versions[present], centres, info, snap.changes, fates,
                  groups)


def _pinned_rows(snap: Snapshot) -> dict[int, str]:
    """Snapshot row -> the cluster its content is pinned to (pins are few: a user's edits)."""
    if not snap.pins:
        return {}
    pinned = np.fromiter(snap.pins, np.int64, len(snap.pins))
    rows = np.searchsorted(snap.ids, pinned).clip(0, max(len(snap.ids) - 1, 0))
    return {int(row): snap.pins[int(content)] for row, content in zip(
        rows.tolist(), pinned.tolist(), strict=True) if len(snap.ids) and snap.ids[row] == content}


def _by_cluster(source: Vectors | CatalogVectors,
                labels: Ids) -> Iterator[tuple[Ids, Vectors]]:
    """(rows, their vectors) of each cluster in turn: one cluster's vectors held at a time."""
    for label in np.unique(labels[labels >= 0]).tolist():
        rows = np.flatnonzero(labels == label)
        yield rows, _take(source, rows)


def _duplicates(snap: Snapshot, parts: Iterable[tuple[Ids, Vectors]]) -> dict[int, int]:
    """The near-duplicate full pass over each part (rows of the snapshot, their vectors)."""
    started, found = time.monotonic(), dict[int, int]()
    for rows, vectors in parts:
        taken = None if snap.taken is None else snap.taken[rows]
        found.update(duplicates.full_pass(snap.ids[rows], vectors, taken, snap.duplicates))
    logger.info("near-duplicates: %d photos in %d groups (%.1f s)", len(found),
                len(set(found.values())), time.monotonic() - started)
    return found


def previous_centres(snap: Snapshot) -> np.ndarray | None:
    """(j, 512) float32 mean vector of each of the j previous clusters among the snapshot's
    photos (photos placed live since count), in name order; None when there are none. K-means
    starting from them keeps folders in place when the library only grew a little."""
    codes, names = _previous_codes(snap)
    return _centres(_take(snap.vectors, None), codes, names)


def _centres(vectors: Vectors, codes: npt.NDArray[np.int32],
             names: list[str]) -> np.ndarray | None:
    """Member means of the clusters `codes` (n,) index in `names`, in name order."""
    present = sorted({int(code) for code in np.unique(codes[codes >= 0]).tolist()},
                     key=lambda code: names[code])
    if not present:
        return None
    # one masked pass per cluster: np.add.at over 1M rows takes minutes, this a second
    means = [vectors[codes == code].mean(axis=0, dtype=np.float64) for code in present]
    return np.stack(means).astype(np.float32)  # (j, 512)


def _previous_codes(snap: Snapshot) -> tuple[npt.NDArray[np.int32], list[str]]:
    """Each snapshot row's previous cluster as a code (n,) int32 (-1: none) into names."""
    previous = snap.previous
    if isinstance(previous, ClusterMap) and previous.ids is snap.ids:
        return previous.codes, list(previous.names)  # the writer's snapshot: already so
    names = sorted(set(previous.values()))
    column = {name: code for code, name in enumerate(names)}
    codes = np.fromiter((column[previous[i]] if i in previous else -1
                         for i in snap.ids.tolist()), np.int32, len(snap.ids))
    return codes, names


def _fitted_rows(count: int, seed: int) -> Ids | None:
    """The rows k-means fits on: all (None) up to FIT_LIMIT, else a seeded sorted sample."""
    if count <= FIT_LIMIT:
        return None
    return np.sort(np.random.default_rng(seed).choice(count, size=FIT_LIMIT, replace=False))


def _take(source: Vectors | CatalogVectors, rows: Ids | None) -> Vectors:
    if isinstance(source, CatalogVectors):
        return source.take(rows if rows is not None else np.arange(len(source)))
    return source if rows is None else source[rows]


def _nearest_all(source: Vectors | CatalogVectors, centroids: Vectors, count: int) -> Ids:
    """(n,) int64 nearest centroid of every row, -1 for a row the source no longer has."""
    labels = np.full(count, -1, np.int64)
    if isinstance(source, CatalogVectors):
        chunks: Iterator[tuple[Ids, Vectors]] = source.chunks()
    else:
        chunks = ((np.arange(start, min(start + _CHUNK, count)), source[start: start + _CHUNK])
                  for start in range(0, count, _CHUNK))
    for positions, vectors in chunks:
        labels[positions] = clustering.nearest(vectors, centroids)
    return labels


def commit(result: Result, store: Store) -> PinMoves:
    """Write the result to the catalog in one transaction. Contents it does not name (added
    while it computed) and contents that changed meanwhile (their version moved) become
    unclustered, for the caller to place by nearest centroid; and when the catalog's contents
    changed meanwhile it still counts as changed since this recluster. Pinned photos go to
    their clusters (a pin to a retired cluster follows its heir, `Fate.into`), photos put in a
    cluster they refused become unclustered; returns what happened to such pins. The
    near-duplicate groups follow in a transaction of their own: a crash between the two leaves
    the last groups, which are still valid ones."""
    heirs = {name: fate.into for name, fate in result.fates.items() if fate.into is not None}
    moves = store.commit_recluster(result.rows(), result.centroids, result.info, result.changes,
                                   heirs)
    grouped = np.fromiter(result.duplicates, np.int64, len(result.duplicates))
    versions = result.versions[np.searchsorted(result.ids, grouped)] if len(grouped) else grouped
    store.commit_duplicates(zip(grouped.tolist(), versions.tolist(),
                                (result.duplicates[c] for c in grouped.tolist()), strict=True))
    return moves


def needs_recluster(store: Store, regrow_ratio: float) -> bool:
    """No clusters yet, or the library grew by `regrow_ratio` since the last recluster."""
    last = store.last_recluster()
    if last is None or not store.centroids()[0]:
        return True
    return store.photos_since_recluster() >= max(1, int(regrow_ratio * max(last.photos, 1)))

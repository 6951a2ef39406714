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
places a new photo). Names are matched on every photo either way.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from photocluster import clustering
from photocluster.config import ClusteringConfig
from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.store import ClusterMap, Store

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


def snapshot(store: Store, fingerprint: str, settings: ClusteringConfig) -> Snapshot:
    """The writer's part: the members as arrays, read in a read transaction of their own that
    the snapshot keeps for reading the vectors later. Close it (`compute` does)."""
    view = store.read_view()
    try:
        members = view.members(fingerprint)
        last = view.last_recluster()
        used = frozenset(view.used_names())
    except BaseException:
        view.close()
        raise
    return Snapshot(members.ids, CatalogVectors(view, members.ids), members.clusters, used,
                    last.k if last else None, settings, members.versions, members.changes)


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
        del vectors
        if fitted is not None:
            labels = _nearest_all(snap.vectors, centroids, len(snap.ids))
    finally:
        snap.close()
    return _named(snap, codes, old_names, labels, centroids, curve, started)


def _named(snap: Snapshot, codes: npt.NDArray[np.int32], old_names: list[str], labels: Ids,
           centroids: Vectors, curve: ElbowCurve, started: float) -> Result:
    """The result of `labels` (n,) (-1: no vector): names matched, the change counted."""
    present = labels >= 0  # a content whose vector vanished from the catalog meanwhile: none
    used = sorted({int(label) for label in np.unique(labels[present]).tolist()})
    taken = set(snap.used_names) | set(old_names)
    by_label = clustering.name_labels(_shared(codes, old_names, labels), set(used), taken,
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
    return Result(ids, new_labels, names, versions[present], centres, info, snap.changes)


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


def _shared(codes: npt.NDArray[np.int32], old_names: list[str],
            labels: Ids) -> Counter[tuple[str, int]]:
    """(old name, new label) -> photos in both, counted over arrays."""
    both = (codes >= 0) & (labels >= 0)
    width = int(labels.max(initial=0)) + 1  # one int64 key per (code, label) pair
    found, counts = np.unique(codes[both].astype(np.int64) * width + labels[both],
                              return_counts=True)
    return Counter({(old_names[int(key) // width], int(key) % width): int(count)
                    for key, count in zip(found.tolist(), counts.tolist(), strict=True)})


def commit(result: Result, store: Store) -> None:
    """Write the result to the catalog in one transaction. Contents it does not name (added
    while it computed) and contents that changed meanwhile (their version moved) become
    unclustered, for the caller to place by nearest centroid; and when the catalog's contents
    changed meanwhile it still counts as changed since this recluster."""
    store.commit_recluster(result.rows(), result.centroids, result.info, result.changes)


def needs_recluster(store: Store, regrow_ratio: float) -> bool:
    """No clusters yet, or the library grew by `regrow_ratio` since the last recluster."""
    last = store.last_recluster()
    if last is None or not store.centroids()[0]:
        return True
    return store.photos_since_recluster() >= max(1, int(regrow_ratio * max(last.photos, 1)))

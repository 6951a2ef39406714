"""The full recluster: snapshot the catalog, compute on the snapshot, commit the result.

A recluster is computed on a snapshot (`compute`, no writes, safe on another thread) and
committed by the one writer (`commit`, one catalog transaction). Keeping the cluster tree in
step with the committed result is `placement`'s job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from photocluster import clustering, duplicates, steering
from photocluster.config import ClusteringConfig, DuplicatesConfig
from photocluster.records import ReclusterInfo
from photocluster.steering import Fate
from photocluster.store import PinMoves, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What a recluster computes on, copied out of the store by the writer, with the settings
    the writer held at that moment (so the computing thread reads no shared configuration)."""

    ids: np.ndarray  # (n,) int64: content ids
    vectors: np.ndarray  # (n, 512) float32
    previous: dict[int, str]  # content id -> cluster name before this recluster
    used_names: frozenset[str]
    previous_k: int | None
    settings: ClusteringConfig
    versions: np.ndarray | None = None  # (n,) int64: each content's version when copied
    changes: int = 0  # the catalog's content-change counter when copied
    pins: Mapping[int, str] = field(default_factory=dict)  # content id -> the cluster pinned to
    # near-duplicates: the settings, and (n,) float64 capture times for the burst rule
    duplicates: DuplicatesConfig = DuplicatesConfig()
    taken: np.ndarray | None = None


@dataclass(frozen=True)
class Result:
    assignment: dict[int, str]
    centroids: dict[str, np.ndarray]  # name -> (512,) float32
    info: ReclusterInfo
    versions: dict[int, int]  # content id -> the version the assignment was computed for
    changes: int  # the content-change counter the result reflects
    fates: dict[str, Fate] = field(default_factory=dict)  # each retired name -> where it went
    duplicates: dict[int, int] = field(default_factory=dict)  # content id -> group key


def snapshot(store: Store, fingerprint: str, settings: ClusteringConfig,
             near: DuplicatesConfig | None = None) -> Snapshot:
    """The writer's copy of what a recluster computes on; `near`: the near-duplicate settings
    (default: the shipped ones)."""
    near = near or DuplicatesConfig()
    members = store.members(fingerprint)
    vectors = store.vectors_of(members.ids)  # (n, 512) float32
    last = store.last_recluster()
    used = frozenset(store.used_names())
    taken = store.capture_times(members.ids) if near.burst_seconds else None  # (n,) float64
    return Snapshot(members.ids, vectors, members.clusters, used, last.k if last else None,
                    settings, members.versions, members.changes, store.pins(), near, taken)


def compute(snap: Snapshot) -> Result:
    """Elbow, KMeans++ and stable names over the snapshot. Pure: writes nothing."""
    started = time.monotonic()
    settings = snap.settings
    curve = clustering.choose_k(
        snap.vectors,
        settings.k_min,
        settings.k_max,
        settings.sample_size,
        settings.seed,
        snap.previous_k,
    )
    start = previous_centres(snap)  # fit brings them to chosen_k clusters if K changed
    labels, centroids = clustering.fit(snap.vectors, curve.chosen_k, settings.seed, start)
    by_id = {int(i): int(label) for i, label in zip(snap.ids, labels, strict=True)}
    names = steering.name_labels(snap.previous, by_id, snap.pins, snap.used_names,
                                 settings.min_overlap)
    assignment = {i: names[label] for i, label in by_id.items()}
    retired = set(snap.previous.values()) - set(names.values())
    changed = sum(1 for i, name in assignment.items() if snap.previous.get(i) not in (None, name))
    info = ReclusterInfo(at=time.time(), photos=len(assignment), changed=changed, elbow=curve)
    logger.info(
        "recluster: %d photos, K=%d%s, %d changed folder (%.1f s)",
        info.photos,
        info.k,
        "" if curve.knee_found else " (no knee; fallback)",
        changed,
        time.monotonic() - started,
    )
    versions = snap.versions if snap.versions is not None else np.zeros(len(snap.ids), np.int64)
    seen = {int(i): int(v) for i, v in zip(snap.ids, versions, strict=True)}
    centres = {names[i]: centroids[i] for i in range(len(centroids))}
    fates = steering.fates(snap.previous, assignment, retired)
    return Result(assignment, centres, info, seen, snap.changes, fates, _duplicates(snap))


def _duplicates(snap: Snapshot) -> dict[int, int]:
    """The near-duplicate full pass over the snapshot (`duplicates.full_pass`)."""
    started = time.monotonic()
    found = duplicates.full_pass(snap.ids, snap.vectors, snap.taken, snap.duplicates)
    logger.info("near-duplicates: %d photos in %d groups (%.1f s)", len(found),
                len(set(found.values())), time.monotonic() - started)
    return found


def previous_centres(snap: Snapshot) -> np.ndarray | None:
    """(j, 512) float32 mean vector of each of the j previous clusters among the snapshot's
    photos (photos placed live since count), in name order; None when there are none. K-means
    starting from them keeps folders in place when the library only grew a little."""
    names = [snap.previous.get(int(photo), "") for photo in snap.ids]  # "": no cluster yet
    known = sorted(set(names) - {""})
    if not known:
        return None
    column = {name: index for index, name in enumerate(known)}
    rows = np.array([column.get(name, -1) for name in names])  # (n,) int
    # one masked pass per cluster: np.add.at over 1M rows takes minutes, this a second
    means = [snap.vectors[rows == index].mean(axis=0, dtype=np.float64)
             for index in range(len(known))]
    return np.stack(means).astype(np.float32)  # (j, 512)


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
    moves = store.commit_recluster(result.assignment, result.versions, result.centroids,
                                   result.info, result.changes, heirs)
    store.commit_duplicates((content, result.versions[content], key)
                            for content, key in result.duplicates.items())
    return moves


def needs_recluster(store: Store, regrow_ratio: float) -> bool:
    """No clusters yet, or the library grew by `regrow_ratio` since the last recluster."""
    last = store.last_recluster()
    if last is None or not store.centroids()[0]:
        return True
    return store.photos_since_recluster() >= max(1, int(regrow_ratio * max(last.photos, 1)))

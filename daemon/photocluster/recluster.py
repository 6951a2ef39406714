"""Cluster assignment: the full recluster and the live nearest-centroid placement.

A recluster is computed on a snapshot (`compute`, no writes, safe on another thread) and
applied by the one writer (`apply`): catalog first, in one transaction, then a new cluster
tree built beside the live one and swapped in. If the process dies between the two, the next
start finds the tree disagreeing with the catalog and rebuilds it (`repair_tree`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from photocluster import clustering, organizer
from photocluster.config import ClusteringConfig
from photocluster.organizer import ClusterTree, LinkPlan
from photocluster.store import ReclusterInfo, Store

logger = logging.getLogger(__name__)

Thumbnail = Callable[[str], "np.ndarray | None"]


@dataclass(frozen=True)
class Snapshot:
    """What a recluster computes on, copied out of the store by the writer."""

    ids: np.ndarray  # (n,) int64
    vectors: np.ndarray  # (n, 512) float32
    previous: dict[int, str]  # photo id -> cluster name before this recluster
    used_names: frozenset[str]
    previous_k: int | None


@dataclass(frozen=True)
class Result:
    assignment: dict[int, str]
    centroids: dict[str, np.ndarray]  # name -> (512,) float32
    info: ReclusterInfo


def snapshot(store: Store, fingerprint: str) -> Snapshot:
    ids, vectors = store.vectors(fingerprint)
    previous = {r.id: r.cluster for r in store.photos() if r.cluster is not None}
    last = store.last_recluster()
    return Snapshot(ids, vectors, previous, frozenset(store.used_names()), last.k if last else None)


def compute(snap: Snapshot, settings: ClusteringConfig) -> Result:
    """Elbow, KMeans++ and stable names over the snapshot. Pure: writes nothing."""
    started = time.monotonic()
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
    names = clustering.match_names(snap.previous, by_id, snap.used_names, settings.min_overlap)
    assignment = {i: names[label] for i, label in by_id.items()}
    changed = sum(1 for i, name in assignment.items() if snap.previous.get(i) not in (None, name))
    info = ReclusterInfo(
        at=time.time(),
        k=curve.chosen_k,
        photos=len(assignment),
        changed=changed,
        ks=curve.ks,
        inertias=curve.inertias,
        knee_found=curve.knee_found,
    )
    logger.info(
        "recluster: %d photos, K=%d%s, %d changed folder (%.1f s)",
        info.photos,
        info.k,
        "" if curve.knee_found else " (no knee; fallback)",
        changed,
        time.monotonic() - started,
    )
    return Result(assignment, {names[i]: centroids[i] for i in range(len(centroids))}, info)


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


def apply(
    result: Result, store: Store, tree: ClusterTree, fingerprint: str, thumbnail: Thumbnail | None
) -> None:
    """Commit the result, place photos that arrived meanwhile, then swap in a new tree."""
    store.commit_recluster(result.assignment, result.centroids, result.info)
    assign_unclustered(store, fingerprint)
    info = result.info
    rebuild_tree(store, tree, thumbnail, (info.ks, info.inertias, info.k))


def describe(result: Result, store: Store, tree: ClusterTree) -> list[str]:
    """What `apply` would change, for `recluster --dry-run`."""
    paths = {r.id: r.path for r in store.photos()}
    members: dict[str, list[str]] = defaultdict(list)
    for photo_id, name in result.assignment.items():
        members[name].append(paths[photo_id])
    return organizer.describe_changes(tree.read_plan(), organizer.plan_tree(members))


def assign_unclustered(store: Store, fingerprint: str) -> dict[int, str]:
    """Nearest-centroid placement for photos with a vector and no (active) cluster."""
    names, centroids = store.centroids()
    pending = store.unclustered(fingerprint)
    if not names or not pending:
        return {}
    ids, vectors = store.vectors(fingerprint)
    mask = np.isin(ids, np.asarray(pending, dtype=np.int64))
    nearest = clustering.nearest(vectors[mask], centroids)  # (m,) int64
    assignment = {int(i): names[int(j)] for i, j in zip(ids[mask], nearest, strict=True)}
    store.assign(assignment)
    return assignment


def desired_plan(store: Store) -> LinkPlan:
    """The tree the catalog asks for."""
    members: dict[str, list[str]] = defaultdict(list)
    for record in store.photos():
        if record.cluster is not None and record.error is None:
            members[record.cluster].append(record.path)
    return organizer.plan_tree(members)


def rebuild_tree(
    store: Store,
    tree: ClusterTree,
    thumbnail: Thumbnail | None,
    elbow: tuple[tuple[int, ...], tuple[float, ...], int] | None,
) -> None:
    plan = desired_plan(store)
    generation = tree.build(plan)
    if thumbnail is not None:
        organizer.write_overview(generation, plan, thumbnail, elbow)
    tree.swap(generation)


def repair_tree(store: Store, tree: ClusterTree, thumbnail: Thumbnail | None) -> bool:
    """Rebuild the tree when it disagrees with the catalog (after a crash). True if rebuilt."""
    tree.remove_leftovers()
    if tree.live() is not None and _members(tree.read_plan()) == _members(desired_plan(store)):
        return False
    if not store.centroids()[0]:
        return False
    logger.info("cluster tree disagrees with the catalog; rebuilding it")
    last = store.last_recluster()
    elbow = (last.ks, last.inertias, last.k) if last else None
    rebuild_tree(store, tree, thumbnail, elbow)
    return True


def _members(plan: LinkPlan) -> dict[str, set[str]]:
    """Who is in which cluster; link names and empty folders don't matter for a repair."""
    return {cluster: set(links.values()) for cluster, links in plan.items() if links}


def needs_recluster(store: Store, regrow_ratio: float) -> bool:
    """No clusters yet, or the library grew by `regrow_ratio` since the last recluster."""
    last = store.last_recluster()
    if last is None or not store.centroids()[0]:
        return True
    return store.photos_since_recluster() >= max(1, int(regrow_ratio * max(last.photos, 1)))


def members_by_cluster(store: Store) -> Mapping[str, int]:
    sizes: dict[str, int] = defaultdict(int)
    for record in store.photos():
        if record.cluster is not None:
            sizes[record.cluster] += 1
    return dict(sorted(sizes.items()))

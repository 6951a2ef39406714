"""Placement: photos into clusters, and the cluster tree kept in step with the catalog.

Between reclusters a new photo goes to the nearest centroid and is linked at once (`place`,
given the rows in hand: O(batch)). After a recluster the tree is rebuilt from the catalog as a
new generation and swapped in (`rebuild_tree`). After a crash, rows stored but never placed are
placed (`place_unclustered`, reading only those rows), and a tree that disagrees with the
catalog is rebuilt (`repair_tree`).

A cluster's folder is called by its label when a user named it (`Store.folder_names`); the
catalog speaks of clusters by identity, the tree of folders, and this module translates. Pins
and "not this cluster" marks steer placement (`steering.choose`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from photocluster import duplicates, pages, steering
from photocluster.progress import Pulse, Stopping, no_pulse
from photocluster.records import ElbowCurve
from photocluster.store import Relink, Store, StoredVector, Written
from photocluster.tree import ClusterTree, LinkPlan, describe_changes, plan_tree
from photocluster.tree.overview import write_overview

logger = logging.getLogger(__name__)

Thumbnail = Callable[[str], "np.ndarray | None"]
ThumbnailFile = pages.ThumbnailFile


def place(rows: Sequence[StoredVector], store: Store, tree: ClusterTree | None) -> dict[int, str]:
    """Assign each row that has no cluster yet to its pinned cluster or its nearest centroid
    not refused, record it, and link its photo (`tree` None: a new tree is built from the
    catalog next); no-op before the first recluster. Returns photo id -> cluster name."""
    names, centroids = store.centroids()
    if not names or not rows:
        return {}
    pending = store.without_cluster([row.id for row in rows])  # a re-stored row may keep one
    rows = [row for row in rows if row.id in pending]
    if not rows:
        return {}
    vectors = np.stack([row.vector for row in rows])  # (m, 512) float32
    ids = [row.id for row in rows]
    assignment = steering.choose(vectors, ids, names, centroids, *store.steering(ids))
    store.assign(assignment)
    if tree is None:
        return assignment
    labels = store.labels()
    for row in rows:
        folder = labels.get(assignment[row.id], assignment[row.id])
        tree.add_link(folder, row.path, row.taken)
        for companion in store.companions_of(row.path):
            tree.add_link(folder, companion, row.taken)
    return assignment


def follow(written: Written, store: Store, tree: ClusterTree) -> dict[int, str]:
    """Make the live tree follow a catalog write: move the links whose content's canonical
    copy changed (or remove them: the content went), then place what needs a cluster.
    Returns what was placed, photo id -> cluster name."""
    labels = store.labels() if written.relinks else {}
    for relink in written.relinks:
        _relink(relink, tree, labels)
    return place(written.placeable, store, tree)


def _relink(relink: Relink, tree: ClusterTree, labels: dict[str, str]) -> None:
    if relink.cluster is None:
        return
    folder = labels.get(relink.cluster, relink.cluster)
    if relink.old is not None:
        tree.remove_link(folder, relink.old, relink.taken)
    if relink.new is not None:
        tree.add_link(folder, relink.new, relink.taken)


def place_unclustered(store: Store, tree: ClusterTree, fingerprint: str) -> dict[int, str]:
    """Place the rows that have a vector but no cluster: stored just before a crash or a
    failed write, or left out of a recluster that ran while they arrived."""
    return place(store.stored_vectors(store.unclustered(fingerprint)), store, tree)


def desired_plan(store: Store, tree: ClusterTree) -> LinkPlan:
    """The tree the catalog asks for: each content's canonical copy, and the companion videos
    beside it, named as the tree names links."""
    members: dict[str, list[str]] = defaultdict(list)
    names: dict[str, str] = {}
    labels = store.labels()
    for cluster, path, taken in store.plan_members():
        members[labels.get(cluster, cluster)].append(path)
        names[path] = tree.link_name(path, taken)
    return plan_tree(members, names)


def rebuild_tree(
    store: Store,
    tree: ClusterTree,
    thumbnail: Thumbnail | None,
    elbow: ElbowCurve | None,
    pulse: Pulse = no_pulse,
    thumbnail_file: ThumbnailFile | None = None,
) -> None:
    """Build the catalog's tree as a new generation (with its `_duplicates/` folders and its
    overview: contact sheets, and the pages when given `thumbnail_file`, content hash -> the
    stored thumbnail) and swap it in.

    `pulse` is called after each cluster's links, as the pages are written and after each
    contact sheet. When it raises Stopping during the links, nothing is swapped (the tree stays
    behind the catalog until the next start repairs it); during the pages or the contact
    sheets, the complete links are swapped in without the pages and sheets still to write (the
    index page is written last), then Stopping is raised on: the tree agrees with the catalog."""
    plan = desired_plan(store, tree)
    generation = tree.build(plan, pulse)
    duplicates.write_all(generation, store, tree)
    pulse()
    try:
        if thumbnail_file is not None:
            pages.write(generation, plan, store, thumbnail_file, pulse)
            pulse()
        if thumbnail is not None:
            write_overview(generation, plan, thumbnail, elbow, pulse)
    except Stopping:
        tree.swap(generation)
        raise
    tree.swap(generation)


def repair_tree(
    store: Store, tree: ClusterTree, thumbnail: Thumbnail | None, pulse: Pulse = no_pulse,
    thumbnail_file: ThumbnailFile | None = None,
) -> bool:
    """Rebuild the tree when it disagrees with the catalog (after a crash). True if rebuilt.

    `pulse` and `thumbnail_file` as for `rebuild_tree`."""
    tree.remove_leftovers()
    plan = desired_plan(store, tree)
    if tree.live() is not None and _members(tree.read_plan()) == _members(plan):
        return False
    if not store.centroids()[0]:
        return False
    logger.info("cluster tree disagrees with the catalog; rebuilding it")
    last = store.last_recluster()
    rebuild_tree(store, tree, thumbnail, last.elbow if last else None, pulse, thumbnail_file)
    return True


def describe(assignment: dict[int, str], store: Store, tree: ClusterTree) -> list[str]:
    """What committing `assignment` would change in the tree, for `recluster --dry-run`."""
    paths = store.paths_of(assignment)
    labels = store.labels()
    members: dict[str, list[str]] = defaultdict(list)
    for photo_id, name in assignment.items():
        members[labels.get(name, name)].append(paths[photo_id])
    return describe_changes(tree.read_plan(), plan_tree(members))


def _members(plan: LinkPlan) -> dict[str, set[str]]:
    """Who is in which cluster; link names and empty folders don't matter for a repair."""
    return {cluster: set(links.values()) for cluster, links in plan.items() if links}

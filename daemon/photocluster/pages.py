"""The overview pages of a generation, from the catalog: `tree.page`'s model filled and written.

Each generation gets `_overview/index.html` (and a page per cluster and one of near-duplicates)
before it is swapped in, as it gets its links: the pages show the generation they sit in, and
a photo placed live later shows up in the next one. Members are named as the generation's link
plan names them; representatives are the members nearest their cluster's centroid, found by
one search of the index for every centroid.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from photocluster import duplicates
from photocluster.progress import Pulse, no_pulse
from photocluster.store import Shown, Store
from photocluster.tree import OVERVIEW, LinkPlan
from photocluster.tree.page import (
    PULSE_EVERY,
    ClusterModel,
    Copy,
    Member,
    PageModel,
    ThumbnailFile,
    Totals,
    write_pages,
)

logger = logging.getLogger(__name__)

__all__ = ["REPRESENTATIVES", "ThumbnailFile", "page_model", "write"]

REPRESENTATIVES = 6  # a tile's mosaic shows at most six (tree/page_html.py)
# Nearest photos looked at per centroid: a cluster's own members are nearly all of its
# centroid's nearest, so a few dozen always hold six of them
_SEARCHED = 64


def write(generation: Path, plan: LinkPlan, store: Store, thumbnail_file: ThumbnailFile,
          pulse: Pulse = no_pulse) -> None:
    """Write the pages of `generation` (built from `plan`) into its `_overview/`, calling
    `pulse` as it goes (42 s at 1M photos; what it raises ends the writing).
    Raises OSError as `tree.page.write_pages` does."""
    started = time.monotonic()
    write_pages(generation / OVERVIEW, page_model(store, plan, pulse), thumbnail_file, pulse)
    logger.debug("overview pages built in %.1f s", time.monotonic() - started)


def page_model(store: Store, plan: LinkPlan, pulse: Pulse = no_pulse) -> PageModel:
    """The pages' model: each cluster of `plan` with its members under their link names, its
    representatives and taken times; the near-duplicate groups, best first; the totals."""
    names = {(cluster, photo): name for cluster, links in plan.items()
             for name, photo in links.items()}
    folders = store.labels()  # a cluster a user named is planned under its folder's name
    members: dict[str, list[Member]] = defaultdict(list)
    ids: dict[str, set[int]] = defaultdict(set)
    hashes: dict[int, str] = {}
    for count, row in enumerate(store.shown_clustered(), 1):
        if count % PULSE_EVERY == 0:
            pulse()
        folder = folders.get(row.cluster or "", row.cluster or "")
        name = names.get((folder, row.path))
        if row.cluster is None or name is None:  # not in this generation's plan
            continue
        members[folder].append(_member(name, row))
        ids[folder].add(row.id)
        hashes[row.id] = row.content_hash
    chosen = _representatives(store, ids, hashes, folders)
    clusters = tuple(ClusterModel(folder, chosen.get(folder) or _first(found), tuple(found))
                     for folder, found in sorted(members.items()))
    counts = store.content_counts()
    return PageModel(clusters, _groups(store, names, folders), store.last_recluster(), time.time(),
                     Totals(counts["contents"], counts["failed"], counts["unclustered"]))


def _member(name: str, row: Shown) -> Member:
    return Member(name, row.content_hash, None if row.taken is None else row.taken.at)


def _first(found: Iterable[Member]) -> tuple[str, ...]:
    return tuple(member.content for member in found)[:REPRESENTATIVES]


def _representatives(store: Store, ids: dict[str, set[int]], hashes: dict[int, str],
                     folders: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """cluster -> content hashes of up to REPRESENTATIVES of its members, nearest its centroid
    first: one index search for every centroid."""
    names, centroids = store.centroids()  # (k, dim)
    if not names:
        return {}
    _, found = store.search(centroids, _SEARCHED)  # (k, _SEARCHED)
    chosen = {}
    for name, nearest in zip(names, found.tolist(), strict=True):
        folder = folders.get(name, name)
        own = [hashes[i] for i in nearest if i in ids.get(folder, ())]
        chosen[folder] = tuple(own[:REPRESENTATIVES])
    return chosen


def _groups(store: Store, names: dict[tuple[str, str], str],
            folders: dict[str, str]) -> tuple[tuple[Copy, ...], ...]:
    """Each group of near-duplicates, best first, as the copies the generation links (members
    placed in no cluster are left out; a group left with one is not shown)."""
    shown = []
    for members in store.duplicate_groups().values():
        homes = [(row, folders.get(row.cluster or "", row.cluster or ""))
                 for row in duplicates.best_first(members)]
        copies = tuple(Copy(folder, names[(folder, row.path)], row.content_hash)
                       for row, folder in homes
                       if row.cluster is not None and (folder, row.path) in names)
        if len(copies) >= 2:
            shown.append(copies)
    return tuple(shown)

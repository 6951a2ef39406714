"""Near-duplicate groups in the daemon: the full pass with each recluster, the join of each
photo as it is placed, and the `_duplicates/` folders of the cluster tree.

The grouping itself is `neardup`'s (pure); this module is the glue. A recluster's thread runs
the full pass on its snapshot (`full_pass`) and the worker commits it with the result. Between
reclusters a placed photo joins, merges or forms groups from a search of the index for its
NEIGHBOURS nearest photos (`join_placed`: one search per placed batch), and the folders of the
groups it touched are rewritten in the live generation (`refresh`). A new generation gets
every group's folder (`write_all`) before it is swapped in.

`_duplicates/<best photo's name> ~<key>/` holds a link to every live member, best first
(`neardup.best_first`: most pixels, then the oldest), named "01 <link name>", "02 ...". The
key in the folder's name is the group's identity: the folder of a group is found by it when
the group changes, whatever its best photo is called now. A member that goes leaves its group
(the folder is rewritten, or removed under two members); a group it held together stays one
until the next full pass splits it. Nothing in the photo folder is ever written, moved or
deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from photocluster import neardup
from photocluster.config import DuplicatesConfig
from photocluster.store import Relink, Shown, Store, StoredVector, Written
from photocluster.tree import ClusterTree, ranked

logger = logging.getLogger(__name__)

# Photos a placed one is compared with: with k = 10 every join agreed with a join against every
# photo within the threshold (BENCHMARKS.md, near-duplicates); +1 for the photo itself.
NEIGHBOURS = 10
_KEY_TAG = " ~"  # "<name> ~<key>": the group's key ends its folder's name


def full_pass(ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32],
              taken: npt.NDArray[np.float64] | None,
              settings: DuplicatesConfig) -> dict[int, int]:
    """content id -> group key for every content in a group of the (n,) `ids` with their
    (n, dim) `vectors`; `taken` (n,) capture times (NaN: unknown) for the burst rule. Empty
    when duplicates are off (threshold 0). Pure: safe on the recluster thread."""
    if not settings.threshold or len(ids) < 2:
        return {}
    burst = settings.burst_seconds or None
    found = neardup.groups(ids, vectors, settings.threshold, taken if burst else None, burst)
    return {member: group[0] for group in found for member in group}


class GroupFolders:
    """Which folders of the live generation's `_duplicates/` hold which group: listed once per
    generation, then kept up to date by the one writer as it rewrites them, so a new photo
    costs no listing of thousands of folders. It lives as long as the open library."""

    def __init__(self) -> None:
        self._generation: Path | None = None
        self._names: dict[int, set[str]] = {}

    def of(self, generation: Path) -> dict[int, set[str]]:
        """group key -> its folder names in `generation`'s `_duplicates/` (to be updated by
        the caller as it writes and removes them)."""
        if generation != self._generation:
            self._names = _folders_by_key(generation / ranked.DUPLICATES)
            self._generation = generation
        return self._names


def follow(written: Written, placed: Mapping[int, str], store: Store, tree: ClusterTree,
           settings: DuplicatesConfig, folders: GroupFolders) -> None:
    """After `placement.follow`: the contents just placed (`placed`, of `written.placeable`)
    join their groups, and the folders of every group touched, or whose member's canonical
    copy moved or went (`written.relinks`), are rewritten in the live generation."""
    rows = [row for row in written.placeable if row.id in placed]
    keys = join_placed(rows, store, settings) | relinked(written.relinks, store)
    refresh(keys, store, tree, folders)


def join_placed(rows: Sequence[StoredVector], store: Store,
                settings: DuplicatesConfig) -> set[int]:
    """Each of `rows` (contents with their vectors, already in the index) joins, merges or
    forms groups (`neardup.join`); the catalog is updated in one transaction. Returns the keys
    of every group that changed or went (absorbed into another)."""
    if not settings.threshold or not rows:
        return set()
    ids = [row.id for row in rows]
    scores, found = store.search(np.stack([row.vector for row in rows]), NEIGHBOURS + 1)  # (m, k)
    batch = set(ids)
    neighbours = set(found[found >= 0].tolist()) - batch
    # the batch's own keys are stale (a photo back, or re-embedded): each starts alone
    group_of = store.duplicate_keys(neighbours)
    stale = set(store.duplicate_keys(batch).values())
    times = _capture_times(store, batch | neighbours, settings)
    assign: dict[int, int | None] = {}
    renames: dict[int, int] = {}
    for photo, neighbour_ids, similarities in zip(ids, found, scores, strict=True):
        joined = neardup.join(
            photo, neighbour_ids, similarities, group_of, settings.threshold,
            times.get(photo), [times.get(int(i)) for i in neighbour_ids],
            settings.burst_seconds or None)
        _apply(photo, joined, group_of, assign, renames)
    final = {old: _latest(renames, old) for old in renames}
    assign = {photo: None if key is None else _latest(renames, key)
              for photo, key in assign.items()}
    store.regroup(assign, final)
    return stale | set(final) | {key for key in assign.values() if key is not None}


def relinked(relinks: Iterable[Relink], store: Store) -> set[int]:
    """The keys of the groups whose member's link moved or went."""
    contents = {relink.content for relink in relinks if relink.content is not None}
    return set(store.duplicate_keys(contents).values()) if contents else set()


def refresh(keys: Iterable[int], store: Store, tree: ClusterTree, folders: GroupFolders) -> None:
    """Rewrite the folder of each group in `keys` in the live generation: written when it has
    two or more live members, removed otherwise, a folder under its old name removed."""
    wanted = set(keys)
    generation = None if not wanted else tree.live()
    if generation is None:
        return
    parent = generation / ranked.DUPLICATES
    members = store.duplicate_groups(wanted)
    existing = folders.of(generation)
    for key in sorted(wanted):
        kept: set[str] = set()
        if key in members:
            name, links = folder_of(key, members[key], tree, generation)
            ranked.write_folder(parent, name, links)
            kept.add(name)
        for old in sorted(existing.get(key, set()) - kept):
            ranked.remove_folder(parent, old)
        existing[key] = kept
    logger.debug("rewrote %d near-duplicate folders", len(wanted))


def write_all(generation: Path, store: Store, tree: ClusterTree) -> int:
    """Write the folder of every group of two or more live photos into `generation` (a new one,
    not yet live); returns how many."""
    found = store.duplicate_groups()
    for key, members in found.items():
        ranked.write_folder(generation / ranked.DUPLICATES,
                            *folder_of(key, members, tree, generation))
    return len(found)


def best_first(members: Sequence[Shown]) -> list[Shown]:
    """A group's members, the one to keep first (`neardup.best_first`)."""
    by_id = {member.id: member for member in members}
    order = neardup.best_first(neardup.Member(
        id=member.id, pixels=member.pixels,
        taken=None if member.taken is None else member.taken.at) for member in members)
    return [by_id[member["id"]] for member in order]


def folder_of(key: int, members: Sequence[Shown], tree: ClusterTree,
              generation: Path) -> tuple[str, list[tuple[str, str]]]:
    """The folder name of group `key` and its (link name, target) pairs, best first."""
    ordered = best_first(members)
    names = [tree.link_name(member.path, member.taken) for member in ordered]
    targets = [tree.link_target(generation, member.path, ranked.DEPTH) for member in ordered]
    links = list(zip(ranked.ranked_names(names), targets, strict=True))
    return ranked.folder_name(names[0], f"{_KEY_TAG}{key}"), links


def _apply(photo: int, joined: neardup.Joined, group_of: dict[int, int],
           assign: dict[int, int | None], renames: dict[int, int]) -> None:
    """Record one join: its photos go to its key, the groups it absorbed are renamed to it."""
    if joined.key is None:
        assign.setdefault(photo, None)  # alone, unless an earlier join in the batch took it
        return
    absorbed = set(joined.absorbed) - {joined.key}
    for old in absorbed:
        renames[old] = joined.key
    for member, key in group_of.items():
        if key in absorbed:
            group_of[member] = joined.key
    for member in joined.photos:
        group_of[member] = joined.key
        assign[member] = joined.key


def _latest(renames: Mapping[int, int], key: int) -> int:
    """Where a key ended after a batch's renames (keys only ever get smaller: no cycle)."""
    while key in renames:
        key = renames[key]
    return key


def _capture_times(store: Store, ids: set[int],
                   settings: DuplicatesConfig) -> dict[int, float | None]:
    if not settings.burst_seconds:
        return {}
    ordered = np.fromiter(sorted(ids), np.int64, len(ids))
    times = store.capture_times(ordered)  # (n,) NaN: unknown
    return {int(i): None if np.isnan(t) else float(t) for i, t in zip(ordered, times, strict=True)}


def _folders_by_key(parent: Path) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for name in ranked.folders(parent):
        _, tag, key = name.rpartition(_KEY_TAG)
        if tag and key.isdigit():
            found.setdefault(int(key), set()).add(name)
    return found

"""The tree -> catalog direction: what a user does to the cluster folders becomes catalog state.

- A cluster folder renamed (`cluster-007` -> `Beach`) names the cluster: its label.
- A photo's link moved into another cluster's folder pins the photo there.
- A photo's link deleted from a cluster folder marks it "not this cluster": it is placed by its
  next-nearest centroid.
- A cluster folder deleted retires the cluster: its photos go to their nearest other clusters.
- Anything else a user puts into the tree is left alone, reported, and carried into each next
  generation (`tree.foreign`); the originals are never touched.

`TreeReader` reads and compares (`tree.edits`); `recording` writes what it found. When:
`TreeReader.open` at start (what changed while nothing ran), `tend` every second or so between
the worker's steps (the folders whose mtime moved, and one folder of the sweep),
`before_linking` before live links are made (a renamed folder is noticed first),
`check(full=True)` before a recluster commits, and `rebuilding` around every swap: the old
generation is read once more right after the swap, so an edit made while the new one was
being built is applied to the catalog and to the new tree instead of being lost with the old.

The comparison with the catalog is exact only while the tree is in step with it but for the
user's edits (`trusted`): the one writer checks between its own changes, and a clean stop
records the live generation in the catalog (`TRUSTED`). After a crash or a failed write the
tree may lag the catalog (a link not made yet would look deleted, a recluster not swapped in
yet would look like a thousand moves), so only renamed folders are read; the repair that
follows rebuilds the tree from the catalog.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from photocluster import recording
from photocluster.progress import Pulse, no_pulse
from photocluster.steering import Fate
from photocluster.store import PinMoves, Store
from photocluster.tree import ClusterTree, LinkPlan
from photocluster.tree import foreign as foreign_entries
from photocluster.tree.edits import Entry, Folder, Stamp, diff, stamp_of, top_level

logger = logging.getLogger(__name__)

TRUSTED = "tree.trusted"  # meta: the live generation a clean stop left in step with the catalog
CARRIED = "tree.carried"  # meta: the last old generation whose foreign entries were carried on
CHECK_SECONDS = 1.0  # a changed folder is noticed this soon (one lstat per folder when idle)
# The sweep reads every folder, whatever its mtime says, one folder a check: a round takes
# SWEEP_SECONDS, or longer where reading a folder takes long, so that the sweep keeps to
# SWEEP_SHARE of the worker's time. (Reading all at once took 17 s of a worker at 1M photos,
# and new photos waited meanwhile.)
SWEEP_SECONDS = 600.0
SWEEP_SHARE = 0.01
# A folder changed this recently is read again at the next check: file systems stamp mtimes
# from a coarse clock, so a change in the same tick as our look leaves the mtime as we saw it.
RACY_SECONDS = 2.0


class TreeReader:
    """Reads the user's edits of the live cluster tree into the catalog. One per open library,
    used by its one writer between its own changes to the tree."""

    def __init__(
        self, store: Store, tree: ClusterTree, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store, self.tree, self._clock = store, tree, clock
        self.trusted = False  # the tree is in step with the catalog but for the user's edits
        self._generation: str | None = None  # the generation the stamps below are of
        self._top: Stamp | None = None
        self._stamps: dict[str, Stamp] = {}
        self._foreign: dict[str, tuple[str, ...]] = {}  # what else each folder held when read
        self._reported: set[str] = set()
        self._next_check = self._next_sweep = 0.0
        self._round: list[str] = []  # the sweep's folders still to read, last first
        self._round_size = 0

    # ---- when to look

    def open(self, between: Pulse = no_pulse) -> None:
        """Read what the user changed while nothing watched: every edit when the last run
        stopped cleanly with the tree in step, else only renamed folders. The caller mends
        the tree next (`placement.repair_tree`) and then sets `trusted`. `between` runs
        between two folders (a pulse; Stopping from it leaves the marker for the next start)."""
        generation = self.tree.live()
        marker = self.store.meta(TRUSTED)
        self.check(full=True, exact=generation is not None and marker == generation.name,
                   between=between)
        if marker:
            self.store.set_meta(TRUSTED, "")  # until this run stops cleanly

    def listing(self) -> dict[str, Entry]:
        """The top level of the live generation now (empty without one), for `in_step`."""
        generation = self.tree.live()
        return {} if generation is None else top_level(generation)

    def in_step(self, before: Mapping[str, Entry]) -> None:
        """The whole live generation was just compared with the catalog and found in step
        (`placement.repair_tree`); `before` is its `listing` from before that comparison. The
        folders whose stamp did not move meanwhile (and had settled: see RACY_SECONDS) are taken
        as they are, unread: after a start that was not trusted, the first check read every
        folder again (17 s at 1M photos, which a stop had to wait for)."""
        generation = self.tree.live()
        if generation is None or generation.name != self._generation:
            return
        settled = _settled_ns()
        self._adopt({name: entry.stamp for name, entry in top_level(generation).items()
                     if entry.is_dir and name in before and before[name].stamp == entry.stamp
                     and entry.stamp[1] < settled})

    def close(self) -> None:
        """At a clean exit, with the tree in step: say so in the catalog for the next start."""
        generation = self.tree.live() if self.trusted else None
        if generation is not None:
            self.store.set_meta(TRUSTED, generation.name)

    def tend(self) -> None:
        """The periodic check: changed folders every CHECK_SECONDS, with the sweep's next
        folder when it is due."""
        now = self._clock()
        if now < self._next_check:
            return
        sweep = now >= self._next_sweep
        self.check(full=False, sweep=sweep)
        self._next_check = now + CHECK_SECONDS
        if sweep:
            spent = self._clock() - now
            pace = SWEEP_SECONDS / max(self._round_size, 1)
            self._next_sweep = now + max(pace, spent / SWEEP_SHARE)

    def before_linking(self) -> None:
        """Before live links are made: notice a renamed folder first, so a photo goes into
        `Beach/`, not into a new `cluster-007/` beside it. One lstat when the top of the tree
        did not change."""
        generation = self.tree.live()
        if generation is None:
            return
        if generation.name != self._generation or stamp_of(generation) != self._top:
            self.check(full=False, exact=False)  # the catalog may be a write ahead of the tree

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around this writer's own changes to folders of the live tree (links made, moved or
        removed as the catalog says): a folder that was as last read before them is as the
        catalog says after them, so its new stamp is taken without reading it (`_adopt`).
        A folder the user had changed before is read at the next check, as it would be."""
        generation = self.tree.live()
        known = generation is not None and generation.name == self._generation
        before = top_level(generation) if generation is not None and known else {}
        yield
        if not before or generation is None:
            return
        with contextlib.suppress(FileNotFoundError):  # swapped out meanwhile: nothing to take
            after = top_level(generation)
            self._adopt({name: entry.stamp for name, entry in after.items()
                         if name in before and entry.is_dir and entry.stamp != before[name].stamp
                         and self._stamps.get(name) == before[name].stamp})

    @contextlib.contextmanager
    def rebuilding(
        self, folders_before: Mapping[str, str] | None = None,
        fates: Mapping[str, Fate] | None = None, shown: Store | None = None,
    ) -> Iterator[None]:
        """Around a rebuild and swap of the tree: afterwards, read the old generation once more
        and apply what the user changed in it meanwhile to the catalog and the new tree, and
        carry the user's own things into the new one. `folders_before`: identity -> folder of
        the clusters before a recluster committed (its old folders are in the old tree);
        `fates`: that recluster's retired clusters, for pins made to them meanwhile; `shown`:
        the catalog the old generation shows (a read view from before the commit), given
        right after a check. With it, and the tree in step, only the folders that changed
        since that check are read back (`_since_check`); else the whole old generation is read
        before and after (at 1M photos, 11 s and 17 s that a stop had to wait for)."""
        old = self.tree.live()
        quick = (shown is not None and old is not None and self.trusted
                 and old.name == self._generation)
        before = _Before(shown) if quick else _Before(None, self.tree.read_plan())
        self._carry_from_older(old)
        try:
            yield
        finally:
            new = self.tree.live()
            if new is not None and new != old:
                if old is not None and old.is_dir():
                    folders = {**(folders_before or {}), **self.store.folder_names()}
                    self._after_swap(old, new, folders, before, fates or {})
                else:
                    self._record(new.name, stamp_of(new), top_level(new), ours=True)

    # ---- reading

    def check(self, full: bool, exact: bool | None = None, sweep: bool = False,
              between: Pulse = no_pulse) -> None:
        """Compare the live generation with the catalog and record the user's edits: with
        `exact` (default: `trusted`) all of them, else renamed folders only. Reads the folders
        whose stamp moved since the last check, or all of them when `full`; with `sweep` (and
        `exact`) the sweep's next folder too. `between` runs before each folder is read (a full
        check at 1M photos takes 17 s: a pulse, and where the caller may stop, Stopping, which
        leaves nothing recorded)."""
        generation = self.tree.live()
        if generation is None:
            self._generation = None
            return
        exact = self.trusted if exact is None else exact
        top, listing = stamp_of(generation), top_level(generation)
        folders = self.store.folder_names()
        names = self._to_read(generation.name, listing, folders, full, exact)
        if full:  # every folder was just read: the sweep starts a new round, one pace later
            self._round = []
            self._next_sweep = self._clock() + SWEEP_SECONDS / max(len(names), 1)
        elif sweep and exact:
            names |= self._swept({name for name, entry in listing.items() if entry.is_dir})
        read = self._read(generation, names, between)
        members = self._members(self.store, folders, read, listing)
        home: dict[str, str | None] = {photo: identity for identity, photos in members.items()
                                       for photo in photos}
        linked = {photo for folder in read.values() for photo in folder.links.values()}
        home.update((path, cluster) for path, (_, cluster) in
                    self.store.homes(linked - home.keys()).items())  # moved ones, mostly
        edits = diff(folders, listing, read, home, members)
        self._report(edits.foreign)
        recording.record(self.store, self.tree, edits, exact, folders)
        self._record(generation.name, top, listing if exact else None)
        self._foreign.update((name, folder.foreign) for name, folder in read.items())

    def _to_read(self, generation: str, listing: Mapping[str, Entry],
                 folders: Mapping[str, str], full: bool, exact: bool) -> set[str]:
        """Every folder when `full` or the generation is new to us; else the folders whose
        stamp moved (none when only renames are read), and, when a cluster's folder is gone
        (renamed? deleted?), every folder that is not a cluster's."""
        dirs = {name for name, entry in listing.items() if entry.is_dir}
        if full or generation != self._generation:
            return dirs
        changed = set()
        if exact:
            changed = {name for name in dirs if self._stamps.get(name) != listing[name].stamp}
        if set(folders.values()) - dirs:
            changed |= dirs - set(folders.values())
        return changed

    def _swept(self, dirs: set[str]) -> set[str]:
        """The sweep's next folder, starting a new round when one ends (a folder gone since
        its round began is skipped)."""
        while True:
            if not self._round:
                self._round, self._round_size = sorted(dirs, reverse=True), len(dirs)
                if not self._round:
                    return set()
            name = self._round.pop()
            if name in dirs:
                return {name}

    def _read(self, generation: Path, names: set[str],
              between: Pulse = no_pulse) -> dict[str, Folder]:
        read = {}
        for name in sorted(names):
            between()
            # gone meanwhile, or a folder of the user's we may not read: not ours to judge
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError):
                links, others = self.tree.folder_entries(generation, name)
                read[name] = Folder(links, tuple(others))
        return read

    @staticmethod
    def _members(store: Store, folders: Mapping[str, str], read: Mapping[str, Folder],
                 listing: Mapping[str, Entry]) -> dict[str, set[str]]:
        """identity -> its photos in `store`, for each cluster whose folder was read or is
        missing."""
        wanted = [identity for identity, folder in folders.items()
                  if folder in read or folder not in listing]
        return {identity: set(store.members_of(identity)) for identity in wanted}

    def _record(self, generation: str, top: Stamp | None,
                listing: Mapping[str, Entry] | None, ours: bool = False) -> None:
        """Remember the stamps a check saw; one too recent to trust is not remembered, so the
        next check looks at that folder again. `listing` None: the folders were not compared
        (only renames were read), so what was remembered of them stays. `ours`: the stamps
        are of folders this writer just made as the catalog says (a generation it built), so
        recent ones are remembered too (see `_adopt`)."""
        settled = _settled_ns()
        if generation != self._generation:
            self._stamps, self._foreign, self._round = {}, {}, []
        self._generation = generation
        self._top = top if top is not None and (ours or top[1] < settled) else None
        if listing is not None:  # a recent stamp stays remembered when it was taken (`_adopt`)
            self._stamps = {name: entry.stamp for name, entry in listing.items()
                            if entry.stamp[1] < settled or self._stamps.get(name) == entry.stamp}
            if ours:
                self._adopt({name: entry.stamp for name, entry in listing.items()
                             if entry.stamp[1] >= settled})

    def _adopt(self, stamps: Mapping[str, Stamp]) -> None:
        """Take the stamps of folders this writer just changed as the catalog says, without
        reading them again: at 1M photos a folder holds ~50 000 links and took a second to read,
        after every new photo. An edit of the user's in the same clock tick as ours keeps that
        stamp: the sweep reads it within a round, and a swap reads such a folder of the old
        generation back (`_since_check`). (Putting these folders first in the sweep starved
        the rest of the round while photos kept coming.)"""
        self._stamps.update(stamps)

    def _report(self, found: list[str]) -> None:
        for entry in found:
            if entry not in self._reported:
                self._reported.add(entry)
                logger.warning("%r in the cluster tree is not photocluster's: left alone, and "
                               "carried into the next generation when the tree is rebuilt", entry)

    # ---- around a swap

    def _after_swap(self, old: Path, new: Path, folders: Mapping[str, str], before: _Before,
                    fates: Mapping[str, Fate]) -> None:
        """Apply what the user changed in the old generation while the new one was built (it
        was as `before` says), then carry their own things over."""
        listing = top_level(old)
        if before.shown is not None:
            found = self._reread_changed(old, listing, folders, before.shown)
        else:
            found = self._reread_all(old, listing, folders, before.plan)
        edits = diff(folders, listing, found.read, found.home, found.members)
        recording.record(self.store, self.tree, edits, True, folders, fates)
        self._carry(old, new, edits.foreign + found.kept)
        with contextlib.suppress(FileNotFoundError):
            self._record(new.name, stamp_of(new), top_level(new), ours=True)

    def _reread_changed(self, old: Path, listing: Mapping[str, Entry],
                        folders: Mapping[str, str], shown: Store) -> _Reread:
        """The folders that may differ from what the last check saw, against the catalog the
        old generation showed (`shown`); what else the others held when last read is kept."""
        dirs = {name for name, entry in listing.items() if entry.is_dir}
        read = self._read(old, self._since_check(dirs, listing, folders))
        members = self._members(shown, folders, read, listing)
        home: dict[str, str | None] = {photo: identity for identity, photos in members.items()
                                       for photo in photos}
        linked = {photo for folder in read.values() for photo in folder.links.values()}
        home.update((path, cluster) for path, (_, cluster) in  # moved in from an unread folder
                    shown.homes(linked - home.keys()).items())
        kept = [f"{name}/{entry}" for name in sorted(dirs - read.keys())
                for entry in self._foreign.get(name, ())]
        return _Reread(read, home, members, kept)

    def _since_check(self, dirs: set[str], listing: Mapping[str, Entry],
                     folders: Mapping[str, str]) -> set[str]:
        """The folders of the old generation that may differ from what the last check saw:
        stamp moved, or never read, or changed too recently for its stamp to tell (by the
        user or by our own links: the old generation is deleted next, so what it holds now is
        read now), and every folder that is not a cluster's."""
        recent = _settled_ns()
        clusters = set(folders.values())
        return {name for name in dirs
                if name not in clusters or name not in self._foreign
                or self._stamps.get(name) != listing[name].stamp
                or listing[name].stamp[1] >= recent}

    def _reread_all(self, old: Path, listing: Mapping[str, Entry], folders: Mapping[str, str],
                    plan: LinkPlan) -> _Reread:
        """Every folder, against the links they held when the rebuild began (`plan`)."""
        read = self._read(old, {name for name, entry in listing.items() if entry.is_dir})
        by_folder = {folder: identity for identity, folder in folders.items()}
        members = {by_folder[folder]: set(links.values())
                   for folder, links in plan.items() if folder in by_folder}
        home: dict[str, str | None] = {photo: identity for identity, photos in members.items()
                                       for photo in photos}
        return _Reread(read, home, members, [])

    def _carry(self, old: Path, new: Path, entries: list[str]) -> None:
        moved = foreign_entries.carry(old, new, entries, self.tree.link_prefix(new))
        for source, target in moved:
            logger.warning("carried %r, which is not photocluster's, from %s into %s as %r",
                           source, old.name, new.name, target)
        self.store.set_meta(CARRIED, old.name)

    def _carry_from_older(self, live: Path | None) -> None:
        """Before a swap deletes them: carry the user's things out of older generations a
        crash kept them in (the swap that made them old had no time to)."""
        if live is None:
            return
        carried = self.store.meta(CARRIED)
        for generation in sorted(live.parent.glob("gen-*")):
            if generation != live and generation.name != carried and generation.is_dir():
                self._carry(generation, live, _foreign_in(self.tree, generation))


def _settled_ns() -> int:
    """An mtime (ns) older than this has settled: a change since would have moved it
    (RACY_SECONDS)."""
    return time.time_ns() - int(RACY_SECONDS * 1e9)


@dataclass(frozen=True)
class _Reread:
    """The old generation read back after a swap, in `diff`'s terms, and the user's entries
    of folders not read again (carried over as they were)."""

    read: dict[str, Folder]
    home: dict[str, str | None]
    members: dict[str, set[str]]
    kept: list[str]


@dataclass(frozen=True)
class _Before:
    """What the old generation held when a rebuild began: the catalog it showed (a read view
    from before the commit), or, without one, the links read from it."""

    shown: Store | None
    plan: LinkPlan = field(default_factory=dict)


def _foreign_in(tree: ClusterTree, generation: Path) -> list[str]:
    """Entries of an old generation that are not ours, without knowing its clusters: any
    top-level file, and anything in a top-level folder that is not one of our links."""
    found = []
    for name, entry in sorted(top_level(generation).items()):
        if not entry.is_dir:
            found.append(name)
            continue
        with contextlib.suppress(OSError):
            found += [f"{name}/{other}" for other in tree.folder_entries(generation, name)[1]]
    return found


def report_recluster(folders_before: Mapping[str, str], folders_after: Mapping[str, str],
                     fates: Mapping[str, Fate], moves: PinMoves) -> None:
    """Log what a committed recluster did to named clusters and to pins. A cluster it retired
    without a fate had no photo left in its snapshot: it dissolved."""
    for identity in sorted(folders_before.keys() - folders_after.keys()):
        label, fate = folders_before[identity], fates.get(identity, Fate(None, 0.0))
        if label != identity:
            heir = folders_after.get(fate.into) if fate.into is not None else None
            logger.info("cluster %r (was %s) %s; its name is retired", label, identity,
                        fate.describe(heir))
    if moves.moved or moves.dropped:
        logger.info("pins of retired clusters: %d moved to the cluster that took most of their "
                    "photos, %d dropped", len(moves.moved), len(moves.dropped))
    for content, (old, new) in sorted(moves.moved.items()):
        logger.debug("pin of content %d moved from %s to %s", content, old, new)
    for content, old in sorted(moves.dropped.items()):
        logger.debug("pin of content %d to %s dropped", content, old)

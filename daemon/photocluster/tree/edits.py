"""The user's edits of the live generation, found by comparing it with what the catalog asks.

People browse the cluster folders in a file manager and do what they do with any folder:
rename `cluster-007` to `Beach`, drag a photo's link into another cluster folder, delete a link,
drop their own files in. `top_level` lists a generation with a stamp per folder (inode and
mtime: renaming, adding or removing an entry changes the folder's mtime), so a check reads only
the folders that changed; `diff` (pure) turns what was read into `Edits`.

The diff is exact only while nothing but the user changes the tree: the caller runs it on the
one writer's thread, between its own changes, with the catalog in step with the tree.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from photocluster.fsutil import TEMP_PREFIX
from photocluster.tree.plan import OVERVIEW

UNSORTED = "_unsorted"  # things users dropped into the tree, carried from generation to generation
# Top-level names the daemon writes itself; never read as a user's edit. Any other name
# starting with "_" or "." is looked at only as a folder a user may have renamed a cluster to.
OWN = frozenset({OVERVIEW, UNSORTED, "_duplicates", "_similar"})

Stamp = tuple[int, int]  # (inode, mtime_ns) of an entry


@dataclass(frozen=True)
class Entry:
    """One entry at the top of a generation."""

    is_dir: bool  # a real directory (not a symlink to one)
    stamp: Stamp


@dataclass(frozen=True)
class Folder:
    """One folder as read: our links, and the names of everything else in it."""

    links: dict[str, str]  # link name -> photo path relative to the photo root
    foreign: tuple[str, ...] = ()


@dataclass
class Edits:
    """What the user changed, in the catalog's terms (identity names, photo paths)."""

    renames: dict[str, str] = field(default_factory=dict)  # identity -> the folder's new name
    pins: dict[str, str] = field(default_factory=dict)  # photo -> identity it was moved to
    removals: dict[str, str] = field(default_factory=dict)  # photo -> identity it left
    vanished: set[str] = field(default_factory=set)  # identities whose folder is gone
    foreign: list[str] = field(default_factory=list)  # "folder/name" or "name": not ours

    def __bool__(self) -> bool:
        return bool(self.renames or self.pins or self.removals or self.vanished)


def stamp_of(path: Path) -> Stamp | None:
    """(inode, mtime_ns) of `path` itself; None when it is gone."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns


def top_level(generation: Path) -> dict[str, Entry]:
    """name -> Entry for each entry at the top of `generation` but the daemon's own (`OWN`,
    temp names). Raises FileNotFoundError when the generation is gone."""
    listing = {}
    with os.scandir(generation) as entries:
        for entry in entries:
            if entry.name in OWN or entry.name.startswith(TEMP_PREFIX):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile
                continue
            listing[entry.name] = Entry(stat.S_ISDIR(info.st_mode), (info.st_ino, info.st_mtime_ns))
    return listing


def is_cluster_like(name: str) -> bool:
    """Whether a folder of that name could be a cluster's ("_" and "." names are not)."""
    return name[:1] not in ("_", ".")


def diff(
    folders: Mapping[str, str],
    listing: Mapping[str, Entry],
    read: Mapping[str, Folder],
    home: Mapping[str, str | None],
    members: Mapping[str, set[str]],
) -> Edits:
    """The edits that explain how the tree differs from the catalog.

    `folders`: identity -> expected folder name of every active cluster; `listing`: the
    generation's top level; `read`: the folders read (every changed one, and every folder not
    a cluster's when a cluster's folder is missing); `home`: photo -> its cluster in the catalog
    (None: not clustered) for every catalog photo linked in a read folder; `members`: identity ->
    its photos, for each cluster whose folder was read or is missing.

    - A cluster whose folder is missing (while it has members) was renamed to the unknown folder
      holding most of its photos, when they are most of that folder's links; a renamed folder
      also wins over a folder under the old name that holds fewer of them (a photo linked there
      between the rename and this check).
    - A link in another cluster's folder than its photo's: moved there (a pin).
    - A member whose link is in no folder read: deleted from its cluster (a removal). A link in a
      folder that is not a cluster's (a user's own folder) is neither.
    - A cluster folder gone and not renamed: vanished. Entries that are not our links: foreign.
    """
    missing = {identity for identity, folder in folders.items()
               if members.get(identity) and not _is_dir(listing, folder)}
    expected = set(folders.values())
    renames = _renames(folders, read, home, missing, expected)
    where = {folders[identity]: identity for identity in folders
             if identity not in missing and folders[identity] in read}
    where.update({name: identity for identity, name in renames.items()})
    located: dict[str, list[str]] = {}
    for name, identity in sorted(where.items()):
        for photo in read[name].links.values():
            located.setdefault(photo, []).append(identity)
    kept_aside = {photo for name, folder in read.items()
                  if name not in where and name not in expected and is_cluster_like(name)
                  for photo in folder.links.values()}
    edits = Edits(renames=renames, vanished=missing - renames.keys())
    for photo, homes in located.items():
        others = sorted(identity for identity in homes if identity != home.get(photo))
        if others and photo in home:
            edits.pins[photo] = others[0]
    for identity in sorted(set(where.values()) - edits.vanished):
        for photo in members.get(identity, ()):
            if photo not in located and photo not in kept_aside:
                edits.removals[photo] = identity
    edits.foreign = _foreign(listing, read, where)
    return edits


def _renames(
    folders: Mapping[str, str],
    read: Mapping[str, Folder],
    home: Mapping[str, str | None],
    missing: set[str],
    expected: set[str],
) -> dict[str, str]:
    renames: dict[str, str] = {}
    unknown = sorted((name for name in read if name not in expected),
                     key=lambda name: (-len(read[name].links), name))
    for name in unknown:
        links = read[name].links.values()
        votes = Counter(cluster for cluster in map(home.get, links) if cluster is not None)
        if not votes:
            continue
        identity, count = min(votes.items(), key=lambda item: (-item[1], item[0]))
        if identity in renames or identity not in folders or 2 * count <= len(links):
            continue
        old = folders[identity]
        if identity in missing or (old in read and count > _held(read[old], identity, home)):
            renames[identity] = name
    return renames


def _held(folder: Folder, identity: str, home: Mapping[str, str | None]) -> int:
    return sum(1 for photo in folder.links.values() if home.get(photo) == identity)


def _foreign(
    listing: Mapping[str, Entry], read: Mapping[str, Folder], where: Mapping[str, str]
) -> list[str]:
    found = [name for name, entry in sorted(listing.items()) if not entry.is_dir]
    for name in sorted(read):
        if name in where:
            found += [f"{name}/{entry}" for entry in read[name].foreign]
        elif name not in listing or listing[name].is_dir:
            found.append(name)
    return found


def _is_dir(listing: Mapping[str, Entry], name: str) -> bool:
    entry = listing.get(name)
    return entry is not None and entry.is_dir

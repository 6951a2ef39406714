"""Deletions that may be a folder vanishing rather than photos deleted.

A mount or a sync client can make thousands of files disappear at once without anyone deleting
a photo: a nested mount point unmounted (its bare folder lists as empty), a FUSE mount that
lost its server, a network share half there. So a removal is split before it reaches the
catalog (`split`): the photos below a mount point that now lists as empty, and a removal of
more than `watch.max_vanish_share` of the library's files (and more than `FLOOR`) at once, are
held: they stay in the catalog and the tree, `status` reports them, and every reconciliation
holds them again until their folder comes back (they are found again: nothing to do) or the
user confirms (`photocluster confirm-deletions` writes `CONFIRM` into the state folder; the
next reconciliation of those folders deletes them, then the file is removed).

What is held lives in the catalog's meta (`HELD_KEY`, for `status`), as do the mount points
ever seen below the photo root (`MOUNTS_KEY`: an unmounted one is no longer in mountinfo).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from photocluster import fsutil
from photocluster.store import Store
from photocluster.watch.change import is_within
from photocluster.watch.mounts import mounts_below

HELD_KEY = "vanish.held"  # JSON {folder: photos} whose deletion waits ("" = the photo root)
MOUNTS_KEY = "vanish.mounts"  # JSON [mount point below the photo root, ...] ever seen there
CONFIRM = "confirm-deletions"  # in the state folder: JSON [folder, ...] the user confirmed
FLOOR = 100  # files; a smaller removal is never held for its share (an album of a small library)


@dataclass(frozen=True)
class Hold:
    folder: str  # relative to the photo root; "" is the root itself
    photos: int


def split(missing: Sequence[str], empty_mounts: Collection[str], library_files: int,
          max_share: float, confirmed: Collection[str]) -> tuple[list[str], list[Hold]]:
    """(paths to delete now, holds) for the catalog paths `missing` from disk.

    A path below one of `empty_mounts` is held under the deepest one; the others are held
    together, under their common folder, when there are more than `FLOOR` of them and more
    than `max_share` of `library_files`. Paths below a `confirmed` folder are never held."""
    now, rest, held = [], [], Counter[str]()
    for path in missing:
        mount = max((m for m in empty_mounts if is_within(path, m)), key=len, default=None)
        if any(is_within(path, folder) for folder in confirmed):
            now.append(path)
        elif mount is not None:
            held[mount] += 1
        else:
            rest.append(path)
    if len(rest) > max(FLOOR, max_share * library_files):
        held[_common_folder(rest)] += len(rest)
    else:
        now += rest
    return now, [Hold(folder, count) for folder, count in sorted(held.items())]


def updated_holds(held: dict[str, int], scope: str | None, holds: list[Hold]) -> dict[str, int]:
    """The holds to show after a removal that looked at the folder `scope` (None: only at
    the paths it was given, so it clears nothing) and held `holds`."""
    kept = {folder: count for folder, count in held.items()
            if scope is None or not is_within(folder, scope)}
    return {**kept, **{hold.folder: hold.photos for hold in holds}}


def describe(folder: str, photos: int) -> str:
    """The line `status` and the log show for one hold."""
    where = repr(folder) if folder else "the photo folder"
    return (f"{photos} photos under {where} look deleted; confirm with `photocluster "
            "confirm-deletions` or they come back when the folder does")


def remembered_mounts(store: Store, root: Path) -> set[str]:
    """Mount points below the photo root now or ever (an unmounted one leaves mountinfo, so
    the catalog remembers them)."""
    known = set(json.loads(store.meta(MOUNTS_KEY) or "[]"))
    current = mounts_below(os.path.realpath(root))
    if not current <= known:
        store.set_meta(MOUNTS_KEY, json.dumps(sorted(known | current)))
    return known | current


def forget_mounts(store: Store, root: Path, folders: Collection[str]) -> None:
    """Forget the remembered mount points at or below `folders` that are not mounted now."""
    known = set(json.loads(store.meta(MOUNTS_KEY) or "[]"))
    current = mounts_below(os.path.realpath(root))
    kept = {mount for mount in known
            if mount in current or not any(is_within(mount, folder) for folder in folders)}
    if kept != known:
        store.set_meta(MOUNTS_KEY, json.dumps(sorted(kept)))


def holds(store: Store) -> dict[str, int]:
    """folder -> photos whose deletion waits, as the last removals left them."""
    held: dict[str, int] = json.loads(store.meta(HELD_KEY) or "{}")
    return held


def record_holds(store: Store, scope: str | None, found: list[Hold]) -> None:
    """Remember what a removal held (see `updated_holds`), writing only a change."""
    before = holds(store)
    after = updated_holds(before, scope, found)
    if after != before:
        store.set_meta(HELD_KEY, json.dumps(after, sort_keys=True))


def empty_mounts(root: Path, remembered: Collection[str]) -> set[str]:
    """Those of the mount points `remembered` that now list as empty, or are gone."""
    return {mount for mount in remembered if lists_empty(root / mount)}


def lists_empty(folder: Path) -> bool:
    """No entries, or not a readable folder at all."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return True


def confirmed(state_dir: Path) -> list[str]:
    """The folders `photocluster confirm-deletions` confirmed, not yet applied."""
    try:
        folders = json.loads((state_dir / CONFIRM).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [folder for folder in folders if isinstance(folder, str)]


def confirm(state_dir: Path, folders: Sequence[str]) -> None:
    """Record the user's confirmation for the next reconciliation. Raises OSError."""
    fsutil.atomic_write(state_dir / CONFIRM, json.dumps(sorted(set(folders))).encode())


def clear_confirmation(state_dir: Path) -> None:
    (state_dir / CONFIRM).unlink(missing_ok=True)


def _common_folder(paths: Sequence[str]) -> str:
    folders = [path.rpartition("/")[0] for path in paths]
    return os.path.commonpath(folders) if all(folders) else ""

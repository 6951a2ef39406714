"""Things users put into the cluster tree, carried from a generation into the next one.

A generation is deleted two swaps after it was live, so whatever a user dropped into it (a
file, a folder, a link of their own) is moved along instead, never copied or deleted:

    gen-6/Beach/notes.txt  ->  gen-7/Beach/notes.txt             (the folder goes on)
    gen-6/cluster-004/x    ->  gen-7/_unsorted/cluster-004/x      (its cluster is gone)
    gen-6/My picks/        ->  gen-7/_unsorted/My picks/          (a folder of the user's own)
    gen-6/_unsorted/*      ->  gen-7/_unsorted/*

A name already taken at the destination gets " (2)", " (3)", ... before its extension. A
folder carried one level deeper into `_unsorted/` gets each of our links directly inside it
re-pointed, so the photo links a user gathered there keep working.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from photocluster import fsutil
from photocluster.tree.edits import UNSORTED

logger = logging.getLogger(__name__)


def carry(old: Path, new: Path, entries: Sequence[str], prefix: str) -> list[tuple[str, str]]:
    """Move `entries` ("name" at the top of `old`, or "folder/name") and `old/_unsorted`'s
    contents into `new`. `prefix`: the relative target of the photo root from a cluster folder
    (ours start with it). Returns (from, to) of each move, relative to the generations; an
    entry that vanished meanwhile is skipped. Raises OSError when a move fails."""
    moved = []
    for entry in [*entries, *_unsorted_entries(old)]:
        source = old / entry
        if not os.path.lexists(source):
            continue
        target = _free(new / _destination(new, entry))
        fsutil.private_dir(target.parent)
        os.rename(source, target)
        if target.parent == new / UNSORTED and _is_real_dir(target) and "/" not in entry:
            _repoint(target, prefix)
        moved.append((entry, str(target.relative_to(new))))
    return moved


def _unsorted_entries(old: Path) -> list[str]:
    try:
        return sorted(f"{UNSORTED}/{name}" for name in os.listdir(old / UNSORTED))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _destination(new: Path, entry: str) -> str:
    """Where `entry` goes in `new`: its own folder when `new` has it, else `_unsorted/`."""
    folder, _, name = entry.rpartition("/")
    if folder == UNSORTED:
        return entry
    if folder and _is_real_dir(new / folder):
        return entry
    return f"{UNSORTED}/{entry}"


def _free(path: Path) -> Path:
    """`path`, or the first of "stem (2).ext", "stem (3).ext", ... that nothing holds."""
    if not os.path.lexists(path):
        return path
    stem, extension = posixpath.splitext(path.name)
    number = 2
    while os.path.lexists(path.with_name(f"{stem} ({number}){extension}")):
        number += 1
    return path.with_name(f"{stem} ({number}){extension}")


def _repoint(folder: Path, prefix: str) -> None:
    """Our relative links directly inside `folder`, now one level deeper: one more "../"."""
    with os.scandir(folder) as entries:
        links = [entry.path for entry in entries if entry.is_symlink()]
    for link in links:
        target = os.readlink(link)
        if target.startswith(prefix):
            temp = fsutil.temp_name(Path(link))
            os.symlink("../" + target, temp)
            os.replace(temp, link)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()

"""Folders of ranked links beside the clusters: `_duplicates/<group>/` and `_similar/<name>/`.

A ranked folder holds relative symlinks named "01 <link name>", "02 <link name>", ... in the
order given (best or most similar first), so every file manager lists them in that order. A
folder is written whole under a temp name and renamed into place; a folder it replaces is
renamed aside first and deleted after, so a reader sees the old folder or the new one (for an
instant neither), never half of one. Folders are 0700 like the cluster folders; the links
point at the originals, which are never written. These folders are derived from the catalog
and are not fsynced: a power cut can cost one, and the next generation has them all again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import secrets
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from photocluster import fsutil
from photocluster.fsutil import TEMP_PREFIX
from photocluster.tree.names import NAME_MAX, fit_name

logger = logging.getLogger(__name__)

DUPLICATES, SIMILAR = "_duplicates", "_similar"  # in a generation, beside the clusters
DEPTH = 2  # a ranked folder's links sit two levels below the generation
_REPLACED = {errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR}


def ranked_names(names: Sequence[str]) -> list[str]:
    """"01 a.jpg", "02 b.jpg", ...: each name behind its rank (at least two digits, as many as
    the longest rank needs), cut to fit NAME_MAX bytes with its extension kept."""
    width = max(2, len(str(len(names))))
    prefixes = [f"{rank:0{width}d} " for rank in range(1, len(names) + 1)]
    return [prefix + fit_name(name, NAME_MAX - len(prefix)) for prefix, name in
            zip(prefixes, names, strict=True)]


def folder_name(photo_name: str, tag: str = "") -> str:
    """A folder name after a photo's name: its stem (a short extension dropped), then `tag`,
    within NAME_MAX bytes. A name that would be hidden, a temp name or "."/".." gets a "_"."""
    stem, extension = posixpath.splitext(photo_name)
    if not (1 < len(extension) <= 6 and extension[1:].isalnum()):
        stem = photo_name
    return safe_name(stem, NAME_MAX - len(os.fsencode(tag))) + tag


def safe_name(name: str, budget: int = NAME_MAX) -> str:
    """`name` as a visible folder name of at most `budget` bytes: a "_" before a name that
    would be hidden, a temp name, "." or ".." (or is empty)."""
    if not name or name.startswith("."):
        name = "_" + name
    return fit_name(name, budget)


def write_folder(parent: Path, name: str, links: Sequence[tuple[str, str]]) -> None:
    """Make `parent/name` hold exactly `links`, (link name, symlink target) pairs, replacing
    what it held. `parent` is created (0700) if missing. Raises ValueError for a name that is
    not one plain folder or link name, OSError when the folder cannot be written (what was
    there stays)."""
    _check_name(name)
    for link, _ in links:
        _check_name(link)
    fsutil.private_dir(parent)
    temp = parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    os.mkdir(temp, fsutil.PRIVATE_DIR)
    try:
        os.chmod(temp, fsutil.PRIVATE_DIR)
        for link, target in links:
            os.symlink(target, temp / link)
        _rename_over(temp, parent / name)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def remove_folder(parent: Path, name: str) -> None:
    """Delete `parent/name` if it is there, without following a link."""
    _check_name(name)
    _remove(parent / name)


def folders(parent: Path) -> list[str]:
    """The ranked folders in `parent` (temp names and anything else skipped), sorted."""
    try:
        with os.scandir(parent) as entries:
            return sorted(entry.name for entry in entries if not entry.name.startswith(".")
                          and entry.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _rename_over(new: Path, final: Path) -> None:
    try:
        os.rename(new, final)  # replaces only a missing name or an empty folder
        return
    except OSError as error:
        if error.errno not in _REPLACED:
            raise
    aside = final.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")
    os.rename(final, aside)
    try:
        os.rename(new, final)
    except BaseException:
        with contextlib.suppress(OSError):  # else a leftover temp name, removed at start
            os.rename(aside, final)
        raise
    _remove(aside)


def _remove(path: Path) -> None:
    """rmtree for a real folder (it unlinks the links inside, never their targets), unlink for
    anything else; a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _check_name(name: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name or name.startswith(TEMP_PREFIX):
        raise ValueError(f"invalid folder or link name {name!r}")
    if len(os.fsencode(name)) > NAME_MAX:
        raise ValueError(f"name longer than {NAME_MAX} bytes: {name!r}")

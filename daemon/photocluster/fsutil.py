"""Crash-safe file writing: the one atomic write and directory fsync every module uses.

A file the daemon owns (catalog sidecars, the vector index, weights, the status file, overview
images) is never rewritten in place: the new content goes to a private temp file beside it,
is fsynced, renamed over the old name, and the folder is fsynced so the rename itself survives
a power cut. A crash leaves either the old file or the new one, plus at worst a temp file whose
name starts with `TEMP_PREFIX`, which the owner of the folder removes at its next start.

Callers reach these as `fsutil.atomic_write(...)` (not `from ... import`): the tests' fault
injection patches this module's attribute to pause or fail a write in every module at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"  # every temp name starts so; a folder's owner may delete such leftovers
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700

Writer = Callable[[str], object]  # writes the content into the file named by its argument


def atomic_write(
    path: Path, content: bytes | Writer, mode: int = PRIVATE_FILE, durable: bool = True
) -> None:
    """Replace `path` with `content`: bytes, or a function that writes a file by name (for
    libraries that only write to a path, like faiss or Keras).

    The temp name keeps `path`'s own name as its end (Keras insists on its suffix). The file
    has `mode` whatever the umask. `durable=False` skips both fsyncs, for a file rewritten
    often whose loss in a power cut costs nothing (the daemon's live status): readers still
    never see it half written. Raises OSError (the old file stays) on any failure.
    """
    temp = temp_name(path)
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode))
    try:
        os.chmod(temp, mode)  # O_CREAT's mode is cut by the umask
        if isinstance(content, bytes):
            temp.write_bytes(content)
        else:
            content(str(temp))
        if durable:
            _fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def temp_name(path: Path) -> Path:
    """A fresh temp name beside `path`: unique per call, recognisable by TEMP_PREFIX."""
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


def remove_temp_files(folder: Path) -> None:
    """Delete leftovers of writes a crash interrupted (files only; never follows a link)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(TEMP_PREFIX) and not entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (a rename, a new link) durable. Some file systems refuse to
    fsync a directory; that only weakens durability, so it is logged, not raised."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync_descriptor(descriptor)
    finally:
        os.close(descriptor)


def fsync_descriptor(descriptor: int) -> None:
    """fsync an open folder; a refusal (EINVAL on some file systems) is logged at DEBUG."""
    try:
        os.fsync(descriptor)
    except OSError as error:
        logger.debug("fsync of a directory: %s", error)


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700; returns it."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)
    return path


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

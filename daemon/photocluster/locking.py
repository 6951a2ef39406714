"""The one lock primitive: an exclusive `flock` on a lock file that names its holder.

The catalog (state directory) and the cluster tree (its generations folder) are each guarded by
one lock file taken this way, so two photocluster processes (two daemons, a daemon and an
offline `scan`, or two instances configured with the same `paths.clusters`) never write the same
thing. The kernel drops a flock when its holder dies, so a `kill -9` never leaves a stale lock.
The file records the holder's pid and role, so `recluster` can signal a running daemon and
`status` can name it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from photocluster import fsutil
from photocluster.errors import LockedError

STATE_LOCK = "writer.lock"  # in the state directory


@dataclass(frozen=True)
class Holder:
    pid: int
    role: str  # "run" (the daemon) or the one-shot command's name


@contextmanager
def hold(path: Path, role: str) -> Iterator[None]:
    """Hold the lock at `path` for the block, creating its (private) folder if needed.

    Raises LockedError naming the current holder when another process has it."""
    fsutil.private_dir(path.parent)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, fsutil.PRIVATE_FILE)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = holder_of(path)
            who = f"pid {holder.pid} ({holder.role})" if holder else "another process"
            raise LockedError(f"{path.parent} is in use by {who}") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()} {role}\n".encode())
        yield
    finally:
        os.close(descriptor)


def holder_of(path: Path) -> Holder | None:
    """The process holding the lock at `path` now, or None when nobody does."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(path.read_text(encoding="ascii", errors="replace"))
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


def state_holder(state_dir: Path) -> Holder | None:
    """The process writing the catalog in `state_dir`, if any."""
    return holder_of(state_dir / STATE_LOCK)


def _parse(text: str) -> Holder | None:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    return Holder(int(parts[0]), parts[1])

"""The single-writer lock on the state directory.

An `flock` on `<state>/writer.lock` keeps two writers (two daemons, or a daemon and an offline
`scan`) apart; the kernel drops it when the holder dies, so a `kill -9` never leaves a stale
lock. The file records the holder's pid and role so `recluster` can signal a running daemon.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from photocluster.errors import LockedError

LOCK_NAME = "writer.lock"


@dataclass(frozen=True)
class Holder:
    pid: int
    role: str  # "run" (the daemon) or the one-shot command's name


@contextmanager
def writer_lock(state_dir: Path, role: str) -> Iterator[None]:
    """Hold the lock for the block. Raises `LockedError` naming the current holder."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = current_holder(state_dir)
            who = f"pid {holder.pid} ({holder.role})" if holder else "another process"
            raise LockedError(f"{state_dir} is in use by {who}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {role}\n".encode())
        yield
    finally:
        os.close(fd)


def current_holder(state_dir: Path) -> Holder | None:
    """The process holding the lock now, or None when nobody does."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(path.read_text(encoding="ascii", errors="replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _parse(text: str) -> Holder | None:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    return Holder(int(parts[0]), parts[1])

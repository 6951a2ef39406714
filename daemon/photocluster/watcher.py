"""Watching the photo folder: watchdog events in, settled and coalesced `Change`s out.

The watchdog handler only enqueues (observer thread). `ChangeFeed.get_batch`, called by the
worker, interprets the raw events: a photo becomes an "upsert" once no event has touched it for
`settle_seconds` and two looks at its size and mtime agree; a rename inside the tree is a "move"
at once; a deletion is a "delete"; a folder appearing or vanishing and an inotify overflow ask
for a "rescan" of that subtree once it is quiet. Events are hints: the daemon's reconciliation is
the truth. A vanished, unmounted or replaced root pauses the feed and drops what was pending, so
it never turns into deletions; once the root is back and holds files again, the feed asks for a
rescan of everything.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from watchdog.events import (
    EVENT_TYPE_ATTRIB,
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
from watchdog.observers.polling import PollingObserver

logger = logging.getLogger(__name__)

MODES = ("auto", "inotify", "polling")
# Filesystems where inotify misses changes made elsewhere (server, other clients, host).
_REMOTE_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "smb2", "sshfs", "9p", "virtiofs"}
    | {"afs", "ceph", "glusterfs", "lustre", "davfs", "fuse"}
)
_RESCAN_MAX_WAIT = 10  # a rescan waits at most this many settle periods for a quiet subtree
_OVERFLOW = "overflow"
# Opened and closed-without-writing are not changes: reading photos must not echo back.
_WRITES = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_ATTRIB, EVENT_TYPE_CLOSED})
_Look = tuple[int, int, int]  # file type bits, size, mtime_ns
_MISSING: _Look = (0, -1, -1)


@dataclass(frozen=True)
class Change:
    """One change below the photo root; paths are relative POSIX strings ("" is the root).

    upsert: a photo appeared or changed and is settled; delete: it is gone (or is no longer a
    regular file); move: renamed from `path` to `dest` inside the tree; rescan: reconcile the
    subtree `path` against the catalog.
    """

    kind: Literal["upsert", "delete", "move", "rescan"]
    path: str
    dest: str | None = None


class ChangeFeed:
    """Watches `photo_root` and hands out settled changes; a context manager owning the threads.

    `is_candidate` decides from a file's base name whether it may be a photo (the daemon passes
    `photos.is_candidate`); files inside hidden folders are never candidates, as in
    `photos.walk`. `clock` times the settling; waits in `get_batch` are real time.
    Raises ValueError for an unknown mode; `get_batch` outside the with-block raises RuntimeError.
    """

    def __init__(
        self,
        photo_root: Path,
        mode: str,
        settle_seconds: float,
        poll_interval: float,
        is_candidate: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"watch mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._root = os.path.abspath(photo_root)
        self._mode = mode
        self._settle = settle_seconds
        self._poll_interval = poll_interval
        self._is_candidate = is_candidate
        self._clock = clock
        # How often a waiting get_batch looks at the queue and the root.
        self._tick = min(max(settle_seconds / 4, 0.02), 0.25)
        self._events: queue.SimpleQueue[FileSystemEvent] = queue.SimpleQueue()
        self._handler = _Enqueue(self._events)
        self._settler = _Settler(self._root, is_candidate, settle_seconds)
        self._observer: BaseObserver | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the watched root
        self._refused: tuple[int, int] | None = None  # an empty root we logged as suspect
        self._present = False
        self._entered = False
        self._polling = False  # the running observer polls: its deletions come from listings

    def __enter__(self) -> ChangeFeed:
        self._entered = True
        identity = _identity(self._root)
        if identity is None or not self._watch(identity):
            logger.warning("photo folder %s is missing; waiting for it", self._root)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._unwatch()
        self._present = self._entered = False

    @property
    def root_present(self) -> bool:
        """False while the root is missing, unmounted or replaced (the daemon pauses)."""
        return self._present

    def get_batch(self, timeout: float) -> list[Change]:
        """Wait up to `timeout` seconds for settled changes and return them, in order.

        Returns as soon as anything is ready; an empty list when nothing was.
        """
        if not self._entered:
            raise RuntimeError("ChangeFeed.get_batch called outside its with-block")
        deadline = time.monotonic() + timeout
        while True:
            changes = self._poll()
            remaining = deadline - time.monotonic()
            if changes or remaining <= 0:
                return changes
            time.sleep(min(self._tick, remaining))

    def _poll(self) -> list[Change]:
        changes = self._check_root()
        if self._present:
            now = self._clock()
            for event in self._drain():
                self._settler.add(event, now)
            changes += self._settler.take(now)
        return changes

    def _check_root(self) -> list[Change]:
        identity = _identity(self._root)
        healthy = self._present and identity == self._identity and self._observer_alive()
        # A network or FUSE mount can briefly list as empty; by polling, that reads as every
        # photo deleted. Pause instead, as for a bare mount point; the rescan on return decides.
        if healthy and not (self._polling and not _has_entries(self._root)):
            return []
        if self._present:
            self._pause(identity)
        if identity is None or not self._may_resume(identity) or not self._watch(identity):
            return []
        logger.info("photo folder %s is being watched again; rescanning it", self._root)
        return [Change("rescan", "")]

    def _may_resume(self, identity: tuple[int, int]) -> bool:
        # An empty root is most likely a bare mount point (or a folder recreated in place, which
        # may even get the same inode): resuming would make the rescan empty the catalog.
        if _has_entries(self._root):
            return True
        if identity != self._refused:
            self._refused = identity
            logger.warning(
                "photo folder %s is empty; staying paused until it holds files", self._root
            )
        return False

    def _pause(self, identity: tuple[int, int] | None) -> None:
        if identity is None:
            reason = "is missing or unmounted"
        elif identity != self._identity:
            reason = "was replaced"
        elif self._observer_alive():
            reason = "lists as empty"
        else:
            reason = "stopped being watched"
        logger.warning(
            "photo folder %s %s; pausing (%d pending changes dropped)",
            self._root,
            reason,
            self._settler.pending_count(),
        )
        self._unwatch()
        self._present = False

    def _watch(self, identity: tuple[int, int]) -> bool:
        """Start an observer on the root; False if the root vanished meanwhile."""
        watch_path = os.path.realpath(self._root)  # inotify does not follow a symlinked root
        self._settler = _Settler(watch_path, self._is_candidate, self._settle)
        try:
            self._observer = self._start_observer(watch_path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        self._polling = isinstance(self._observer, PollingObserver)
        self._settler.verify_deletes = self._polling
        self._identity, self._present = identity, True
        return True

    def _start_observer(self, watch_path: str) -> BaseObserver:
        mode = self._mode
        if mode == "auto":
            fstype = _filesystem_type(watch_path)
            mode = "polling" if fstype is not None and _is_remote(fstype) else "inotify"
        if mode == "inotify":
            try:
                observer = self._started(_InotifyObserver(), watch_path)
            except OSError as error:
                if error.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise
                logger.warning(
                    "cannot watch %s with inotify (%s); polling instead", watch_path, error
                )
            else:
                logger.info("watching %s with inotify", watch_path)
                return observer
        observer = self._started(PollingObserver(timeout=self._poll_interval), watch_path)
        logger.info("watching %s by polling every %g s", watch_path, self._poll_interval)
        return observer

    def _started(self, observer: BaseObserver, watch_path: str) -> BaseObserver:
        observer.schedule(self._handler, watch_path, recursive=True, event_filter=_EVENT_FILTER)
        try:
            observer.start()
        except BaseException:
            observer.stop()  # the inotify reader thread starts before the observer does
            raise
        return observer

    def _observer_alive(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        emitters = list(observer.emitters)
        return bool(emitters) and all(emitter.is_alive() for emitter in emitters)

    def _unwatch(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join()
        self._drain()  # whatever the old observer queued describes a root we no longer trust

    def _drain(self) -> list[FileSystemEvent]:
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events


@dataclass
class _PendingFile:
    since: float  # clock time of the last event, or of the last look that differed
    look: _Look | None = None  # None until the first look, taken on the pass after the event


@dataclass
class _PendingRescan:
    first: float
    since: float  # clock time of the last event inside the subtree


class _Settler:
    """Turns raw events into changes. Single-threaded; times come from the caller's clock."""

    def __init__(self, root: str, is_candidate: Callable[[str], bool], settle: float) -> None:
        self._root = root
        self._prefix = root.rstrip("/") + "/"
        self._is_candidate = is_candidate
        self._settle = settle
        self._files: dict[str, _PendingFile] = {}
        self._rescans: dict[str, _PendingRescan] = {}
        self._ready: list[Change] = []
        # Polling derives deletions from listings, which a flaky mount can get wrong: a
        # deletion is believed only once the file is really gone.
        self.verify_deletes = False

    def pending_count(self) -> int:
        return len(self._files) + len(self._rescans) + len(self._ready)

    def add(self, event: FileSystemEvent, now: float) -> None:
        """Interpret one raw watchdog event that happened at about `now`."""
        if event.event_type == _OVERFLOW:
            logger.info("inotify queue overflowed; will rescan %s once it is quiet", self._root)
            self._rescan("", now)
            return
        path = self._relative(event.src_path)
        if event.event_type == EVENT_TYPE_MOVED and not event.is_directory:
            self._add_move(path, self._relative(event.dest_path), now)
        elif path is not None:
            self._note_activity(path, now)
            if event.is_directory:
                self._add_directory(event.event_type, path, now)
            elif self._is_photo(path):
                self._add_file(event.event_type, path, now)

    def take(self, now: float) -> list[Change]:
        """Everything ready at `now`: moves and deletes in event order, then settled photos and
        quiet rescans."""
        changes, self._ready = self._ready, []
        if self.verify_deletes:
            changes = [change for change in changes if not self._still_there(change, now)]
        return changes + self._settled_files(now) + self._quiet_rescans(now)

    def _still_there(self, change: Change, now: float) -> bool:
        """For a deletion whose file can still be seen: True, and a regular file is looked at
        again as a possible change. A file that cannot be looked at is not deleted either."""
        if change.kind != "delete":
            return False
        try:
            info = os.lstat(self._prefix + change.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as error:
            logger.debug("not deleting %r: cannot look at it (%s)", change.path, error)
            return True
        if not stat.S_ISREG(info.st_mode):
            return False
        self._files[change.path] = _PendingFile(now)
        return True

    def _add_directory(self, event_type: str, path: str, now: float) -> None:
        # A folder moved inside the tree needs nothing itself: inotify and polling both report
        # every file in it as a move of its own. A folder that appears may bring files that
        # raised no event; one that vanishes (deleted or moved out) takes its photos along.
        hidden = any(part.startswith(".") for part in path.split("/"))
        if path and not hidden and event_type in (EVENT_TYPE_CREATED, EVENT_TYPE_DELETED):
            self._rescan(path, now)

    def _add_file(self, event_type: str, path: str, now: float) -> None:
        if event_type == EVENT_TYPE_DELETED:
            self._delete(path)
        elif event_type in _WRITES:
            self._files[path] = _PendingFile(now)

    def _add_move(self, src: str | None, dest: str | None, now: float) -> None:
        for path in (src, dest):
            if path is not None:
                self._note_activity(path, now)
        src_photo = src if src is not None and self._is_photo(src) else None
        dest_photo = dest if dest is not None and self._is_photo(dest) else None
        if src_photo is not None and dest_photo is not None and src_photo not in self._files:
            self._files.pop(dest_photo, None)
            self._emit(Change("move", src_photo, dest_photo))
            return
        # A photo still settling, a temp name becoming a photo or a photo becoming something else.
        if src_photo is not None:
            self._delete(src_photo)
        if dest_photo is not None:
            self._files[dest_photo] = _PendingFile(now)

    def _delete(self, path: str) -> None:
        self._files.pop(path, None)
        self._emit(Change("delete", path))

    def _emit(self, change: Change) -> None:
        if not self._ready or self._ready[-1] != change:
            self._ready.append(change)

    def _rescan(self, directory: str, now: float) -> None:
        if any(_is_within(directory, pending) for pending in self._rescans):
            return
        for covered in [pending for pending in self._rescans if _is_within(pending, directory)]:
            del self._rescans[covered]
        self._rescans[directory] = _PendingRescan(first=now, since=now)

    def _note_activity(self, path: str, now: float) -> None:
        for directory, pending in self._rescans.items():
            if _is_within(path, directory):
                pending.since = now

    def _settled_files(self, now: float) -> list[Change]:
        settled = []
        for path, pending in list(self._files.items()):
            if pending.look is None:
                pending.look = _look(self._prefix + path)
            if now - pending.since < self._settle:
                continue
            look = _look(self._prefix + path)
            if look != pending.look:
                pending.look, pending.since = look, now
                continue
            del self._files[path]
            if look != _MISSING:  # gone without an event yet: its own event will tell
                settled.append(Change("upsert" if stat.S_ISREG(look[0]) else "delete", path))
        return settled

    def _quiet_rescans(self, now: float) -> list[Change]:
        longest = _RESCAN_MAX_WAIT * self._settle
        quiet = [
            directory
            for directory, pending in self._rescans.items()
            if now - pending.since >= self._settle or now - pending.first >= longest
        ]
        for directory in quiet:
            del self._rescans[directory]
        return [Change("rescan", directory) for directory in quiet]

    def _relative(self, raw_path: bytes | str) -> str | None:
        path = os.fsdecode(raw_path)
        if path == self._root:
            return ""
        return path[len(self._prefix) :] if path.startswith(self._prefix) else None

    def _is_photo(self, path: str) -> bool:
        *folders, name = path.split("/")
        return not any(folder.startswith(".") for folder in folders) and self._is_candidate(name)


def _is_within(path: str, directory: str) -> bool:
    return directory == "" or path == directory or path.startswith(directory + "/")


def _look(path: str) -> _Look:
    """What a path is now, without following a symlink (a symlink is not a photo)."""
    try:
        info = os.lstat(path)
    except OSError:
        return _MISSING
    return stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns


def _identity(root: str) -> tuple[int, int] | None:
    try:
        info = os.stat(root)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def _has_entries(root: str) -> bool:
    try:
        with os.scandir(root) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


def _is_remote(fstype: str) -> bool:
    return fstype in _REMOTE_FILESYSTEMS or fstype.startswith("fuse.")


def _filesystem_type(path: str) -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
            return _mount_type(path, file.read())
    except OSError:
        return None


def _mount_type(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount holding `path` (canonical), from mountinfo(5) text."""
    best, fstype = "", None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = mount_point == "/" or _is_within(path, mount_point)
        if inside and len(mount_point) >= len(best):  # the later of two stacked mounts wins
            best, fstype = mount_point, fields[fields.index("-", 6) + 1]
    return fstype


class _Enqueue(FileSystemEventHandler):
    """Runs on the observer thread: only enqueues."""

    def __init__(self, events: queue.SimpleQueue[FileSystemEvent]) -> None:
        super().__init__()
        self._events = events

    def dispatch(self, event: FileSystemEvent) -> None:
        self._events.put(event)


class _OverflowEvent(FileSystemEvent):
    """The kernel dropped events. Watchdog 7 logs it and rebuilds its watches but tells no
    handler, so the emitter below queues this in-band."""

    event_type = _OVERFLOW


def _ignore() -> None:
    pass


@dataclass
class _OverflowReportingGroup(InotifyWatchGroup):
    on_overflow: Callable[[], None] = field(default=_ignore)

    def on_queue_overflow(self) -> None:
        super().on_queue_overflow()
        if self.is_active:
            self.on_overflow()


class _InotifyEmitter(InotifyEmitter):
    def on_thread_start(self) -> None:
        # InotifyEmitter.on_thread_start, with the overflow-reporting watch group.
        self._inotify = _OverflowReportingGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            on_overflow=self._queue_overflow,
        )

    def _queue_overflow(self) -> None:
        self.queue_event(_OverflowEvent(self.watch.path))


class _InotifyObserver(InotifyObserver):
    def __init__(self) -> None:
        super().__init__()
        # watchdog 7 offers no parameter for the emitter class; both overflow tests pin this.
        self._emitter_class = _InotifyEmitter


# Also keeps open and close-without-write out of the kernel queue (see _WRITES).
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    _OverflowEvent,
]

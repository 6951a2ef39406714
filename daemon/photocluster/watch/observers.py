"""The watchdog side: an enqueue-only handler, the event filter, and the two observers.

The inotify observer reports kernel queue overflows (watchdog 7 logs them and rebuilds its
watches but tells no handler, so the emitter below queues an overflow event in-band), reports
the watch limit (watchdog skips a folder it cannot watch without a word: `on_limit` is called
instead) and adds no watch below an excluded folder. The polling observer (`poller`) stats
folders and lists only those that changed, never an excluded one.
"""

from __future__ import annotations

import errno
import os
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watchdog.events import (
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
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import (
    CallbackId,
    InotifyFD,
    Mask,
    WatchCallback,
    WatchDescriptor,
)

from photocluster.watch.change import nothing_excluded
from photocluster.watch.poller import PollingEmitter

OVERFLOW = "overflow"

Excluded = Callable[[str], bool]  # a path relative to the watched root -> never watch it


class Enqueue(FileSystemEventHandler):
    """Runs on the observer thread: only enqueues."""

    def __init__(self, events: queue.SimpleQueue[FileSystemEvent]) -> None:
        super().__init__()
        self._events = events

    def dispatch(self, event: FileSystemEvent) -> None:
        self._events.put(event)


class OverflowEvent(FileSystemEvent):
    """The kernel dropped events: everything below the watch must be looked at again."""

    event_type = OVERFLOW


class InotifyObserver(BaseObserver):
    """watchdog's inotify observer, built through BaseObserver's public `emitter_class` seam
    (watchdog's own InotifyObserver fixes its emitter) with our emitter: it reports overflows
    and watches no folder for which `excluded(path relative to the watched root)` holds."""

    def __init__(self, excluded: Excluded = nothing_excluded,
                 on_limit: Callable[[], None] = lambda: None) -> None:
        # one kernel queue shared by this observer's emitters
        self._inotify_fd = _LimitedInotifyFD(on_limit)
        self._inotify_fd.start()
        super().__init__(_Emitter, inotify_fd=self._inotify_fd, excluded=excluded)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._inotify_fd.stop()
        self._inotify_fd.join()


class _LimitedInotifyFD(InotifyFD):
    """Calls `on_limit` (on whichever thread adds the watch) when the kernel refuses a watch
    for fs.inotify.max_user_watches: watchdog then leaves that folder unwatched, silently."""

    def __init__(self, on_limit: Callable[[], None]) -> None:
        super().__init__()
        self._on_limit = on_limit

    def add_callback(
        self, path: bytes, mask: Mask, callback: WatchCallback, id_: CallbackId
    ) -> WatchDescriptor:
        try:
            return super().add_callback(path, mask, callback, id_)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                self._on_limit()
            raise


def _ignore() -> None:
    pass


@dataclass
class _WatchGroup(InotifyWatchGroup):
    on_overflow: Callable[[], None] = field(default=_ignore)
    excluded: Excluded = field(default=nothing_excluded)

    def on_queue_overflow(self) -> None:
        super().on_queue_overflow()
        if self.is_active:
            self.on_overflow()

    def _add_all_callbacks(self, path: bytes) -> None:
        # InotifyWatchGroup._add_all_callbacks with excluded folders pruned from its walk. It is
        # where every watch is added (at the start, for a folder created or moved in, after an
        # overflow), and watchdog has no hook to filter them: an excluded tree (a NAS's
        # @eaDir holds a folder per photo) must cost no watch and no listing. A watched folder
        # renamed to an excluded name keeps its watches (watchdog moves them along); the
        # settler drops what they report.
        if self._is_excluded(path):
            return
        is_dir = os.path.isdir(path)
        self._add_callback(path)
        if not (is_dir and self.is_recursive):
            return
        for root, dirnames, _ in os.walk(path, followlinks=self.follow_symlink):
            dirnames[:] = [d for d in dirnames if not self._is_excluded(os.path.join(root, d))]
            for dirname in dirnames:
                full_path = os.path.join(root, dirname)
                if self.follow_symlink or not os.path.islink(full_path):
                    self._add_callback(full_path)

    def _is_excluded(self, path: bytes) -> bool:
        prefix = self.path.rstrip(b"/") + b"/"
        return path.startswith(prefix) and self.excluded(os.fsdecode(path[len(prefix) :]))


class _Emitter(InotifyEmitter):
    def __init__(self, *args: Any, excluded: Excluded = nothing_excluded, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._excluded = excluded

    def on_thread_start(self) -> None:
        # InotifyEmitter.on_thread_start, with our watch group: watchdog has no hook for
        # overflows or for filtering watches, so this one method mirrors its parent's.
        self._inotify = _WatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            on_overflow=self._queue_overflow,
            excluded=self._excluded,
        )

    def _queue_overflow(self) -> None:
        self.queue_event(OverflowEvent(self.watch.path))


class PollingObserver(BaseObserver):
    """Polls the folder `root` by folder mtimes (`poller.PollingEmitter`) every `timeout`
    seconds; `excluded(path relative to root)` folders are never listed."""

    def __init__(self, root: str, excluded: Excluded = nothing_excluded, *, timeout: float) -> None:
        super().__init__(PollingEmitter, timeout=timeout, excluded=excluded)


# Also keeps open and close-without-write out of the kernel queue (settle.WRITES).
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    OverflowEvent,
]

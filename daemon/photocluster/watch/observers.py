"""The watchdog side: an enqueue-only handler, the event filter, and an inotify observer that
reports kernel queue overflows (watchdog 7 logs them and rebuilds its watches but tells no
handler, so the emitter below queues an overflow event in-band)."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable
from dataclasses import dataclass, field

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
from watchdog.observers.inotify_c import InotifyFD

OVERFLOW = "overflow"


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
    (watchdog's own InotifyObserver fixes its emitter) with the overflow-reporting emitter."""

    def __init__(self) -> None:
        self._inotify_fd = InotifyFD()  # one kernel queue shared by this observer's emitters
        self._inotify_fd.start()
        super().__init__(_OverflowReportingEmitter, inotify_fd=self._inotify_fd)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._inotify_fd.stop()
        self._inotify_fd.join()


def _ignore() -> None:
    pass


@dataclass
class _OverflowReportingGroup(InotifyWatchGroup):
    on_overflow: Callable[[], None] = field(default=_ignore)

    def on_queue_overflow(self) -> None:
        super().on_queue_overflow()
        if self.is_active:
            self.on_overflow()


class _OverflowReportingEmitter(InotifyEmitter):
    def on_thread_start(self) -> None:
        # InotifyEmitter.on_thread_start, with the overflow-reporting watch group: watchdog has
        # no hook for overflows, so this one method mirrors its parent's.
        self._inotify = _OverflowReportingGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            on_overflow=self._queue_overflow,
        )

    def _queue_overflow(self) -> None:
        self.queue_event(OverflowEvent(self.watch.path))


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

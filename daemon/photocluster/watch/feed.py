"""The change feed: one observer on the photo root, its events settled into `Change`s.

The watchdog handler only enqueues (observer thread); `ChangeFeed.get_batch`, called by the
worker, hands the queued events to the `Settler` and returns what has settled. Events are
hints: the daemon's reconciliation is the truth. A vanished, unmounted or replaced root pauses
the feed and drops what was pending, so it never turns into deletions; once the root is back
and holds files again, the feed asks for a rescan of everything. When inotify runs out of
watches (fs.inotify.max_user_watches) for a large tree, the feed polls instead, says so in the
log and in `problem` (shown by `status`), and asks for a rescan of everything.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from watchdog.events import FileSystemEvent
from watchdog.observers.api import BaseObserver

from photocluster.config import WATCH_MODES
from photocluster.watch.change import Change, nothing_excluded
from photocluster.watch.mounts import filesystem_type, is_remote
from photocluster.watch.observers import EVENT_FILTER, Enqueue, InotifyObserver, PollingObserver
from photocluster.watch.settle import Settler

logger = logging.getLogger(__name__)



class ChangeFeed:
    """Watches `photo_root` and hands out settled changes; a context manager owning the threads.

    `is_candidate` decides from a file's base name whether it may be a photo (the daemon passes
    `photos.is_candidate`); files inside hidden folders are never candidates, as in
    `photos.walk`. A folder `excluded(path relative to the root)` names is neither watched nor
    listed and nothing at or below it is a change (the daemon passes `Excluder.excludes`).
    `clock` times the settling; waits in `get_batch` are real time.
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
        excluded: Callable[[str], bool] = nothing_excluded,
    ) -> None:
        if mode not in WATCH_MODES:
            raise ValueError(f"watch mode must be one of {', '.join(WATCH_MODES)}, got {mode!r}")
        self._root = os.path.abspath(photo_root)
        self._mode = mode
        self._settle = settle_seconds
        self._poll_interval = poll_interval
        self._is_candidate = is_candidate
        self._excluded = excluded
        self._clock = clock
        # How often a waiting get_batch looks at the queue and the root.
        self._tick = min(max(settle_seconds / 4, 0.02), 0.25)
        self._events: queue.SimpleQueue[FileSystemEvent] = queue.SimpleQueue()
        self._handler = Enqueue(self._events)
        self._settler = Settler(self._root, is_candidate, settle_seconds, excluded)
        self._observer: BaseObserver | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the watched root
        self._refused: tuple[int, int] | None = None  # an empty root we logged as suspect
        self._present = False
        self._entered = False
        self._polling = False  # the running observer polls: its deletions come from listings
        self._limit_hit = threading.Event()  # set on whichever thread inotify refused a watch
        self._inotify_refused = False  # the watch limit was hit: poll from now on
        self.problem: str | None = None  # why the feed does not watch as configured

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
        if self._limit_hit.is_set() and not self._polling and self._present:
            return self._switch_to_polling()
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
        self._settler = Settler(watch_path, self._is_candidate, self._settle, self._excluded)
        try:
            self._observer, self._polling = self._start_observer(watch_path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        self._settler.verify_deletes = self._polling
        self._identity, self._present = identity, True
        return True

    def _start_observer(self, watch_path: str) -> tuple[BaseObserver, bool]:
        """A started observer on `watch_path`, and whether it polls."""
        mode = self._mode
        if mode == "auto":
            fstype = filesystem_type(watch_path)
            mode = "polling" if fstype is not None and is_remote(fstype) else "inotify"
        if mode == "inotify" and not self._inotify_refused:
            self._limit_hit.clear()
            try:
                observer = self._started(
                    InotifyObserver(self._excluded, on_limit=self._limit_hit.set), watch_path
                )
            except OSError as error:
                if error.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise
                self._refuse_inotify(watch_path, str(error))
            else:
                if not self._limit_hit.is_set():
                    logger.info("watching %s with inotify", watch_path)
                    return observer, False
                self._stop(observer)
                self._refuse_inotify(watch_path, "")
        polling = PollingObserver(watch_path, self._excluded, timeout=self._poll_interval)
        observer = self._started(polling, watch_path)
        logger.info("watching %s by polling every %g s", watch_path, self._poll_interval)
        return observer, True

    def _refuse_inotify(self, watch_path: str, error: str) -> None:
        """inotify cannot cover the tree: say why and how to fix it, and poll from now on."""
        if self._limit_hit.is_set():
            self._inotify_refused = True
            self.problem = watch_limit_message(watch_path)
            logger.warning("%s", self.problem)
        else:
            logger.warning("cannot watch %s with inotify (%s); polling instead", watch_path, error)

    def _switch_to_polling(self) -> list[Change]:
        """The watch limit was hit while running (a new folder): poll the whole tree instead,
        keeping what is settling, and rescan everything for what went unseen meanwhile."""
        watch_path = os.path.realpath(self._root)
        for event in self._drain():
            self._settler.add(event, self._clock())
        observer, self._observer = self._observer, None
        if observer is not None:
            self._stop(observer)
        self._refuse_inotify(watch_path, "")
        try:
            self._observer = self._started(
                PollingObserver(watch_path, self._excluded, timeout=self._poll_interval),
                watch_path,
            )
        except OSError:
            self._present = False  # the next look at the root resumes or pauses
            return []
        self._polling = self._settler.verify_deletes = True
        logger.info("watching %s by polling every %g s", watch_path, self._poll_interval)
        return [Change("rescan", "")]

    @staticmethod
    def _stop(observer: BaseObserver) -> None:
        observer.stop()
        if observer.is_alive():
            observer.join()

    def _started(self, observer: BaseObserver, watch_path: str) -> BaseObserver:
        observer.schedule(self._handler, watch_path, recursive=True, event_filter=EVENT_FILTER)
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
            self._stop(observer)
        self._drain()  # whatever the old observer queued describes a root we no longer trust

    def _drain(self) -> list[FileSystemEvent]:
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events



def watch_limit_message(watch_path: str) -> str:
    """What to tell the person whose tree has more folders than inotify may watch."""
    try:
        current = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        current = 0
    wanted = max(524_288, 4 * current)
    return (
        f"inotify cannot watch every folder below {watch_path}: the limit of {current} watches "
        f"(fs.inotify.max_user_watches) is reached, so the folder is polled instead. To use "
        f"inotify, raise it with `sysctl fs.inotify.max_user_watches={wanted}` and for good "
        f"with `echo fs.inotify.max_user_watches={wanted} > "
        "/etc/sysctl.d/90-photocluster.conf`, then restart photocluster"
    )


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


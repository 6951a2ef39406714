"""Polling by folder mtimes: the watcher for network and FUSE mounts, where inotify hears
nothing of what the server or other clients change.

watchdog's poller lists every folder and lstat()s every file on every poll: ~1.2 s of CPU per
poll at 100k photos, every 10 s. But an entry added to, removed from or renamed in a folder
changes that folder's mtime, so a poll here stats each folder and lists only those whose mtime
(or inode) moved; a 100k-photo tree in 100 folders costs 100 stats a poll. A folder that changed
is listed once more at the next poll, so an entry added within the same mtime tick as a listing
is still seen. What this cannot see is a file rewritten in place (its folder's mtime stays):
the daemon's periodic full rescan (`watch.rescan_every_minutes`) finds those. The events are
watchdog's own types: created, deleted and modified files, moves (matched by inode across the
folders that changed), created, deleted and moved folders. When a poll costs more than
`CPU_SHARE` of the interval (a tree of many thousands of folders, a slow network file system),
the next one waits longer, so polling never takes more than that share of a core.

Memory: each folder keeps its files' names as one string and their (inode, size, mtime) as
one array, about 60 bytes a file. A listing stats what it lists (lstat, as watchdog does for
every file on every poll), so a rename is told from a new file that reuses a deleted one's
inode, and a file replaced in a folder that changed anyway is seen too.
"""

from __future__ import annotations

import logging
import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
)
from watchdog.observers.api import DEFAULT_EMITTER_TIMEOUT, EventEmitter, EventQueue, ObservedWatch

from photocluster.watch.change import nothing_excluded

logger = logging.getLogger(__name__)

CPU_SHARE = 0.05  # of one core, at most, on average
Excluded = Callable[[str], bool]  # a path relative to the root -> never list it


Look = tuple[int, int, int]  # a file's (inode, size, mtime_ns): what a rename keeps


@dataclass
class _Folder:
    """What the last listing of one folder found."""

    inode: int
    mtime_ns: int
    names: str  # its other entries' names, joined by "\0"
    looks: array[int]  # their (inode, size, mtime_ns), flattened, in the same order
    folders: dict[str, int]  # subfolder name -> inode
    recheck: bool  # listed at a new mtime: list once more at the next poll

    def files(self) -> dict[str, Look]:
        if not self.names:
            return {}
        looks = self.looks
        triples = zip(looks[0::3], looks[1::3], looks[2::3], strict=True)
        return dict(zip(self.names.split("\0"), triples, strict=True))


@dataclass
class _Found:
    """One poll's differences, paths relative to the root; files keyed by their look and
    folders by (inode, mtime_ns), so that what went and what came pair up as moves (a new file
    that reuses a deleted one's inode has another mtime)."""

    gone: dict[Look, str] = field(default_factory=dict)
    came: dict[Look, str] = field(default_factory=dict)
    modified: list[str] = field(default_factory=list)
    gone_folders: dict[tuple[int, int], str] = field(default_factory=dict)
    new_folders: dict[tuple[int, int], str] = field(default_factory=dict)


class FolderPoller:
    """The folders below `root` (neither hidden nor `excluded`) and what changed in them.
    Single-threaded: the emitter's."""

    def __init__(self, root: str, excluded: Excluded = nothing_excluded) -> None:
        self._root = root.rstrip("/") or "/"
        self._excluded = excluded
        self._folders: dict[str, _Folder] = {}  # relative path ("" the root) -> listing

    @property
    def folder_count(self) -> int:
        return len(self._folders)

    def start(self) -> None:
        """The first listing of the whole tree; reports nothing. OSError when the root cannot
        be listed."""
        self._folders = {}
        self._listing("")  # raises what makes the root unlistable
        self._list_tree("", None)

    def poll(self) -> list[FileSystemEvent]:
        """What changed since the last poll, as watchdog events in an order that applies
        (deletions, moves, creations, then folders). FileNotFoundError or NotADirectoryError
        when the root is gone; another OSError when it cannot be looked at now (kept as it
        was, tried again at the next poll)."""
        os.stat(self._root)  # the root first: gone, it must not read as everything deleted
        found = _Found()
        for path in list(self._folders):
            if path in self._folders:  # not dropped with a folder above it this poll
                self._look(path, found)
        return self._events(found)

    def _look(self, path: str, found: _Found) -> None:
        folder = self._folders[path]
        try:
            info = os.stat(self._absolute(path))
        except OSError:
            return  # gone or unreadable: the listing of the folder above says what happened
        moved = (info.st_ino, info.st_mtime_ns) != (folder.inode, folder.mtime_ns)
        if not moved and not folder.recheck:
            return
        try:
            files, folders = self._listing(path)
        except OSError as error:
            logger.debug("cannot list %r: %s", path, error)
            return
        self._compare(path, folder, files, folders, found)
        self._folders[path] = _folder(info, files, folders, recheck=moved)

    def _compare(self, path: str, old: _Folder, files: dict[str, Look],
                 folders: dict[str, int], found: _Found) -> None:
        before = old.files()
        for name, look in before.items():
            if name not in files:
                found.gone[look] = _join(path, name)
            elif files[name] != look:  # rewritten, or replaced under its name
                found.modified.append(_join(path, name))
        for name, look in files.items():
            if name not in before:
                found.came[look] = _join(path, name)
        for name, inode in old.folders.items():
            if folders.get(name) != inode:
                self._drop_tree(_join(path, name), found)
        for name, inode in folders.items():
            if old.folders.get(name) != inode:
                self._list_tree(_join(path, name), found)

    def _list_tree(self, path: str, found: _Found | None) -> None:
        """List `path` and every folder below it; with `found`, they and their files are new."""
        pending = [path]
        while pending:
            current = pending.pop()
            try:
                info = os.stat(self._absolute(current))
                files, folders = self._listing(current)
            except OSError as error:
                logger.debug("cannot list %r: %s", current, error)
                continue
            self._folders[current] = _folder(info, files, folders, recheck=True)
            if found is not None:
                found.came.update((look, _join(current, name)) for name, look in files.items())
                if current == path:
                    found.new_folders[(info.st_ino, info.st_mtime_ns)] = current
            pending += [_join(current, name) for name in folders]

    def _drop_tree(self, path: str, found: _Found) -> None:
        """`path` and everything below it went (or was replaced): its files are gone."""
        top = self._folders.get(path)
        if top is not None:
            found.gone_folders[(top.inode, top.mtime_ns)] = path
        pending = [path]
        while pending:
            current = pending.pop()
            folder = self._folders.pop(current, None)
            if folder is None:
                continue
            found.gone.update((look, _join(current, name))
                              for name, look in folder.files().items())
            pending += [_join(current, name) for name in folder.folders]

    def _listing(self, path: str) -> tuple[dict[str, Look], dict[str, int]]:
        """(file name -> look, subfolder name -> inode) of one folder, leaving out hidden
        folders and excluded entries; a symlink (to a folder too) counts as a file, as it
        does for `photos.walk` (which then skips it)."""
        files, folders = {}, {}
        with os.scandir(self._absolute(path)) as entries:
            for entry in entries:
                if self._excluded(_join(path, entry.name)):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        folders[entry.name] = entry.inode()
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:  # gone since the listing
                    continue
                files[entry.name] = (info.st_ino, info.st_size, info.st_mtime_ns)
        return files, folders

    def _events(self, found: _Found) -> list[FileSystemEvent]:
        moved = {look: path for look, path in found.came.items() if look in found.gone}
        folders_moved = {key: path for key, path in found.new_folders.items()
                         if key in found.gone_folders}
        absolute = self._absolute
        events: list[FileSystemEvent] = [
            FileDeletedEvent(absolute(path))
            for look, path in found.gone.items() if look not in moved]
        events += [FileMovedEvent(absolute(found.gone[look]), absolute(path))
                   for look, path in moved.items()]
        events += [FileCreatedEvent(absolute(path))
                   for look, path in found.came.items() if look not in moved]
        events += [FileModifiedEvent(absolute(path)) for path in found.modified]
        events += [DirDeletedEvent(absolute(path))
                   for key, path in found.gone_folders.items() if key not in folders_moved]
        events += [DirMovedEvent(absolute(found.gone_folders[key]), absolute(path))
                   for key, path in folders_moved.items()]
        events += [DirCreatedEvent(absolute(path))
                   for key, path in found.new_folders.items() if key not in folders_moved]
        return events

    def _absolute(self, path: str) -> str:
        return f"{self._root}/{path}" if path else self._root


def _folder(info: os.stat_result, files: dict[str, Look], folders: dict[str, int],
            recheck: bool) -> _Folder:
    looks = array("q", [value for look in files.values() for value in look])
    return _Folder(info.st_ino, info.st_mtime_ns, "\0".join(files), looks, folders, recheck)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


class PollingEmitter(EventEmitter):
    """watchdog's emitter seam around a `FolderPoller`: the first listing on the emitter's own
    thread (a large tree must not hold up the daemon's start), then a poll every `timeout`
    seconds, or every `spent / CPU_SHARE` seconds when a poll took `spent` of CPU."""

    def __init__(self, event_queue: EventQueue, watch: ObservedWatch,
                 timeout: float = DEFAULT_EMITTER_TIMEOUT,
                 event_filter: list[type[FileSystemEvent]] | None = None, *,
                 excluded: Excluded = nothing_excluded) -> None:
        super().__init__(event_queue, watch, timeout=timeout, event_filter=event_filter)
        self._poller = FolderPoller(watch.path, excluded)
        self._failing, self._wait = False, float(timeout)

    def on_thread_start(self) -> None:
        # On the starting thread, as watchdog's own poller does: whatever changes once the
        # observer has started is reported. Raises OSError when the root cannot be listed.
        self._poller.start()

    def queue_events(self, timeout: float) -> None:
        if self.stopped_event.wait(self._wait):
            return
        began = time.thread_time()
        try:
            events = self._poller.poll()
        except (FileNotFoundError, NotADirectoryError):
            self.queue_event(DirDeletedEvent(self.watch.path))  # the feed pauses
            self.stop()
            return
        except OSError as error:  # a network share briefly unreachable: try again
            if not self._failing:
                logger.warning("cannot poll %r, retrying: %s", self.watch.path, error)
            self._failing, self._wait = True, timeout
            return
        self._failing = False
        for event in events:
            self.queue_event(event)
        spent = time.thread_time() - began
        self._wait = max(timeout, spent / CPU_SHARE)
        if self._wait > timeout:
            logger.debug("a poll of %d folders took %.2f s of CPU; next in %.0f s",
                         self._poller.folder_count, spent, self._wait)

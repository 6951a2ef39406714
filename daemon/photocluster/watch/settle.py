"""Settling: raw watchdog events in, `Change`s out once files are quiet and stable.

Single-threaded and clock-injected, so settling is tested without sleeps. A photo becomes an
"upsert" once no event has touched it for `settle_seconds` and two looks at its size and mtime
agree; a rename inside the tree is a "move" at once; a deletion is a "delete"; a folder
appearing or vanishing and an inotify overflow ask for a "rescan" of that subtree once it is
quiet.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import (
    EVENT_TYPE_ATTRIB,
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
)

from photocluster.watch.change import Change, is_within, nothing_excluded
from photocluster.watch.observers import OVERFLOW

logger = logging.getLogger(__name__)

_RESCAN_MAX_WAIT = 10  # a rescan waits at most this many settle periods for a quiet subtree
# Opened and closed-without-writing are not changes: reading photos must not echo back.
_WRITES = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_ATTRIB, EVENT_TYPE_CLOSED})
_Look = tuple[int, int, int]  # file type bits, size, mtime_ns
_MISSING: _Look = (0, -1, -1)


@dataclass
class _PendingFile:
    since: float  # clock time of the last event, or of the last look that differed
    look: _Look | None = None  # None until the first look, taken on the pass after the event


@dataclass
class _PendingRescan:
    first: float
    since: float  # clock time of the last event inside the subtree


class Settler:
    """Turns raw events into changes. Single-threaded; times come from the caller's clock."""

    def __init__(
        self,
        root: str,
        is_candidate: Callable[[str], bool],
        settle: float,
        excluded: Callable[[str], bool] = nothing_excluded,
    ) -> None:
        self._root = root
        self._prefix = root.rstrip("/") + "/"
        self._is_candidate = is_candidate
        self._excluded = excluded  # relative path -> below an excluded folder: no event counts
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
        if event.event_type == OVERFLOW:
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
        if any(is_within(directory, pending) for pending in self._rescans):
            return
        for covered in [pending for pending in self._rescans if is_within(pending, directory)]:
            del self._rescans[covered]
        self._rescans[directory] = _PendingRescan(first=now, since=now)

    def _note_activity(self, path: str, now: float) -> None:
        for directory, pending in self._rescans.items():
            if is_within(path, directory):
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
        """The path relative to the root; None outside it or at or below an excluded path."""
        path = os.fsdecode(raw_path)
        if path == self._root:
            return ""
        if not path.startswith(self._prefix):
            return None
        relative = path[len(self._prefix) :]
        return None if self._excluded(relative) else relative

    def _is_photo(self, path: str) -> bool:
        *folders, name = path.split("/")
        return not any(folder.startswith(".") for folder in folders) and self._is_candidate(name)


def _look(path: str) -> _Look:
    """What a path is now, without following a symlink (a symlink is not a photo)."""
    try:
        info = os.lstat(path)
    except OSError:
        return _MISSING
    return stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns


"""Folders and files the daemon never looks at: NAS thumbnails, recycle bins, sync clutter.

A pattern is a glob on paths relative to the photo root, POSIX `/`, matched case-sensitively
(`fnmatchcase` rules: `*`, `?`, `[...]`, `[!...]`). A pattern without `/` matches any single
path component at any depth (`@eaDir` excludes every `@eaDir` folder and all below it); a
pattern with `/` is anchored at the root and matches a path or any of its ancestors (`a/b`
excludes `a/b` and everything under it, `**` stands for any number of folders: `**/Trash`). A
leading `/` anchors a pattern without another `/` (`/Trash`: only the root's `Trash`); a
trailing `/` is ignored: patterns match folders and files alike.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable

# Synology (@eaDir, #recycle, #snapshot, SYNOFILE_THUMB_*), QNAP (@__thumb, .@__thumb),
# Windows ($RECYCLE.BIN in either spelling, Thumbs.db), Linux file managers (.thumbnails) and
# Android (.trashed-*), Lightroom's catalog folders (their previews are JPEGs), and the trash
# folder of a Google Photos Takeout export in English ("Trash", "Bin"), German, French and
# Spanish. Hidden names are skipped by the walker anyway; they are listed for the record.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "@eaDir",
    "@__thumb",
    ".@__thumb",
    "#recycle",
    "#snapshot",
    "$RECYCLE.BIN",
    "$Recycle.Bin",
    "SYNOFILE_THUMB_*",
    "Thumbs.db",
    ".thumbnails",
    ".trashed-*",
    "Lightroom Catalog*",
    "Trash",
    "Bin",
    "Papierkorb",
    "Corbeille",
    "Papelera",
)

_WILDCARDS = frozenset("*?[")


class Excluder:
    """The compiled form of a list of patterns; `excludes` runs once per directory entry.

    Raises ValueError for a pattern `pattern_problem` refuses (config checks them first).
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        literal, component, rooted = [], [], []
        for pattern in patterns:
            problem = pattern_problem(pattern)
            if problem is not None:
                raise ValueError(f"exclude pattern {pattern!r}: {problem}")
            anchored, body = _split_anchor(pattern)
            if anchored:
                rooted.append(_rooted_regex(body))
            elif _WILDCARDS.isdisjoint(body):
                literal.append(body)
            else:
                component.append(_component_regex(body))
        self._names = frozenset(literal)
        self._component = _compile_any(component, "")
        # A rooted pattern excludes what it matches and everything below it.
        self._rooted = _compile_any(rooted, "(?:/|$)")
        # Many files share a folder: its answer is worked out once (a tree has far fewer
        # folders than files; the bound keeps a huge one from growing the cache without end).
        self._folder_excluded = functools.lru_cache(maxsize=1 << 16)(self._excluded)
        self._prefix = ""  # where the paths given to `excludes` are relative to

    def excludes(self, relative_path: str) -> bool:
        """True when the POSIX path relative to the photo root ("" is the root, never excluded)
        or one of its ancestors matches a pattern."""
        return bool(relative_path) and self._excluded(self._prefix + relative_path)

    def below(self, folder: str) -> Excluder:
        """This excluder for a walk of the subtree `folder` (relative to the photo root): its
        `excludes` takes paths relative to `folder`. Shares the compiled patterns."""
        view = copy.copy(self)
        view._prefix = self._prefix + folder.strip("/") + "/" if folder.strip("/") else self._prefix
        return view

    def _excluded(self, path: str) -> bool:
        folder, _, name = path.rpartition("/")
        if name in self._names or (self._component and self._component.fullmatch(name)):
            return True
        if self._rooted and self._rooted.match(path):
            return True
        return bool(folder) and self._folder_excluded(folder)


def nothing_excluded(relative_path: str) -> bool:
    """The `excludes` of an empty pattern list."""
    return False


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be used, in a few words; None when it can."""
    if not pattern or "\0" in pattern:
        return "must be a non-empty string without NUL characters"
    _, body = _split_anchor(pattern)
    parts = body.split("/")
    if not body or "" in parts:
        return "must name a file or folder (no empty path components)"
    if any(part in (".", "..") for part in parts):
        return "'.' and '..' are not allowed: patterns are relative to the photo folder"
    if all(part.strip("*") == "" for part in parts):
        return "would exclude the whole photo folder"
    return None


def _split_anchor(pattern: str) -> tuple[bool, str]:
    """(anchored at the root, the pattern without its leading and trailing `/`)."""
    body = pattern.rstrip("/") if pattern.strip("/") else pattern
    if body.startswith("/"):
        return True, body[1:]
    return "/" in body, body


def _compile_any(regexes: list[str], tail: str) -> re.Pattern[str] | None:
    if not regexes:
        return None
    return re.compile("(?:" + "|".join(regexes) + ")" + tail, re.DOTALL)


def _rooted_regex(body: str) -> str:
    """A regex for an anchored pattern; `**` as a whole component spans folders."""
    parts = body.split("/")
    pieces = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:[^/]*/)*")
        else:
            pieces.append(_component_regex(part) + ("" if last else "/"))
    return "".join(pieces)


def _component_regex(part: str) -> str:
    """fnmatch's translation of one path component, with wildcards that never cross `/`."""
    pieces = []
    index = 0
    while index < len(part):
        char = part[index]
        index += 1
        if char == "*":
            pieces.append("[^/]*")
        elif char == "?":
            pieces.append("[^/]")
        elif char == "[":
            cls, index = _char_class(part, index)
            pieces.append(cls)
        else:
            pieces.append(re.escape(char))
    return "".join(pieces)


def _char_class(part: str, start: int) -> tuple[str, int]:
    """The regex for the `[...]` that opened just before `start`, and the index after it; a
    `[` without its `]` is a literal, as in fnmatch."""
    end = start
    if end < len(part) and part[end] == "!":
        end += 1
    if end < len(part) and part[end] == "]":
        end += 1
    end = part.find("]", end)
    if end == -1:
        return re.escape("["), start
    body = re.sub(r"([&~|\[])", r"\\\1", part[start:end].replace("\\", "\\\\"))
    if body.startswith("!"):
        body = "^/" + body[1:]
    elif body.startswith("^"):
        body = "\\" + body
    return "(?!/)[" + body + "]", end + 1

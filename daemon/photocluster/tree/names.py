"""Link names: a photo's own file name, or that name behind the date it was taken, and the
tagged variants that tell apart two photos of one name in one folder."""

from __future__ import annotations

import hashlib
import os
import posixpath
from datetime import datetime, timedelta, timezone

from photocluster.records import Taken

NAME_MAX = 255  # bytes in one file name (Linux, macOS)
_TAG_LENGTHS = (8, 16, 40)  # hex digits of sha1(path); longer ones only if a shorter one clashes
_STAMP = "%Y-%m-%d %H.%M.%S"
_NO_STAMP = "0000-00-00 00.00.00"  # a time no calendar can show (a wild mtime) sorts first
_LONGEST_KEPT_EXTENSION = 16  # bytes; a longer "extension" is cut like the rest of the name


def link_name(photo: str, taken: Taken | None, dated: bool) -> str:
    """The name a link to `photo` prefers: its file name, behind its taken time when `dated`
    (so a folder sorts chronologically in any file manager) and the time is known."""
    base = posixpath.basename(photo)
    return dated_name(taken, base) if dated and taken is not None else base


def candidate_names(photo: str, preferred: str | None = None) -> list[str]:
    """The names a link to `photo` may have, in order: `preferred` (default: its file name),
    then that name tagged with the hash of the photo's path."""
    base = preferred or posixpath.basename(photo)
    stem, suffix = posixpath.splitext(base)
    digest = hashlib.sha1(os.fsencode(photo), usedforsecurity=False).hexdigest()
    return [base] + [_fit_tag(stem, f"~{digest[:length]}{suffix}") for length in _TAG_LENGTHS]


def _fit_tag(stem: str, tail: str) -> str:
    """stem + tail, the stem shortened until the name fits in NAME_MAX bytes."""
    while stem and len(os.fsencode(stem + tail)) > NAME_MAX:
        stem = stem[:-1]
    return stem + tail


def dated_name(taken: Taken, original_name: str) -> str:
    """`original_name` behind the time it was taken: "2023-07-14 18.02.11 IMG_1234.jpg".

    The time is shown in the zone where the photo was taken when `taken` knows its offset,
    else in this machine's local zone. The result fits NAME_MAX bytes: the original's stem is
    cut (on a character boundary) and its extension kept. Raises ValueError for an empty name
    or one with "/".
    """
    if not original_name or "/" in original_name:
        raise ValueError(f"not a file name: {original_name!r}")
    prefix = _stamp(taken) + " "
    return prefix + fit_name(original_name, NAME_MAX - len(prefix.encode()))


def _stamp(taken: Taken) -> str:
    offset = taken.offset_minutes
    zone = timezone(timedelta(minutes=offset)) if offset is not None else None
    try:
        return datetime.fromtimestamp(taken.at, zone).strftime(_STAMP)
    except (ValueError, OverflowError, OSError):
        return _NO_STAMP


def fit_name(name: str, budget: int) -> str:
    """`name` in at most `budget` bytes (as the file system sees them), extension kept."""
    raw = os.fsencode(name)
    if len(raw) <= budget:
        return name
    stem, extension = os.path.splitext(raw)
    if len(extension) > _LONGEST_KEPT_EXTENSION:
        stem, extension = raw, b""
    keep = budget - len(extension)
    while keep > 0 and (stem[keep] & 0xC0) == 0x80:  # never split a UTF-8 character
        keep -= 1
    return os.fsdecode(stem[:keep] + extension)

"""Identical copies: which of a content's paths stands for it in the cluster tree.

Takeout puts one photo in `Photos from 2022/` and in every album that holds it; an rclone mount
of Google Photos shows it under `media/all`, `media/by-year/…`, `media/by-month/…`; backup apps
upload it twice. Each content gets one link, pointing at its *canonical* copy: a copy in a
date folder (a path component that is a year, a date, or "Photos from <year>") before one in an
album folder, then the shortest path, then the first in sorted order. The store applies the rule
when a content gets its first copies and again only when its canonical copy is deleted or moved,
so a link does not jump because a new copy appeared; ingest reads paths in this order, so the
copies of a first scan arrive best first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# "2023", "2023-07", "2023-07-14", "2023_07", "Photos from 2023", "by-year/2023" (its "2023")
_DATED = re.compile(r"(?:photos from )?(?:19|20)\d\d(?:[-_. ]\d\d){0,2}", re.IGNORECASE)


def canonical_key(path: str) -> tuple[int, int, str]:
    """Sort key of the rule: (0 in a date folder else 1, length, path)."""
    folders = path.split("/")[:-1]
    dated = any(_DATED.fullmatch(folder) for folder in folders)
    return (0 if dated else 1, len(path), path)


def best(paths: Iterable[str]) -> str:
    """The canonical copy among `paths` (not empty)."""
    return min(paths, key=canonical_key)

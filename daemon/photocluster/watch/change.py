"""What the feed hands the worker: one settled change below the photo root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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



def is_within(path: str, directory: str) -> bool:
    """True when the relative path `path` is `directory` or lies below it ("" is the root)."""
    return directory == "" or path == directory or path.startswith(directory + "/")


def nothing_excluded(relative_path: str) -> bool:
    """The exclusion rule of a watcher that excludes nothing."""
    return False

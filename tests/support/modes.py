"""File modes: what a test of private outputs reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def mode_of(path: Path) -> int:
    """The permission bits of `path` itself (a symlink's own, not its target's)."""
    return stat.S_IMODE(os.lstat(path).st_mode)

"""Config files: the small one most tests run with, and ones that are bad in each way a person
or a disk can make them (the config and command-line tests)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

NOBODY = 65534


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A config.toml in tmp_path with photos/, clusters and state beside it."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[paths]\nphotos = "photos"\nclusters = "clusters"\nstate = "state"\n'
        "[clustering]\nk_min = 2\nk_max = 6\n" + extra,
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as `nobody` when the tests run as root, who may read any file (the
    effective uid only, so the block's end gives root back)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


def bad_config(tmp_path: Path, kind: str) -> Path:
    """A config path that is bad in the way `kind` names."""
    path = tmp_path / "config.toml"
    if kind == "missing":
        return path
    if kind == "a directory":
        path.mkdir()
    elif kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a symlink loop":
        path.symlink_to(path)
    elif kind == "unreadable":
        path.write_text("[log]\n", encoding="utf-8")
        path.chmod(0)
    else:
        path.write_bytes(BAD_CONTENTS[kind])
    return path


BAD_CONTENTS = {
    "not UTF-8": '[paths]\nphotos = "Fotos \xe9t\xe9"\n'.encode("latin-1"),
    "not TOML": b"[paths\nphotos = 1\n",
    "binary": bytes(range(256)),
    "nested too deeply": b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "too large": b"# padding\n" * 200_000,
    "a path for an unknown user": b'[paths]\nphotos = "~no-such-user-here/Pictures"\n',
    "a NUL in a path": b'[paths]\nstate = "st\\u0000ate"\n',
}
BAD_KINDS = ["missing", "a directory", "a FIFO", "a symlink loop", "unreadable", *BAD_CONTENTS]
# What the one problem says, by kind: a person can act on it.
SAYS = {
    "missing": "No such file",
    "a directory": "a directory",
    "a FIFO": "not a regular file",
    "a symlink loop": "symbolic links",
    "unreadable": "Permission denied",
    "not UTF-8": "not UTF-8 text: byte 0xe9 at offset 24",
    "not TOML": "not valid TOML",
    "binary": "not UTF-8",
    "nested too deeply": "not valid TOML",
    "too large": "larger than",
    "a path for an unknown user": "paths.photos: cannot expand",
    "a NUL in a path": "paths.state: must be a non-empty path string without NUL",
}

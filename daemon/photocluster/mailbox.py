"""Requests from the command line to the running daemon, as files in the state directory.

While the daemon runs it is the catalog's one writer, so `photocluster name|pin|unpin` does not
write the catalog: it posts a request (`<state>/requests/<id>.json`, written atomically, 0600)
and waits for the daemon's answer (`<id>.reply`). The worker looks for requests on each of its
steps (a directory listing; every half second when idle), carries each out as its own verb
would, and answers. A request nobody waits for any more is still carried out; its answer is
deleted after an hour.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photocluster import fsutil

logger = logging.getLogger(__name__)

REQUESTS = "requests"  # in the state directory
_REPLY_KEPT_SECONDS = 3600.0


@dataclass(frozen=True)
class Reply:
    ok: bool
    message: str
    usage: bool = False  # refused as given (a bad name, an unknown cluster): exit 2


def post(state_dir: Path, request: dict[str, Any]) -> str:
    """Leave a request for the daemon; returns its id. Raises OSError when it cannot be
    written."""
    folder = fsutil.private_dir(state_dir / REQUESTS)
    request_id = f"{time.time_ns():020d}-{secrets.token_hex(4)}"  # sorts in posting order
    fsutil.atomic_write(folder / f"{request_id}.json", json.dumps(request).encode())
    return request_id


def wait(state_dir: Path, request_id: str, timeout: float, alive: Callable[[], bool],
         poll: float = 0.1) -> Reply | None:
    """The daemon's answer to a request, or None when none came within `timeout` seconds or
    the daemon stopped (`alive()` false) before answering."""
    reply = state_dir / REQUESTS / f"{request_id}.reply"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            data = json.loads(reply.read_text(encoding="utf-8"))
            reply.unlink()
            return Reply(bool(data["ok"]), str(data["message"]), bool(data.get("usage")))
        if not alive():
            return None
        time.sleep(poll)
    return None


def take(state_dir: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """The daemon's side: the waiting requests, oldest first, each removed as it is read
    (None for one that cannot be read as a request). Old unread answers go."""
    folder = state_dir / REQUESTS
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    taken = []
    for name in names:
        path = folder / name
        if name.endswith(".reply"):
            _drop_if_old(path)
        elif name.endswith(".json") and not name.startswith(fsutil.TEMP_PREFIX):
            taken.append((name.removesuffix(".json"), _read(path)))
            path.unlink(missing_ok=True)
    return taken


def answer(state_dir: Path, request_id: str, reply: Reply) -> None:
    """Leave the answer where the waiting command looks for it (not fsynced: it is read at
    once or never)."""
    data = {"ok": reply.ok, "message": reply.message, "usage": reply.usage}
    fsutil.atomic_write(state_dir / REQUESTS / f"{request_id}.reply",
                        json.dumps(data).encode(), durable=False)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("request %r unreadable: %s", path.name, error)
        return None
    return data if isinstance(data, dict) else None


def _drop_if_old(path: Path) -> None:
    with contextlib.suppress(OSError):
        if time.time() - os.lstat(path).st_mtime > _REPLY_KEPT_SECONDS:
            path.unlink()

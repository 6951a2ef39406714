"""Progress of long work: a backlog's bar or log lines, and the pulse of a long step.

`Progress`: a tqdm bar on a terminal, plain log lines otherwise. Log lines (and the daemon's
systemd STATUS=) carry done/total, rate and ETA at a fixed cadence, so a journal shows steady
progress without one line per photo.

A pulse (`Pulse`) is called between the units of a long step (a batch, a cluster, a chunk of
deletes): the daemon's worker makes it its heartbeat, so systemd's watchdog hears from a worker
that is making progress however long the step, and stops hearing from one that is stuck.
`checkpoint` adds a stop request to a pulse: a step that may be abandoned raises `Stopping`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

logger = logging.getLogger(__name__)

Pulse = Callable[[], None]


def no_pulse() -> None:
    """The pulse when no one listens: the one-shot commands, the tests."""


class Stopping(Exception):
    """A long step was abandoned at a stop request, between two of its units: what it did so
    far is consistent, and the next start redoes the rest."""


def checkpoint(pulse: Pulse, stop: Callable[[], bool] | None) -> Pulse:
    """`pulse`, then raises Stopping when `stop()` says the daemon is stopping: the pulse of a
    step that may be abandoned between two units (a tree rebuild)."""

    def check() -> None:
        pulse()
        if stop is not None and stop():
            raise Stopping("stop requested")

    return check


class Progress:
    """Callable with the number of items just done; `close()` at the end."""

    def __init__(
        self,
        total: int,
        label: str,
        on_status: Callable[[str], None] | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        bar: bool | None = None,
    ) -> None:
        self.total, self.label, self.done = total, label, 0
        self._on_status, self._interval, self._clock = on_status, interval, clock
        self._started = self._last = clock()
        show_bar = sys.stderr.isatty() if bar is None else bar
        self._bar = tqdm(total=total, desc=label, unit="photo") if show_bar and total else None

    def __call__(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._report(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else self._clock()) - self._started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f"{left:.0f} s" if left != float("inf") else "unknown"
        return f"{self.label}: {self.done}/{self.total} photos, {rate:.1f}/s, ETA {eta}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.total:
            self._report(self.line())

    def _report(self, line: str) -> None:
        if self._bar is None:
            logger.info("%s", line)
        if self._on_status is not None:
            self._on_status(line)

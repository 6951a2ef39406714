"""Signals as data: the daemon's main loop reads their numbers; the handlers do nothing.

A Python-level signal handler runs on the main thread between two bytecodes, possibly while
that thread holds a lock (logging's, an Event's, a queue's): a handler that logs or sets an
Event can wait for a lock its own thread holds, for ever. So the handlers installed here are
empty, and the number of each signal reaches the main loop through `signal.set_wakeup_fd`:
Python's C-level handler writes it to a non-blocking socket (async-signal-safe: one write), and
`SignalInbox.wait` reads it with select, with a timeout the main loop chooses.

Chosen over `sigwait` with the signals blocked by `pthread_sigmask`: that needs them blocked in
every thread before it starts, including the threads TensorFlow, OpenMP, FAISS and watchdog
start on their own; a thread that left them unblocked would take a SIGTERM with its default
action, killing the daemon without a clean stop.
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any


def ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing. It exists so that Python installs its C-level handler,
    which writes the signal's number to the wakeup socket (SIG_IGN would drop the signal)."""


class SignalInbox:
    """While entered (on the main thread), `signums` arrive as numbers from `wait`; on exit the
    previous handlers and wakeup fd are restored. Not thread-safe: the main loop's alone."""

    def __init__(self, signums: Iterable[int]) -> None:
        self._signums = tuple(signums)
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1

    def __enter__(self) -> SignalInbox:
        # A full socket (thousands of signals unread) drops the rest; say nothing from C.
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, ignore) for signum in self._signums}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()

    def wait(self, timeout: float) -> list[int]:
        """The signals received since the last call, in order of arrival (empty when none came
        within `timeout` seconds). Repeats of a signal delivered while the kernel still held
        one pending arrive once: Linux merges them."""
        readable, _, _ = select.select([self._reader], [], [], max(timeout, 0.0))
        if not readable:
            return []
        received = bytearray()
        while True:
            try:
                chunk = self._reader.recv(4096)
            except BlockingIOError:
                return list(received)
            if not chunk:
                return list(received)
            received += chunk

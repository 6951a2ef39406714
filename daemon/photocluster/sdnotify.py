"""systemd's notify protocol: datagrams to `$NOTIFY_SOCKET`.

A dozen lines of stdlib cover READY=1, STATUS=, WATCHDOG=1, EXTEND_TIMEOUT_USEC= and
STOPPING=1; a dependency
would cost more than it gives. Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address

    def ready(self) -> None:
        self._send("READY=1")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more before the start-up (or stop) times out; systemd expects the
        next such message within that time, so a start that hangs still fails."""
        self._send(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block: a listener that stops reading must not stall the worker.
                sock.sendto(message.encode(), socket.MSG_DONTWAIT, self._address)
        except OSError as error:  # systemd gone or its queue full: never fatal
            logger.debug("sd_notify %s failed: %s", message.split("=")[0], error)


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec (from WATCHDOG_USEC) when it is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000

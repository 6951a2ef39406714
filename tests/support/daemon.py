"""The daemon harness as a subprocess, systemd's notify socket, and waiting on a condition."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


_STARTED: list[subprocess.Popen[bytes]] = []


@atexit.register
def _kill_leftovers() -> None:
    """A test that failed before stopping its daemon must not leave it running."""
    for process in _STARTED:
        if process.poll() is None:
            process.kill()


class DaemonProcess:
    """The harness as a subprocess; its stderr goes to a log file the test can read."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.harness", str(config)],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        _STARTED.append(self.process)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        wait_until(lambda: self.log.count(text) >= count, timeout, f"log line {text!r}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()


class NotifyListener:
    """systemd's side of NOTIFY_SOCKET: reads datagrams on a thread as systemd would, noting
    when each arrived (time.monotonic)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def messages(self) -> list[str]:
        return [message for _, message in self.received]

    def times_of(self, message: str) -> list[float]:
        return [at for at, text in self.received if text == message]

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), message))

    def close(self) -> list[str]:
        self._done.set()
        self._thread.join()
        self.sock.close()
        return self.messages


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)

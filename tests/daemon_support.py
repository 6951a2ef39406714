"""Starting the daemon harness and checking that catalog, index and tree agree."""

from __future__ import annotations

import atexit
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from photocluster import photos
from photocluster.store import Store
from photocluster.tree import ClusterTree

REPO = Path(__file__).resolve().parents[1]


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
            [sys.executable, "-m", "tests.daemon_harness", str(config)],
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


def catalog_paths(state: Path) -> dict[str, str | None]:
    """photo path -> cluster, for photos with a vector (read-only, safe while running)."""
    if not (state / "catalog.sqlite").exists():
        return {}
    store = Store.open_readonly(state)
    try:
        return {r.path: r.cluster for r in store.files() if r.error is None}
    finally:
        store.close()


def linked(clusters: Path, photo_root: Path) -> dict[str, str]:
    """photo path -> cluster from the tree; raises on a photo linked twice."""
    plan = ClusterTree(clusters, photo_root).read_plan()
    result: dict[str, str] = {}
    for cluster, links in plan.items():
        for photo in links.values():
            assert photo not in result, f"{photo} is linked twice"
            result[photo] = cluster
    return result


def contents_on_disk(root: Path) -> dict[str, set[str]]:
    """content hash -> the paths holding it: identical copies are one photo (photos and videos
    outside the default excluded folders, as the daemon with a default config sees them)."""
    groups: dict[str, set[str]] = {}
    for rel, _ in photos.walk(root, photos.Excluder(photos.DEFAULT_EXCLUDES), photos.is_media):
        try:
            digest = hashlib.blake2b((root / rel).read_bytes(), digest_size=16).hexdigest()
        except OSError:  # vanished meanwhile
            continue
        groups.setdefault(digest, set()).add(rel)
    return groups


def all_linked(base: Path) -> bool:
    """Every distinct photo on disk is linked exactly once, through one of its copies."""
    try:
        tree = set(linked(base / "clusters", base / "photos"))
    except (OSError, AssertionError):
        return False
    groups = contents_on_disk(base / "photos").values()
    on_disk = set().union(*groups)
    return tree <= on_disk and all(len(tree & copies) == 1 for copies in groups)


def assert_consistent(base: Path) -> None:
    """With the daemon stopped: disk, catalog, index and tree agree; no dangling links."""
    on_disk = set().union(*contents_on_disk(base / "photos").values())
    with Store(base / "state") as store:
        records = [r for r in store.files() if r.error is None]
        members = [r for r in records if r.still is None]  # companions are not clustered
        fingerprint = members[0].fingerprint if members else ""
        ids, _ = store.vectors(fingerprint or "")
        assert {r.path for r in records} == on_disk
        assert sorted(int(i) for i in ids) == sorted({r.content for r in members if r.content})
        assert all(r.cluster is not None for r in members)
        assert sorted(store.index_ids().tolist()) == sorted(int(i) for i in ids)
        tree = linked(base / "clusters", base / "photos")
        labels = store.labels()  # a cluster a user named has its folder called by the name
        homes = {r.path: labels.get(r.cluster, r.cluster) for r in members if r.cluster}
        companions = {r.path: homes.get(r.still) for r in records if r.still is not None}
        canonical = {r.path: homes[r.path] for r in members if r.canonical}
        assert tree == {**canonical, **{p: c for p, c in companions.items() if c is not None}}
        assert len(canonical) == len({r.content for r in members})  # one link per content
    for link in (base / "clusters").glob("*/*"):
        if not link.parent.name.startswith("_"):
            assert link.exists(), f"dangling link {link}"
            assert not photos.is_candidate(link.name) or link.resolve().is_file()

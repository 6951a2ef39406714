"""The real daemon at scale: tests/support/harness.py as a subprocess (real watcher, threads,
scheduler, signals, sd_notify to a socket of ours) on a synthetic library (bench/synthetic.py),
through a start that rebuilds the index, a normal start, idling, `status`, new photos, a
10 000-photo folder moved away and one deleted, a recluster, and a stop; its memory sampled
throughout (VmRSS every 0.2 s, VmHWM at the end).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from bench.common import REPO, timed, write_photo
from bench.synthetic import folder_of, index_of
from photocluster import status
from photocluster.store import INDEX, Store

WATCHDOG_USEC = 120_000_000  # the units' WatchdogSec=120: a ping every 60 s while healthy
NEW_PHOTOS = 20  # placed one at a time for the latency figure
BACKLOG = 200  # dropped at once: ~1 min of VGG16 here


class NotifyListener:
    """systemd's side of NOTIFY_SOCKET: reads datagrams on a thread as systemd would, noting
    when each arrived (time.monotonic). (tests/support/daemon.py has its own: see common.py.)"""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def times_of(self, message: str) -> list[float]:
        return [at for at, text in self.received if text == message]

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), message))

    def close(self) -> None:
        self._closing.set()
        self._thread.join()
        self.sock.close()


@dataclass
class Daemon:
    """One running harness process, its notify socket, log and memory samples."""

    process: subprocess.Popen[bytes]
    notify: NotifyListener
    log_path: Path
    started: float
    rss: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, GB)
    stopped: threading.Event = field(default_factory=threading.Event)  # ends the sampler

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = 3600.0) -> float:
        """Seconds from the start until `text` appeared `count` times in the log."""
        deadline = time.monotonic() + timeout
        while self.log.count(text) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no {text!r} in the daemon's log:\n{self.log[-3000:]}")
            time.sleep(0.1)
        return time.monotonic() - self.started

    def wait_notify(self, message: str, timeout: float = 3600.0) -> float:
        deadline = time.monotonic() + timeout
        while not self.notify.times_of(message):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no {message} notification:\n{self.log[-3000:]}")
            time.sleep(0.05)
        return self.notify.times_of(message)[0] - self.started

    def rss_between(self, start: float, end: float) -> float:
        return statistics.median(gb for at, gb in self.rss if start <= at <= end)

    def peak_gb(self) -> float:
        return max(gb for _, gb in self.rss)

    def watchdog_max_gap(self) -> float:
        pings = [self.notify.times_of("READY=1")[0], *self.notify.times_of("WATCHDOG=1")]
        return max(b - a for a, b in zip(pings, [*pings[1:], time.monotonic()], strict=True))

    def stop(self) -> float:
        """SIGTERM; seconds until the process exited."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=600)
        return time.monotonic() - began


@contextlib.contextmanager
def running(config: Path, env: dict[str, str], tag: str) -> Iterator[Daemon]:
    socket_path = config.parent / f"notify-{tag}.sock"
    socket_path.unlink(missing_ok=True)
    notify = NotifyListener(socket_path)
    log_path = config.parent / f"daemon-{tag}.log"
    environ = {**os.environ, **env, "NOTIFY_SOCKET": str(socket_path),
               "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "tests.support.harness", str(config)],
                                   cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=environ)
        daemon = Daemon(process, notify, log_path, time.monotonic())
        sampler = threading.Thread(target=_sample, args=(daemon,), daemon=True)
        sampler.start()
        try:
            yield daemon
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            daemon.stopped.set()
            sampler.join()
            notify.close()


def _sample(daemon: Daemon) -> None:
    while not daemon.stopped.is_set() and daemon.process.poll() is None:
        with contextlib.suppress(OSError, KeyError):
            daemon.rss.append((time.monotonic(), rss_gb("VmRSS", daemon.process.pid)))
        daemon.stopped.wait(0.2)


def rss_gb(field_name: str, pid: int | str = "self") -> float:
    """VmRSS / VmHWM of a process from /proc, in GB (10^9 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    raise KeyError(field_name)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the steps, each returning its figures


def start_figures(daemon: Daemon, prefix: str) -> dict[str, float]:
    """READY=1, the start-up reconciliation done ("ready:" log), the backlog done ("sync:")."""
    ready = daemon.wait_notify("READY=1")
    reconciled = daemon.wait_log("photocluster.worker: ready:")
    synced = daemon.wait_log("photocluster.library: sync:")
    return {f"{prefix}_ready_s": ready, f"{prefix}_reconciled_s": reconciled,
            f"{prefix}_synced_s": synced}


def idle_figures(daemon: Daemon, seconds: float) -> dict[str, float]:
    time.sleep(2.0)  # start-up garbage settles
    began, cpu = time.monotonic(), cpu_seconds(daemon.process.pid)
    time.sleep(seconds)
    busy = 100.0 * (cpu_seconds(daemon.process.pid) - cpu) / (time.monotonic() - began)
    return {"rss_idle_gb": daemon.rss_between(began, time.monotonic()), "idle_cpu_pct": busy}


def status_figures(config: Path, state: Path) -> dict[str, float]:
    """`photocluster status` as a person runs it (a process: imports included), and the
    catalog's part alone (`status.collect`), medians of 3."""
    cli, collect = [], []
    for _ in range(3):
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "photocluster.cli", "-c", str(config), "status"],
                       cwd=REPO, check=True, capture_output=True)
        cli.append(time.monotonic() - began)
        began = time.monotonic()
        status.collect(state)
        collect.append(time.monotonic() - began)
    return {"status_cli_s": statistics.median(cli), "status_s": statistics.median(collect)}


def place_figures(daemon: Daemon, root: Path, clusters: Path, count: int) -> dict[str, float]:
    """New photos, one at a time (written under a temp name, renamed in, as sync clients do):
    seconds from the rename until the photo's link is in the tree."""
    latencies = []
    names = sorted(p.name for p in clusters.resolve().iterdir() if p.name.startswith("cluster"))
    for index in range(count):
        final = root / folder_of(index * 1000 + 50_000) / f"new_{index:03d}.jpg"
        temp = write_photo(final.with_name(f".{final.name}.part"), (40 + 10 * index, 90, 150),
                           size=128, seed=index)
        began = time.monotonic()
        os.rename(temp, final)
        _wait(partial(_linked, clusters, names, final.name), 120.0, f"{final.name} to be linked")
        latencies.append(time.monotonic() - began)
    return {"place_p50_s": statistics.median(latencies),
            "place_p95_s": float(np.percentile(latencies, 95))}


def backlog_figures(daemon: Daemon, root: Path, clusters: Path, count: int) -> dict[str, float]:
    """`count` new photos dropped at once into a new folder (an album synced in): seconds
    until the last is linked, and the peak RSS meanwhile (the model embeds batches of 16)."""
    staging = root.parent / "incoming"
    for index in range(count):
        write_photo(staging / f"album_{index:04d}.jpg", (20 + index % 200, 120, 60), size=256,
                    seed=1000 + index)
    names = sorted(p.name for p in clusters.resolve().iterdir() if p.name.startswith("cluster"))
    began = time.monotonic()
    os.rename(staging, root / "incoming")
    _wait(partial(_linked, clusters, names, f"album_{count - 1:04d}.jpg"), 1800.0,
          "the backlog to be linked", interval=0.5)
    _wait(lambda: all(_linked(clusters, names, f"album_{i:04d}.jpg") for i in range(count)),
          600.0, "every photo of the backlog to be linked", interval=0.5)
    ended = time.monotonic()
    return {"backlog_s": ended - began, "backlog_count": float(count),
            "backlog_peak_gb": max(gb for at, gb in daemon.rss if began <= at <= ended)}


def removal_figures(base: Path, folder: str, how: str) -> dict[str, float]:
    """A top folder of 10 000 photos moved out of the tree, or deleted: seconds until the
    catalog holds none of its files, and until the tree holds no link to them either."""
    source = base / "photos" / folder
    links = [name for name in _linked_names(base / "clusters")
             if name.startswith("IMG_") and folder_of(index_of(name)).startswith(folder + "/")]
    began = time.monotonic()
    if how == "moved":
        os.rename(source, base / f"moved-away-{folder}")
    else:
        shutil.rmtree(source)
    _wait(lambda: _files_under(base / "state", folder) == 0, 600.0, f"{folder} to be removed",
          interval=0.5)
    catalog = time.monotonic() - began
    names = sorted(p.name for p in (base / "clusters").resolve().iterdir()
                   if p.name.startswith("cluster"))
    _wait(lambda: not any(_linked(base / "clusters", names, link) for link in links), 600.0,
          f"the links into {folder} to go", interval=0.5)
    return {f"{how}_10k_catalog_s": catalog, f"{how}_10k_s": time.monotonic() - began,
            f"{how}_10k_links": float(len(links))}


def _linked_names(clusters: Path) -> list[str]:
    return [name for cluster in clusters.resolve().iterdir()
            if cluster.name.startswith("cluster") for name in os.listdir(cluster)]


def recluster_figures(daemon: Daemon) -> dict[str, float]:
    """SIGUSR1: seconds until the result is computed, and until the new tree is swapped in."""
    computed_before = daemon.log.count("photocluster.recluster: recluster: ")
    swapped_before = daemon.log.count("photocluster.tree.generations: swapped")
    began = time.monotonic()
    daemon.process.send_signal(signal.SIGUSR1)
    computed = daemon.wait_log("photocluster.recluster: recluster: ", computed_before + 1)
    swapped = daemon.wait_log("photocluster.tree.generations: swapped", swapped_before + 1)
    offset = began - daemon.started
    return {"recluster_compute_s": computed - offset, "recluster_total_s": swapped - offset}


def _linked(clusters: Path, names: list[str], link: str) -> bool:
    return any(os.path.lexists(clusters / name / link) for name in names)


def _files_under(state: Path, folder: str) -> int:
    store = Store.open_readonly(state)
    try:
        return len(store.files(f"{folder}/"))
    finally:
        store.close()


def _wait(condition: Callable[[], bool], timeout: float, what: str,
          interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def search_figures(state: Path) -> dict[str, float]:
    """One search of the saved index (10 nearest of one photo, and all above 0.9), medians of
    3, against the same search of an in-memory IndexFlatIP of the catalog's vectors (what the
    index was before), built here from the catalog."""
    import faiss

    with Store(state) as store:
        ids, query = store.index_ids()[:1], None
        query = store.vectors_of(ids)  # (1, 512)
        ours = [timed(lambda: store.search(query, 10)) for _ in range(3)]
        ranged = [timed(lambda: store.range_search(query[0], 0.9)) for _ in range(3)]
        flat = faiss.IndexFlatIP(512)
        for _, vectors in store.vector_chunks(np.sort(store.index_ids())):  # (c, 512) float32
            flat.add(vectors)
    theirs = [timed(lambda: flat.search(query, 10)) for _ in range(3)]
    return {"search_s": statistics.median(ours), "range_search_s": statistics.median(ranged),
            "flat_search_s": statistics.median(theirs),
            "index_file_gb": (state / INDEX).stat().st_size / 1e9}

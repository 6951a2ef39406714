"""The daemon: threads, scheduler, signals, systemd notification.

Main thread: signals and health. It reads signal numbers from a `SignalInbox` (no work, no lock
in a signal handler), sends EXTEND_TIMEOUT_USEC= while the worker starts, then WATCHDOG=1 while
the worker is alive and making progress. Worker thread: the one writer (see `worker.py`). The
watcher's observer thread only enqueues. APScheduler's BackgroundScheduler fires the scheduled
recluster and the periodic rescan (`schedule.py`); the recluster itself computes on its own
thread, on a snapshot the worker hands over, and gives the result back to the worker to apply.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from photocluster import recluster
from photocluster.config import Config, load_config
from photocluster.errors import ConfigError
from photocluster.library import EmbedderFactory, vgg16_embedder
from photocluster.schedule import Schedule
from photocluster.sdnotify import Notifier, watchdog_interval
from photocluster.signal_inbox import SignalInbox
from photocluster.worker import ApplyResult, Reload, Rescan, SnapshotRequest, Worker

logger = logging.getLogger(__name__)

# A worker without progress (no step, no pulse) this long is stuck: the watchdog pings stop and
# systemd restarts us. Longer than the longest unit of work that has no pulse inside (a walk of
# the photo tree, saving the vector index).
STALL_SECONDS = 300.0
# While the worker starts, each EXTEND_TIMEOUT_USEC= asks for EXTEND_SECONDS more, every
# EXTEND_EVERY seconds, for START_LIMIT_SECONDS at most: a catalog migration or index rebuild
# of a large library is not killed half way (a restart would begin it again), and a start that
# hangs still fails, once TimeoutStartSec and the last extension have both run out.
EXTEND_SECONDS, EXTEND_EVERY, START_LIMIT_SECONDS = 60.0, 20.0, 3600.0
TICK = 0.5  # the main loop's longest wait: how soon it sees the worker fail or start
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SIGNALS = (*STOP_SIGNALS, signal.SIGHUP, signal.SIGUSR1)
# Config sections a reload keeps as they were (Config field, as the log names it).
_RESTART_ONLY = [
    ("paths", "[paths]"),
    ("embedding", "[embedding]"),
    ("watch", "[watch] (but rescan_every_minutes)"),
]


class ReclusterRunner:
    """Runs reclusters one at a time on its own thread; a request during a run runs once more.

    A daemon thread rather than a scheduler job, so a long computation never delays exit.
    """

    def __init__(self, worker: Worker, stop: threading.Event) -> None:
        self._worker, self._stop = worker, stop
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._forced = False
        self._thread = threading.Thread(
            target=self._loop, name="photocluster-recluster", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def request(self, forced: bool) -> None:
        with self._lock:
            self._forced = self._forced or forced
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.5):
                continue
            self._wake.clear()
            with self._lock:
                forced, self._forced = self._forced, False
            try:
                self._run_once(forced)
            except Exception:  # a bug in one recluster must not end reclustering for good
                logger.exception("recluster failed")

    def _run_once(self, forced: bool) -> None:
        reply: Future[recluster.Snapshot | None] = Future()
        self._worker.inbox.put(SnapshotRequest(forced, reply))
        snapshot = _wait(reply, self._stop)
        if snapshot is None or len(snapshot.ids) == 0:
            logger.info("recluster skipped: nothing changed since the last one")
            return
        result = recluster.compute(snapshot)
        self._worker.inbox.put(ApplyResult(result))


def _wait(
    reply: Future[recluster.Snapshot | None], stop: threading.Event
) -> recluster.Snapshot | None:
    while not stop.is_set():
        try:
            return reply.result(timeout=0.5)
        except TimeoutError:
            continue
    return None


class Daemon:
    """Composes the threads; `run()` blocks until SIGTERM/SIGINT and returns the exit code."""

    def __init__(self, config: Config, make_embedder: EmbedderFactory = vgg16_embedder) -> None:
        self.config = config
        self.stop = threading.Event()
        self.notifier = Notifier()
        self.worker = Worker(config, make_embedder, self.notifier, self.stop, self._on_growth)
        self.runner = ReclusterRunner(self.worker, self.stop)
        self.scheduler = BackgroundScheduler()
        self.schedule = Schedule(
            self.scheduler,
            recluster=functools.partial(self.runner.request, forced=False),
            rescan=functools.partial(self.worker.inbox.put, Rescan()),
        )

    def run(self) -> int:
        """Raises what the worker failed with (LockedError, StateError, ...) after stopping."""
        with SignalInbox(SIGNALS) as signals:
            self.worker.start()
            try:
                if self._start(signals):
                    self._supervise(signals)
            finally:
                self._shutdown()
        if self.worker.error is not None:
            raise self.worker.error
        return 0

    def _start(self, signals: SignalInbox) -> bool:
        """Wait for the worker to open the library, extending systemd's start timeout meanwhile;
        then start the recluster thread and the scheduler. False: failed or stopped first."""
        began = extended = time.monotonic()
        self.notifier.extend_timeout(EXTEND_SECONDS)
        while not self.worker.ready.is_set() and not self.stop.is_set():
            now = time.monotonic()
            if now - extended >= EXTEND_EVERY and now - began < START_LIMIT_SECONDS:
                self.notifier.extend_timeout(EXTEND_SECONDS)
                extended = now
            self._handle(signals.wait(TICK))
        if self.stop.is_set() or self.worker.error is not None:
            return False
        self.runner.start()
        self.schedule.apply(self.config)
        self.scheduler.start()
        return True

    def _supervise(self, signals: SignalInbox) -> None:
        """Until stopped: handle signals; ping the watchdog every `interval` while healthy."""
        interval = watchdog_interval()
        next_ping = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if interval is not None and now >= next_ping and self._healthy(now):
                self.notifier.watchdog()
                next_ping = now + interval
            due = interval is not None and now < next_ping
            self._handle(signals.wait(min(TICK, next_ping - now) if due else TICK))

    def _healthy(self, now: float) -> bool:
        return self.worker.is_alive() and now - self.worker.heartbeat < STALL_SECONDS

    def _handle(self, signums: list[int]) -> None:
        """Act on the signals read together: a stop wins; HUPs read at once are one reload
        (the file is read once either way), then USR1s are one recluster request."""
        stops = [signum for signum in signums if signum in STOP_SIGNALS]
        if stops:
            logger.info("%s: stopping", signal.Signals(stops[0]).name)
            self.stop.set()
            return
        if signal.SIGHUP in signums:
            self._reload()
        if signal.SIGUSR1 in signums:
            logger.info("SIGUSR1: recluster requested")
            self.runner.request(forced=True)

    def _shutdown(self) -> None:
        failed = self.worker.error is not None
        if not failed:
            logger.info("stopping: finishing the batch in hand")
            self.notifier.stopping()
        self.stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.worker.join()
        if not failed:
            logger.info("stopped")

    def _on_growth(self) -> None:
        self.runner.request(forced=True)

    def _reload(self) -> None:
        """SIGHUP. Whatever goes wrong, the old configuration stays and the daemon runs on."""
        try:
            fresh = reloaded(self.config)
            if fresh is None:
                return
            logging.getLogger().setLevel(fresh.log.level)
            self.config = fresh
            self.worker.inbox.put(Reload(fresh))
            self.schedule.apply(fresh)
            logger.info("SIGHUP: configuration reloaded from %s", fresh.source)
        except Exception:
            logger.exception("SIGHUP: reload failed; the daemon runs on")


def reloaded(running: Config, load: Callable[[Path], Config] = load_config) -> Config | None:
    """The configuration a SIGHUP applies: `running.source` read again, keeping what only a
    restart can change ([paths] and [embedding]: the watcher, the tree and the model were opened
    with them; [watch] but rescan_every_minutes: the watcher was). None, logged, when the file
    cannot be used: missing, unreadable, invalid, or anything unexpected."""
    try:
        fresh = load(running.source)
    except ConfigError as error:
        logger.error("SIGHUP: configuration not reloaded, keeping the old one: %s", error)
        return None
    except Exception:  # a reload must never end the daemon
        logger.exception("SIGHUP: configuration not reloaded, keeping the old one")
        return None
    watch = dataclasses.replace(
        running.watch, rescan_every_minutes=fresh.watch.rescan_every_minutes
    )
    kept = dataclasses.replace(fresh, paths=running.paths, embedding=running.embedding, watch=watch)
    ignored = [
        label for name, label in _RESTART_ONLY if getattr(fresh, name) != getattr(kept, name)
    ]
    if ignored:
        logger.warning(
            "SIGHUP: changes to %s take effect at restart; running on the old ones",
            ", ".join(ignored),
        )
    return kept


def run_daemon(config: Config, make_embedder: EmbedderFactory = vgg16_embedder) -> int:
    """`photocluster run`: blocks until stopped; returns 0 after a clean stop."""
    return Daemon(config, make_embedder).run()

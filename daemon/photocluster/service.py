"""The daemon: threads, scheduler, signals, systemd notification.

Main thread: signals and health (sd_notify WATCHDOG=1 only while the worker is alive and
making progress). Worker thread: the one writer (see `worker.py`). The watcher's observer
thread only enqueues. APScheduler's BackgroundScheduler fires the scheduled recluster and the
periodic rescan; the recluster itself computes on its own thread, on a snapshot the worker
hands over, and gives the result back to the worker to apply.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent.futures import Future
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from photocluster import recluster
from photocluster.config import Config, load_config
from photocluster.errors import PhotoclusterError
from photocluster.library import EmbedderFactory, vgg16_embedder
from photocluster.sdnotify import Notifier, watchdog_interval
from photocluster.worker import ApplyResult, Reload, Rescan, SnapshotRequest, Worker

logger = logging.getLogger(__name__)

STALL_SECONDS = 300.0  # a worker silent this long is unhealthy: systemd's watchdog restarts us


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
        self.scheduler = BackgroundScheduler(job_defaults={"max_instances": 1, "coalesce": True})
        self._reload_wanted = threading.Event()

    def run(self) -> int:
        self._install_signals()
        self.worker.start()
        self.worker.ready.wait()
        if self.worker.error is not None:
            self.worker.join()
            raise self.worker.error
        self.runner.start()
        self._schedule(self.config)
        self.scheduler.start()
        try:
            self._supervise()
        finally:
            self._shutdown()
        if self.worker.error is not None:
            raise self.worker.error
        return 0

    def _supervise(self) -> None:
        interval = watchdog_interval()
        last_ping = 0.0
        while not self.stop.wait(timeout=0.25):
            if self._reload_wanted.is_set():
                self._reload_wanted.clear()
                self._reload()
            now = time.monotonic()
            if interval is not None and now - last_ping >= interval and self._healthy(now):
                self.notifier.watchdog()
                last_ping = now

    def _healthy(self, now: float) -> bool:
        return self.worker.is_alive() and now - self.worker.heartbeat < STALL_SECONDS

    def _shutdown(self) -> None:
        logger.info("stopping: finishing the batch in hand")
        self.notifier.stopping()
        self.stop.set()
        self.scheduler.shutdown(wait=False)
        self.worker.join()
        logger.info("stopped")

    def _schedule(self, config: Config) -> None:
        hours = config.clustering.recluster_every_hours
        if hours > 0:
            self.scheduler.add_job(
                self.runner.request,
                "interval",
                hours=hours,
                kwargs={"forced": False},
                id="recluster",
                replace_existing=True,
            )
        elif self.scheduler.get_job("recluster"):
            self.scheduler.remove_job("recluster")
        minutes = config.watch.rescan_every_minutes
        if minutes > 0:
            self.scheduler.add_job(
                self.worker.inbox.put,
                "interval",
                minutes=minutes,
                args=[Rescan()],
                id="rescan",
                replace_existing=True,
            )
        elif self.scheduler.get_job("rescan"):
            self.scheduler.remove_job("rescan")

    def _on_growth(self) -> None:
        self.runner.request(forced=True)

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_recluster)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()

    def _on_recluster(self, signum: int, frame: FrameType | None) -> None:
        logger.info("SIGUSR1: recluster requested")
        self.runner.request(forced=True)

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload_wanted.set()  # the work happens outside the signal handler

    def _reload(self) -> None:
        try:
            fresh = load_config(self.config.source)
        except PhotoclusterError as error:
            logger.error("SIGHUP: configuration not reloaded, keeping the old one: %s", error)
            return
        if fresh.paths != self.config.paths or fresh.embedding != self.config.embedding:
            logger.warning("SIGHUP: changes to [paths] and [embedding] take effect at restart")
        logging.getLogger().setLevel(fresh.log.level)
        self.config = fresh
        self.worker.inbox.put(Reload(fresh))
        self._schedule(fresh)
        logger.info("SIGHUP: configuration reloaded from %s", fresh.source)


def run_daemon(config: Config, make_embedder: EmbedderFactory = vgg16_embedder) -> int:
    """`photocluster run`: blocks until stopped; returns 0 after a clean stop."""
    return Daemon(config, make_embedder).run()

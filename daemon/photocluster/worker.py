"""The daemon's worker thread: the one writer, owner of the open library (model, catalog, tree).

It keeps the thread, the inbox, the heartbeat and the published status; everything it changes
it changes through the library's verbs, in order: the startup reconciliation and backlog,
settled changes from the watcher, rescans, and applying recluster results computed elsewhere.
Other threads talk to it only through `inbox`.

The heartbeat means "the worker made progress": it moves with every step of the loop and with
every pulse of a long step (the library's `pulse`: an ingest batch, a cluster of a tree build,
a chunk of deletes), so the main thread's watchdog pings go on through a long backlog and stop
when the worker is stuck. READY=1 goes out once the catalog, index and model are open and the
watcher runs; the tree repair and the backlog come after it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from photocluster import ingest, library, photos, recluster, status
from photocluster.config import Config
from photocluster.errors import StateError
from photocluster.library import EmbedderFactory, Library
from photocluster.progress import Progress, Stopping
from photocluster.sdnotify import Notifier
from photocluster.watch import ChangeFeed

logger = logging.getLogger(__name__)

THUMBNAILS_PER_IDLE_STEP = 8  # ~0.5 s of decoding at most: changes are looked at in between
RETRY_SECONDS = 60.0  # after a failed write (a full disk, a read-only state dir): retry this often
# What the environment, not a bug, makes a write fail with; the worker records and retries it.
_RECOVERABLE = (StateError, OSError)


@dataclass(frozen=True)
class SnapshotRequest:
    forced: bool
    reply: Future[recluster.Snapshot | None]


@dataclass(frozen=True)
class ApplyResult:
    result: recluster.Result


@dataclass(frozen=True)
class Rescan:
    subtree: str = ""


@dataclass(frozen=True)
class Reload:
    config: Config


Request = SnapshotRequest | ApplyResult | Rescan | Reload


class Worker(threading.Thread):
    """Runs until `stop` is set; `ready` is set once the catalog, index and model are loaded.

    `config` is only what the library is opened with: from then on the library holds the live
    configuration, replaced by a `Reload` request."""

    def __init__(
        self,
        config: Config,
        make_embedder: EmbedderFactory,
        notifier: Notifier,
        stop: threading.Event,
        on_growth: Callable[[], None],
    ) -> None:
        super().__init__(name="photocluster-worker")
        self._config, self.notifier, self.stop = config, notifier, stop
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.heartbeat = time.monotonic()
        self._make_embedder, self._on_growth = make_embedder, on_growth
        self._backlog = 0
        self._published: tuple[str, str | None, str | None] = ("", None, None)
        self._error: str | None = None  # the last failed write, until a retry succeeds
        self._watch_problem: str | None = None  # the feed's, e.g. the inotify watch limit
        self._retry_at: float | None = None
        self._thumbnails_due = True  # until fill_thumbnails says every photo has one

    def run(self) -> None:
        try:
            with library.open_library(self._config, "run", self._make_embedder) as lib:
                self._serve(lib)
        except BaseException as error:  # reported by the main thread, which decides the exit
            self.error = error
            self.stop.set()
        finally:
            self.ready.set()  # never leave the main thread waiting

    def _serve(self, lib: Library) -> None:
        lib.pulse = self._beat
        watch = lib.config.watch
        feed = ChangeFeed(
            lib.config.paths.photos,
            watch.mode,
            watch.settle_seconds,
            watch.poll_interval_seconds,
            photos.is_media,
            excluded=lib.excluder.excludes,
        )
        with feed:
            self._beat()  # opening took a while: the watchdog counts from READY
            self.ready.set()
            self.notifier.ready()
            try:
                self._ingest_backlog(lib, self._startup(lib))
                while not self.stop.is_set():
                    self._step(lib, feed)
            except Stopping:
                lib.reader.trusted = False  # the tree may lag the catalog: the next start mends it
                logger.info("stopped in the middle of a step; the next start finishes it")
        self._publish(lib, "stopped")

    def _beat(self) -> None:
        """The library's pulse: progress was made (read by the main thread's watchdog)."""
        self.heartbeat = time.monotonic()

    def _startup(self, lib: Library) -> ingest.Work:
        self._publish(lib, "starting")
        work = ingest.Work([], [], 0)
        try:
            work = library.start(lib, self.stop.is_set)
        except _RECOVERABLE as error:
            self._failed(lib, error)
        logger.info(
            "ready: %d photos known, %d to read, %d gone, %d unchanged",
            lib.store.count(),
            len(work.to_read),
            len(work.missing),
            work.unchanged,
        )
        return work

    def _ingest_backlog(self, lib: Library, work: ingest.Work) -> None:
        try:
            progress = self._progress_for(lib)(len(work.to_read))
            library.apply_work(lib, work, progress, self.stop.is_set)
            self._after_ingest(lib)
        except _RECOVERABLE as error:
            self._failed(lib, error)
        self._backlog = 0

    def _step(self, lib: Library, feed: ChangeFeed) -> None:
        self._beat()
        try:
            self._drain_inbox(lib)
            library.tend(lib)  # the command line's requests, the user's edits of the tree
            library.apply_confirmed(lib, self.stop.is_set)  # `photocluster confirm-deletions`
            changes = feed.get_batch(timeout=0.5)
            self._watch_problem = feed.problem
            if not feed.root_present:
                self._publish(lib, "paused: photo folder missing")
                return
            if changes:
                library.apply_changes(lib, changes, self._progress_for(lib), self.stop.is_set)
                self._backlog = 0
                self._after_ingest(lib)
            elif self._thumbnails_due:  # idle: a library from before thumbnails gets them
                self._thumbnails_due = library.fill_thumbnails(lib, THUMBNAILS_PER_IDLE_STEP)
            self._retry_if_due(lib)
        except _RECOVERABLE as error:  # the changes in hand are lost: the retry rescans
            self._failed(lib, error)
        self._publish(lib, "error" if self._error else "idle")

    def _failed(self, lib: Library, error: BaseException) -> None:
        """A write failed: the catalog kept its last good state; say so and retry later."""
        lib.reader.trusted = False  # the tree may lag the catalog until `recover` mends it
        self._error = str(error) or type(error).__name__
        self._retry_at = time.monotonic() + RETRY_SECONDS
        self._backlog = 0
        logger.error("could not update the library: %s; retrying in %g s", error, RETRY_SECONDS)
        self._publish(lib, "error")

    def _retry_if_due(self, lib: Library) -> None:
        if self._retry_at is None or time.monotonic() < self._retry_at:
            return
        self._retry_at = None
        library.recover(lib, self.stop.is_set)
        self._after_ingest(lib)
        logger.info("recovered from the earlier failure")
        self._error = None

    def _after_ingest(self, lib: Library) -> None:
        if library.wants_recluster(lib):
            self._on_growth()

    def _drain_inbox(self, lib: Library) -> None:
        while True:
            try:
                request = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(lib, request)

    def _handle(self, lib: Library, request: Request) -> None:
        if isinstance(request, SnapshotRequest):
            try:
                snapshot = library.snapshot_if_dirty(lib, request.forced)
            except BaseException as error:  # the recluster thread waits for an answer
                request.reply.set_exception(error)
                raise
            request.reply.set_result(snapshot)
        elif isinstance(request, ApplyResult):
            self._publish(lib, "applying recluster")
            library.apply_recluster(lib, request.result, self.stop.is_set)
        elif isinstance(request, Rescan):
            library.rescan(lib, request.subtree, self.stop.is_set)
        elif isinstance(request, Reload):
            lib.config = request.config

    def _progress_for(self, lib: Library) -> Callable[[int], Progress]:
        """A progress factory that also publishes the backlog it is given."""

        def progress(total: int) -> Progress:
            self._backlog = total
            self._publish(lib, "ingesting")
            return Progress(
                total, "embedding", on_status=self.notifier.status, interval=10.0, bar=False
            )

        return progress

    def _publish(self, lib: Library, state: str) -> None:
        published = (state, self._error, self._watch_problem)
        if published == self._published and state != "ingesting":
            return
        self._published = published
        fields: dict[str, Any] = {"state": state, "backlog": self._backlog}
        if self._error is not None:
            fields["error"] = self._error
        if self._watch_problem is not None:
            fields["watch_problem"] = self._watch_problem
        try:
            status.publish(lib.config.paths.state, fields)
        except OSError as error:
            logger.warning("cannot write the daemon status file: %s", error)
        self.notifier.status(f"{state}; backlog {self._backlog}")

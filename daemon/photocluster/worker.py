"""The daemon's worker thread: the one writer, owner of the model, catalog, index and tree.

Everything that changes state happens here, in order: the startup reconciliation and
backlog, settled changes from the watcher, rescans, and applying recluster results computed
elsewhere. Other threads talk to it only through `inbox`.
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
from photocluster.progress import Progress
from photocluster.sdnotify import Notifier
from photocluster.watcher import Change, ChangeFeed

logger = logging.getLogger(__name__)

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
    """Runs until `stop` is set; `ready` is set once the catalog, index and model are loaded."""

    def __init__(
        self,
        config: Config,
        make_embedder: EmbedderFactory,
        notifier: Notifier,
        stop: threading.Event,
        on_growth: Callable[[], None],
    ) -> None:
        super().__init__(name="photocluster-worker")
        self.config, self.notifier, self.stop = config, notifier, stop
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.heartbeat = time.monotonic()
        self._make_embedder, self._on_growth = make_embedder, on_growth
        self._backlog = 0
        self._published: tuple[str, str | None] = ("starting", None)
        self._error: str | None = None  # the last failed write, until a retry succeeds
        self._retry_at: float | None = None

    def run(self) -> None:
        try:
            with library.open_library(self.config, "run", self._make_embedder) as lib:
                self._serve(lib)
        except BaseException as error:  # reported by the main thread, which decides the exit
            self.error = error
            self.stop.set()
        finally:
            self.ready.set()  # never leave the main thread waiting

    def _serve(self, lib: Library) -> None:
        watch = self.config.watch
        feed = ChangeFeed(
            self.config.paths.photos,
            watch.mode,
            watch.settle_seconds,
            watch.poll_interval_seconds,
            photos.is_candidate,
        )
        with feed:
            work = self._startup(lib)
            self.ready.set()
            self.notifier.ready()
            self._ingest_backlog(lib, work)
            while not self.stop.is_set():
                self._step(lib, feed)
        self._publish("stopped")

    def _startup(self, lib: Library) -> ingest.Work:
        """Reconcile against the tree: what is new, changed and gone since the last run."""
        work = ingest.Work([], [], 0)
        try:
            recluster.repair_tree(lib.store, lib.tree, lib.thumbnail)
            work = self._reconcile(lib)
        except _RECOVERABLE as error:
            self._failed(error)
        logger.info(
            "ready: %d photos known, %d to read, %d gone, %d unchanged",
            lib.store.count(),
            len(work.to_read),
            len(work.missing),
            work.unchanged,
        )
        return work

    def _reconcile(self, lib: Library) -> ingest.Work:
        try:
            return library.reconcile(lib)
        except FileNotFoundError as error:  # missing, or an empty mount point: never "all gone"
            logger.warning("photo folder %s: %s; paused", self.config.paths.photos, error.strerror)
            return ingest.Work([], [], 0)

    def _ingest_backlog(self, lib: Library, work: ingest.Work) -> None:
        self._backlog = len(work.to_read)
        self._publish("ingesting")
        try:
            library.apply_work(lib, work, self._progress(len(work.to_read)), self.stop.is_set)
            self._after_ingest(lib)
        except _RECOVERABLE as error:
            self._failed(error)
        self._backlog = 0

    def _step(self, lib: Library, feed: ChangeFeed) -> None:
        self.heartbeat = time.monotonic()
        try:
            self._drain_inbox(lib)
            changes = feed.get_batch(timeout=0.5)
            if not feed.root_present:
                self._publish("paused: photo folder missing")
                return
            if changes:
                self._apply_changes(lib, changes)
            self._retry_if_due(lib)
        except _RECOVERABLE as error:  # the changes in hand are lost: the retry rescans
            self._failed(error)
        self._publish("error" if self._error else "idle")

    def _failed(self, error: BaseException) -> None:
        """A write failed: the catalog kept its last good state; say so and retry later."""
        self._error = str(error) or type(error).__name__
        self._retry_at = time.monotonic() + RETRY_SECONDS
        self._backlog = 0
        logger.error("could not update the library: %s; retrying in %g s", error, RETRY_SECONDS)
        self._publish("error")

    def _retry_if_due(self, lib: Library) -> None:
        """Redo what may have been lost: the tree from the catalog, the catalog from disk."""
        if self._retry_at is None or time.monotonic() < self._retry_at:
            return
        self._retry_at = None
        recluster.repair_tree(lib.store, lib.tree, lib.thumbnail)
        self._rescan(lib, "")
        self._after_ingest(lib)
        logger.info("recovered from the earlier failure")
        self._error = None

    def _apply_changes(self, lib: Library, changes: list[Change]) -> None:
        """Apply in the watcher's order (a delete then a move onto that name must not swap);
        consecutive upserts form one batch for the model."""
        upserts: list[str] = []
        for change in changes:
            if change.kind == "upsert":
                upserts.append(change.path)
                continue
            self._ingest(lib, upserts)
            upserts = []
            if change.kind == "delete":
                library.remove(lib, [change.path] if lib.store.photo(change.path) else [])
            elif change.kind == "move" and change.dest is not None:
                if lib.store.photo(change.path) is None:  # never seen: just a new photo
                    upserts.append(change.dest)
                else:
                    library.move(lib, change.path, change.dest)
            elif change.kind == "rescan":
                self._rescan(lib, change.path)
        self._ingest(lib, upserts)
        self._after_ingest(lib)

    def _ingest(self, lib: Library, paths: list[str]) -> None:
        if not paths:
            return
        self._backlog = len(paths)
        self._publish("ingesting")
        work = ingest.Work(paths, [], 0)
        library.apply_work(lib, work, self._progress(len(paths)), self.stop.is_set)
        self._backlog = 0

    def _rescan(self, lib: Library, subtree: str) -> None:
        try:
            library.sync(lib, subtree, show_bar=False, stop=self.stop.is_set)
        except FileNotFoundError as error:
            logger.warning("rescan of %r skipped: %s", subtree, error.strerror)
        lib.store.save_index()

    def _after_ingest(self, lib: Library) -> None:
        if recluster.needs_recluster(lib.store, self.config.clustering.regrow_ratio):
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
                wanted = request.forced or lib.store.meta(library.DIRTY) != "0"
                snapshot = recluster.snapshot(lib.store, lib.fingerprint) if wanted else None
            except BaseException as error:  # the recluster thread waits for an answer
                request.reply.set_exception(error)
                raise
            request.reply.set_result(snapshot)
        elif isinstance(request, ApplyResult):
            self._publish("applying recluster")
            library.apply_recluster(lib, request.result)
        elif isinstance(request, Rescan):
            self._rescan(lib, request.subtree)
        elif isinstance(request, Reload):
            self.config = request.config
            lib.config = request.config

    def _progress(self, total: int) -> Progress:
        return Progress(
            total, "embedding", on_status=self.notifier.status, interval=10.0, bar=False
        )

    def _publish(self, state: str) -> None:
        if (state, self._error) == self._published and state != "ingesting":
            return
        self._published = (state, self._error)
        fields: dict[str, Any] = {"state": state, "backlog": self._backlog}
        if self._error is not None:
            fields["error"] = self._error
        try:
            status.publish(self.config.paths.state, fields)
        except OSError as error:
            logger.warning("cannot write the daemon status file: %s", error)
        self.notifier.status(f"{state}; backlog {self._backlog}")

"""Runs the real daemon (real watcher, threads, signals) with the fake embedder.

`python -m tests.support.harness CONFIG` — used by the daemon tests as a subprocess, so that
signals, sd_notify and kill -9 are exercised as systemd would. Test hooks, by environment:

PHOTOCLUSTER_TEST_SLOW_RECLUSTER=seconds  each recluster computation takes at least that long,
    so a test can signal during one.
PHOTOCLUSTER_TEST_SLOW_SWAP=seconds  a finished tree build, and the swap of the cluster root,
    each pause that long (logged "test hook: ..."), so a test can kill -9 inside them.
PHOTOCLUSTER_TEST_SLOW_SAVE=seconds  each atomic state-file write pauses that long with the
    data in its temp file, before the rename (logged "test hook: saving ...").
PHOTOCLUSTER_TEST_STALL_INOTIFY=flag-file  while the file exists the inotify reader does not
    read, so the kernel queue fills and overflows for real.
PHOTOCLUSTER_TEST_DISK_FULL=flag-file  while the file exists the disk is "full": fsync fails
    with ENOSPC and SQLite may not grow the catalog (SQLITE_FULL).
PHOTOCLUSTER_TEST_EMPTY_LISTING=flag-file  while the file exists the photo root lists as
    empty (a flaky network mount); its files can still be opened by name.
PHOTOCLUSTER_TEST_UNREADABLE=name  opening a file of that name fails with EACCES (the tests
    run as root, which may read anything).
PHOTOCLUSTER_TEST_RETRY_SECONDS=seconds  how long the worker waits before retrying after a
    state write failed.
PHOTOCLUSTER_TEST_EMBED_SECONDS=seconds  the fake embedder takes that long per photo (VGG16 on
    this machine's CPU: ~0.25 s), so a backlog lasts as it would.
PHOTOCLUSTER_TEST_HANG_EMBED=flag-file  while the file exists the embedder does not return
    (logged "test hook: embedder hung"): a stuck worker.
PHOTOCLUSTER_TEST_STALL_SECONDS=seconds  how long the worker may go without progress before the
    watchdog pings stop (service.STALL_SECONDS).
PHOTOCLUSTER_TEST_SLOW_CLUSTER=seconds  each cluster of a tree build, and each contact sheet,
    takes that much longer (logged "test hook: linking a cluster", "... drawing a sheet").
PHOTOCLUSTER_TEST_WATCH_LIMIT=count  inotify refuses a watch with ENOSPC once this process
    holds that many, as the kernel does at fs.inotify.max_user_watches.
PHOTOCLUSTER_TEST_REAL_MODEL=1  the real VGG16 (weights as configured) instead of the fake
    embedder: what the daemon's memory is with the model loaded.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from photocluster import fsutil, placement, recluster, service, store, worker
from photocluster.cli import setup_logging
from photocluster.config import load_config
from photocluster.progress import Pulse, no_pulse
from photocluster.tree import generations
from tests.support.fakes import PacedEmbedder

logger = logging.getLogger("photocluster.test_hook")


def _replace(owner: object, name: str, new: object) -> None:
    """Set `owner.name` to `new`; AttributeError when there is no such name: a hook whose seam
    moved fails loudly instead of patching nothing."""
    if not hasattr(owner, name):
        raise AttributeError(f"test hook: {owner!r} has no {name!r} any more")
    setattr(owner, name, new)


def _slow_down(seconds: float) -> None:
    compute = recluster.compute

    def slow(snapshot: recluster.Snapshot) -> recluster.Result:
        time.sleep(seconds)
        return compute(snapshot)

    _replace(recluster, "compute", slow)


def _slow_swap(seconds: float, cluster_root: Path) -> None:
    """Pauses inside a tree swap, hooked on the file-system calls it is made of: the rename
    of a finished build (a temp folder to gen-N) and the replace of the cluster root's
    symlink. A daemon that stopped making them would fail the tests waiting for these lines."""
    rename, replace = os.rename, os.replace

    def slow_rename(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if (Path(source).name.startswith(fsutil.TEMP_PREFIX)
                and generations.GENERATION_NAME.fullmatch(Path(target).name)):
            logger.info("test hook: tree built, not yet renamed")
            time.sleep(seconds)
        rename(source, target, *args, **kwargs)

    def slow_replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if Path(target) != cluster_root:
            replace(source, target, *args, **kwargs)
            return
        logger.info("test hook: swapping the cluster root")
        time.sleep(seconds)
        replace(source, target, *args, **kwargs)
        logger.info("test hook: swapped, old generations not yet collected")
        time.sleep(seconds)

    _replace(os, "rename", slow_rename)
    _replace(os, "replace", slow_replace)


def _slow_save(seconds: float) -> None:
    atomic_write = fsutil.atomic_write
    index_files = (store.IDS, store.STAMP)  # what a save writes atomically

    def slow(path: Path, content: bytes | fsutil.Writer, mode: int = fsutil.PRIVATE_FILE,
             durable: bool = True) -> None:
        if path.name not in index_files:
            return atomic_write(path, content, mode, durable)

        def write_then_wait(temp: str) -> None:
            if isinstance(content, bytes):
                Path(temp).write_bytes(content)
            else:
                content(temp)
            logger.info("test hook: saving %s", path.name)
            time.sleep(seconds)

        return atomic_write(path, write_then_wait, mode, durable)

    _replace(fsutil, "atomic_write", slow)


def _stall_inotify(flag: Path) -> None:
    from watchdog.observers.inotify_c import InotifyFD

    read_events = InotifyFD.read_events

    def stalled(self: InotifyFD, **kwargs: Any) -> Any:
        if flag.exists():
            logger.info("test hook: inotify reader stalled")
            while flag.exists() and self.should_keep_running():
                time.sleep(0.05)
        return read_events(self, **kwargs)

    _replace(InotifyFD, "read_events", stalled)


def _disk_full(flag: Path) -> None:
    """A private seam, on purpose: SQLite's page limit is per connection and must follow the
    flag at run time, so it is set inside each of the catalog's transactions; `_replace` makes
    the hook fail loudly if that method goes."""
    fsync, transaction = os.fsync, store.Store._transaction

    def failing_fsync(fd: int) -> None:
        if flag.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    @contextlib.contextmanager
    def full(self: store.Store) -> Iterator[Any]:
        with transaction(self) as conn:
            # max_page_count cannot go below the current size: this pins the catalog at its size.
            conn.execute(f"PRAGMA max_page_count = {1 if flag.exists() else 1 << 30}")
            yield conn

    _replace(os, "fsync", failing_fsync)
    _replace(store.Store, "_transaction", full)


class _EmptyListing:
    def __enter__(self) -> _EmptyListing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def __iter__(self) -> _EmptyListing:
        return self

    def __next__(self) -> os.DirEntry[str]:
        raise StopIteration

    def close(self) -> None:
        pass


def _empty_listing(flag: Path, root: Path) -> None:
    from watchdog.observers.polling import PollingEmitter

    scandir, watched = os.scandir, {str(root), os.path.realpath(root)}

    def flaky(path: Any = ".") -> Any:
        if flag.exists() and os.fsdecode(path).rstrip("/") in watched:
            return _EmptyListing()
        return scandir(path)

    _replace(os, "scandir", flaky)
    assert PollingEmitter.__init__.__kwdefaults__ is not None
    PollingEmitter.__init__.__kwdefaults__["listdir"] = flaky


def _unreadable(name: str) -> None:
    open_file = os.open

    def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fsdecode(path).rsplit("/", 1)[-1] == name:  # a full path or a dir_fd name
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return open_file(path, flags, *args, **kwargs)

    _replace(os, "open", guarded)


def _slow_clusters(seconds: float) -> None:
    """Each cluster of a tree build and each contact sheet takes `seconds` longer, through the
    `pulse` both take (called after each cluster, each sheet): their public seam."""
    build, write = generations.ClusterTree.build, placement.write_overview

    def slowed(pulse: Pulse, what: str) -> Pulse:
        def slow() -> None:
            logger.info("test hook: %s", what)
            time.sleep(seconds)
            pulse()
        return slow

    def slow_build(tree: generations.ClusterTree, plan: Any, pulse: Pulse = no_pulse,
                   carry_over: bool = True) -> Path:
        return build(tree, plan, slowed(pulse, "linking a cluster"), carry_over)

    def slow_write(generation: Path, plan: Any, thumbnail: Any, elbow: Any,
                   pulse: Pulse = no_pulse) -> None:
        write(generation, plan, thumbnail, elbow, slowed(pulse, "drawing a sheet"))

    _replace(generations.ClusterTree, "build", slow_build)
    _replace(placement, "write_overview", slow_write)


def watch_limit(count: int) -> None:
    """inotify_add_watch fails with ENOSPC once `count` watches were added (tests too)."""
    import ctypes

    from watchdog.observers import inotify_c

    add_watch, added = inotify_c.inotify_add_watch, set()

    def limited(fd: int, path: bytes, mask: int) -> int:
        if (fd, path) not in added and len(added) >= count:
            ctypes.set_errno(errno.ENOSPC)
            return -1
        added.add((fd, path))
        return int(add_watch(fd, path, mask))

    inotify_c.inotify_add_watch = limited  # type: ignore[assignment]


def main() -> int:
    setup_logging(verbose=False)  # as `photocluster run` logs
    config = load_config(Path(sys.argv[1]))
    hooks = os.environ.get
    if hooks("PHOTOCLUSTER_TEST_SLOW_RECLUSTER"):
        _slow_down(float(hooks("PHOTOCLUSTER_TEST_SLOW_RECLUSTER", "0")))
    if hooks("PHOTOCLUSTER_TEST_SLOW_SWAP"):
        _slow_swap(float(hooks("PHOTOCLUSTER_TEST_SLOW_SWAP", "0")), config.paths.clusters)
    if hooks("PHOTOCLUSTER_TEST_SLOW_SAVE"):
        _slow_save(float(hooks("PHOTOCLUSTER_TEST_SLOW_SAVE", "0")))
    if hooks("PHOTOCLUSTER_TEST_STALL_INOTIFY"):
        _stall_inotify(Path(hooks("PHOTOCLUSTER_TEST_STALL_INOTIFY", "")))
    if hooks("PHOTOCLUSTER_TEST_DISK_FULL"):
        _disk_full(Path(hooks("PHOTOCLUSTER_TEST_DISK_FULL", "")))
    if hooks("PHOTOCLUSTER_TEST_EMPTY_LISTING"):
        _empty_listing(Path(hooks("PHOTOCLUSTER_TEST_EMPTY_LISTING", "")), config.paths.photos)
    if hooks("PHOTOCLUSTER_TEST_UNREADABLE"):
        _unreadable(hooks("PHOTOCLUSTER_TEST_UNREADABLE", ""))
    if hooks("PHOTOCLUSTER_TEST_RETRY_SECONDS"):
        worker.RETRY_SECONDS = float(hooks("PHOTOCLUSTER_TEST_RETRY_SECONDS", "0"))
    if hooks("PHOTOCLUSTER_TEST_STALL_SECONDS"):
        service.STALL_SECONDS = float(hooks("PHOTOCLUSTER_TEST_STALL_SECONDS", "0"))
    if hooks("PHOTOCLUSTER_TEST_SLOW_CLUSTER"):
        _slow_clusters(float(hooks("PHOTOCLUSTER_TEST_SLOW_CLUSTER", "0")))
    if hooks("PHOTOCLUSTER_TEST_WATCH_LIMIT"):
        watch_limit(int(hooks("PHOTOCLUSTER_TEST_WATCH_LIMIT", "0")))
    if hooks("PHOTOCLUSTER_TEST_REAL_MODEL"):
        from photocluster.library import vgg16_embedder

        return service.run_daemon(config, vgg16_embedder)
    seconds = float(hooks("PHOTOCLUSTER_TEST_EMBED_SECONDS", "0"))
    hang_flag = hooks("PHOTOCLUSTER_TEST_HANG_EMBED")
    hang = Path(hang_flag) if hang_flag else None
    return service.run_daemon(config, lambda _: PacedEmbedder(seconds, hang))


if __name__ == "__main__":
    sys.exit(main())

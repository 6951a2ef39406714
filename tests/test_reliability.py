"""The daemon keeps working and loses nothing: kill -9 at any moment, inotify overflow under
load, a full disk, and a photo folder that vanishes or briefly lists as empty.

Each test runs the real daemon (tests/support/harness.py) with the fake embedder; the harness's
test hooks widen the dangerous windows (a tree swap, an index save) and simulate what cannot be
had for real in a test (a full disk, a flaky network mount). The crash trial and the load run
live in tests/support/ (crash.py, overflow.py) so that bench/reliability.py runs many more
of them (through `python -m tests.support.trials`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from watchdog.events import FileDeletedEvent

from photocluster import cli, fsutil, ingest, library, photos
from photocluster.config import load_config
from photocluster.errors import StateError
from photocluster.store import NewFile, Store
from photocluster.tree import ClusterTree
from photocluster.watch.change import Change
from photocluster.watch.settle import Settler
from tests.support.consistency import (
    assert_consistent,
    assert_tree_safe,
    linked,
    wait_settled,
)
from tests.support.crash import crash_trial, make_library, populate
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.fakes import FakeEmbedder
from tests.support.overflow import load_run
from tests.support.photos import COLOURS, write_photo

pytestmark = pytest.mark.timeout(180)

# ---------------------------------------------------------------------------- shared helpers


@pytest.fixture
def library_base(tmp_path: Path) -> Iterator[Path]:
    make_library(tmp_path)
    yield tmp_path


# ---------------------------------------------------------------------------- crash trials


@pytest.mark.parametrize(("window", "seed"), [("random", 11), ("swap", 12), ("save", 13)])
def test_kill_9_during_a_burst_then_restart_loses_duplicates_and_dangles_nothing(
    library_base: Path, window: str, seed: int
) -> None:
    populate(library_base)
    hit = crash_trial(library_base, seed, window)
    assert hit, f"the {window} window was never reached"


# ---------------------------------------------------------------------------- load


@pytest.mark.slow
def test_2000_photos_dropped_during_an_inotify_overflow_are_all_indexed(tmp_path: Path) -> None:
    indexed, _, log = load_run(tmp_path, 2000, timeout=150)
    assert "Inotify queue overflowed" in log and "inotify queue overflowed; will rescan" in log
    assert indexed == 2000
    assert_consistent(tmp_path)


# ---------------------------------------------------------------------------- full disk


def _status(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["-c", str(config), "status", "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def _daemon_field(config: Path, capsys: pytest.CaptureFixture[str], key: str) -> object:
    daemon = _status(config, capsys)["daemon"]
    return daemon.get(key) if isinstance(daemon, dict) else None


def test_a_full_disk_keeps_the_daemon_running_shows_the_error_and_recovers(
    library_base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(library_base)
    config, flag = library_base / "config.toml", library_base / "disk-full"
    index = library_base / "state" / "index.stamp"  # rewritten by every save that succeeds
    env = {"PHOTOCLUSTER_TEST_DISK_FULL": str(flag), "PHOTOCLUSTER_TEST_RETRY_SECONDS": "1"}
    daemon = DaemonProcess(config, env)
    try:
        daemon.wait_for_log("ready:", timeout=60)
        index_before = index.read_bytes()
        flag.touch()
        for number in range(30):  # enough to need new catalog pages
            write_photo(library_base / "photos" / "late" / f"late_{number}.jpg", COLOURS["red"],
                        size=40, seed=500 + number)
        daemon.wait_for_log("database or disk is full")
        wait_until(lambda: _daemon_field(config, capsys, "state") == "error", 20, "error state")
        assert "disk is full" in str(_daemon_field(config, capsys, "error"))
        daemon.wait_for_log("retrying in 1 s", count=3)  # retries fail while the disk is full
        assert daemon.process.poll() is None
        assert index.read_bytes() == index_before
        capsys.readouterr()
        assert cli.main(["-c", str(config), "status"]) == 0
        assert "problem: cannot write the catalog: database or disk is full" in (
            capsys.readouterr().out
        )
        flag.unlink()
        wait_settled(library_base)
        wait_until(lambda: _daemon_field(config, capsys, "error") is None, 20, "the error to clear")
        index_before = index.read_bytes()  # the recovery's rescan saved it
        write_photo(library_base / "photos" / "red" / "last.jpg", COLOURS["red"], seed=600)
        wait_settled(library_base)
        flag.touch()  # and full again while stopping: the changed index cannot be saved
    finally:
        assert daemon.stop() == 0
    assert "it will be rebuilt from the catalog at the next start" in daemon.log
    assert index.read_bytes() == index_before
    assert not list((library_base / "state").glob(f"{fsutil.TEMP_PREFIX}*"))
    flag.unlink()
    assert_consistent(library_base)


def _vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=512).astype(np.float32)  # (512,) float32
    return vector / np.linalg.norm(vector)


def test_an_index_save_on_a_full_disk_keeps_the_saved_files_and_the_next_open_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "photocluster.store")
    with Store(tmp_path) as store:
        store.put_files([NewFile("a.jpg", 1, 1, "a", _vector(1))], "f")
    saved = {name: (tmp_path / name).read_bytes() for name in ("index.ids", "index.stamp")}

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store = Store(tmp_path)
    store.put_files([NewFile("b.jpg", 1, 1, "b", _vector(2))], "f")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StateError, match="No space left"):
        store.save_index()
    store.close()  # logs instead of raising: the index is a cache
    monkeypatch.undo()
    assert "it will be rebuilt from the catalog" in caplog.text
    assert {name: (tmp_path / name).read_bytes() for name in saved} == saved
    assert not list(tmp_path.glob(f"{fsutil.TEMP_PREFIX}*"))
    with Store(tmp_path) as store:
        ids, _ = store.vectors("f")
        assert len(ids) == 2 and store.file("b.jpg") is not None
    assert "rebuilt the vector index" in caplog.text


def test_a_catalog_write_refused_by_sqlite_is_a_state_error_and_changes_nothing(
    tmp_path: Path,
) -> None:
    with Store(tmp_path) as store:
        store.put_files([NewFile("a.jpg", 1, 1, "a", _vector(1))], "f")
        store._conn.execute("PRAGMA query_only = 1")  # SQLITE_READONLY, as a read-only mount
        with pytest.raises(StateError, match="cannot write the catalog"):
            store.put_files([NewFile("b.jpg", 1, 1, "b", _vector(2))], "f")
        with pytest.raises(StateError):
            store.remove(["a.jpg"])
        store._conn.execute("PRAGMA query_only = 0")
        assert [r.path for r in store.files()] == ["a.jpg"]
        assert len(store.vectors("f")[0]) == 1


# ---------------------------------------------------------------------------- unmounts


POLLING = (
    '[watch]\nmode = "polling"\nsettle_seconds = 0.3\npoll_interval_seconds = 0.2\n'
    "rescan_every_minutes = 0\n"
)


def catalog_ids(state: Path) -> dict[bytes, int]:
    """path -> row id of every catalog row: a photo deleted and added again gets a new id."""
    conn = sqlite3.connect(f"file:{state / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT path, id FROM files").fetchall())
    finally:
        conn.close()


def test_a_polled_deletion_of_a_file_that_is_still_there_becomes_a_fresh_look(
    tmp_path: Path,
) -> None:
    settler = Settler(str(tmp_path), photos.is_candidate, 1.0)
    settler.verify_deletes = True  # as in polling mode
    write_photo(tmp_path / "still.jpg", COLOURS["red"])
    for name in ("still.jpg", "gone.jpg"):  # a listing that missed both
        settler.add(FileDeletedEvent(str(tmp_path / name)), 0.0)
    assert settler.take(0.0) == [Change("delete", "gone.jpg")]
    assert settler.take(1.5) == [Change("upsert", "still.jpg")]


def test_an_unmounted_vanished_or_briefly_empty_polled_root_deletes_nothing(
    tmp_path: Path,
) -> None:
    make_library(tmp_path, extra=POLLING)
    populate(tmp_path)
    root, away, flag = tmp_path / "photos", tmp_path / "away", tmp_path / "empty-listing"
    tree, rows = linked(tmp_path / "clusters", root), catalog_ids(tmp_path / "state")

    def unchanged() -> None:
        assert catalog_ids(tmp_path / "state") == rows
        assert linked(tmp_path / "clusters", root) == tree

    root.rename(away)
    root.mkdir()  # started before the mount: the mount point is an empty folder
    daemon = DaemonProcess(tmp_path / "config.toml", {"PHOTOCLUSTER_TEST_EMPTY_LISTING": str(flag)})
    try:
        daemon.wait_for_log("is empty (not mounted?); paused")
        time.sleep(1.0)
        unchanged()
        root.rmdir()
        away.rename(root)  # mounted
        daemon.wait_for_log("being watched again")
        wait_settled(tmp_path)
        unchanged()
        root.rename(away)  # unmounted for a while, with an empty mount point for a moment
        daemon.wait_for_log("is missing or unmounted")
        time.sleep(0.6)
        root.mkdir()
        time.sleep(0.6)
        root.rmdir()
        away.rename(root)
        daemon.wait_for_log("being watched again", count=2)
        wait_settled(tmp_path)
        unchanged()
        flag.touch()  # a flaky network mount: the root lists as empty for a few polls
        daemon.wait_for_log("lists as empty")
        time.sleep(0.6)
        flag.unlink()
        daemon.wait_for_log("being watched again", count=3)
        wait_settled(tmp_path)
        unchanged()
    finally:
        assert daemon.stop() == 0
    assert_consistent(tmp_path)


# ---------------------------------------------------------------------------- crash leftovers


def test_a_stored_but_unplaced_photo_is_placed_by_the_next_reconciliation(
    library_base: Path,
) -> None:
    populate(library_base)
    config = load_config(library_base / "config.toml")
    write_photo(library_base / "photos" / "red" / "late.jpg", COLOURS["red"], seed=70)
    with library.open_library(config, "run", lambda _: FakeEmbedder()) as lib:
        # what ingest had stored when a kill -9 stopped it before placing the photo
        ingest.ingest(["red/late.jpg"], config.paths.photos, lib.store, lib.embedder, lib.limits)
    with library.open_library(config, "run", lambda _: FakeEmbedder()) as lib:
        library.sync(lib, show_bar=False)
    tree = linked(library_base / "clusters", library_base / "photos")
    assert tree["red/late.jpg"] == tree["red/red_0.jpg"]
    assert_consistent(library_base)


def test_a_rename_found_by_reconciliation_moves_the_link_and_leaves_no_dangling_one(
    library_base: Path,
) -> None:
    populate(library_base)
    root = library_base / "photos"
    (root / "red" / "red_0.jpg").rename(root / "red" / "renamed_while_stopped.jpg")
    config = load_config(library_base / "config.toml")
    with library.open_library(config, "run", lambda _: FakeEmbedder()) as lib:
        report = library.sync(lib, show_bar=False)  # the daemon's startup and rescans
    assert report.moved == 1
    tree = linked(library_base / "clusters", root)
    assert "red/red_0.jpg" not in tree
    assert tree["red/renamed_while_stopped.jpg"] == tree["red/red_1.jpg"]
    assert_tree_safe(library_base)
    assert_consistent(library_base)


def test_a_leftover_temp_link_goes_at_start_and_sigterm_during_a_swap_exits_cleanly(
    library_base: Path,
) -> None:
    populate(library_base)
    live = ClusterTree(library_base / "clusters", library_base / "photos").live()
    assert live is not None
    cluster = next(p for p in live.iterdir() if not p.name.startswith("_"))
    leftover = cluster / f"{fsutil.TEMP_PREFIX}0123456789abcdef"
    os.symlink(os.readlink(next(cluster.iterdir())), leftover)  # killed between link and rename
    daemon = DaemonProcess(library_base / "config.toml", {"PHOTOCLUSTER_TEST_SLOW_SWAP": "0.5"})
    daemon.wait_for_log("ready:")
    assert not os.path.lexists(leftover)
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for_log("test hook: swapping")
    assert daemon.stop(timeout=30) == 0
    assert_tree_safe(library_base)
    assert_consistent(library_base)

"""Polling by folder mtimes (photocluster.watch.poller) and the inotify watch limit
(photocluster.watch.feed): what a poll reports, what it costs, and a tree too big for inotify."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent
from watchdog.observers import inotify_c

from photocluster import cli
from photocluster.watch import Change, ChangeFeed
from photocluster.watch.poller import FolderPoller
from tests.support.config import write_config
from tests.support.consistency import all_linked
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.harness import watch_limit
from tests.support.photos import COLOURS, write_photo


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert [thread for thread in threading.enumerate() if thread not in before] == []


def described(root: Path, events: list[FileSystemEvent]) -> list[tuple[str, ...]]:
    """(event type, relative paths...) for comparing."""
    def rel(path: bytes | str) -> str:
        return os.path.relpath(os.fsdecode(path), root)

    return [(type(e).__name__, rel(e.src_path), *([rel(e.dest_path)] if e.dest_path else []))
            for e in events]


def tree(root: Path, files: list[str]) -> FolderPoller:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    poller = FolderPoller(str(root))
    poller.start()
    return poller


def test_a_poll_reports_new_deleted_and_renamed_files_with_watchdogs_events(
        tmp_path: Path) -> None:
    poller = tree(tmp_path, ["a/1.jpg", "a/2.jpg", "b/3.jpg"])
    (tmp_path / "a" / "new.jpg").write_bytes(b"new")
    (tmp_path / "a" / "2.jpg").unlink()
    os.rename(tmp_path / "a" / "1.jpg", tmp_path / "b" / "one.jpg")
    assert sorted(described(tmp_path, poller.poll())) == [
        ("FileCreatedEvent", "a/new.jpg"),
        ("FileDeletedEvent", "a/2.jpg"),
        ("FileMovedEvent", "a/1.jpg", "b/one.jpg"),
    ]
    assert poller.poll() == []


def test_a_moved_folder_is_a_move_of_each_file_and_new_or_gone_folders_are_reported(
        tmp_path: Path) -> None:
    poller = tree(tmp_path, ["old/deep/1.jpg", "old/2.jpg", "gone/3.jpg"])
    os.rename(tmp_path / "old", tmp_path / "new")
    (tmp_path / "gone" / "3.jpg").unlink()
    (tmp_path / "gone").rmdir()
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "4.jpg").write_bytes(b"4")
    events = described(tmp_path, poller.poll())
    assert sorted(events) == sorted([
        ("FileDeletedEvent", "gone/3.jpg"),
        ("FileMovedEvent", "old/2.jpg", "new/2.jpg"),
        ("FileMovedEvent", "old/deep/1.jpg", "new/deep/1.jpg"),
        ("FileCreatedEvent", "fresh/4.jpg"),
        ("DirDeletedEvent", "gone"),
        ("DirMovedEvent", "old", "new"),
        ("DirCreatedEvent", "fresh"),
    ])
    assert poller.poll() == []


def test_a_new_file_reusing_a_deleted_files_inode_is_no_move(tmp_path: Path) -> None:
    poller = tree(tmp_path, ["a/old.jpg"])
    poller.poll()
    inode = (tmp_path / "a" / "old.jpg").stat().st_ino
    (tmp_path / "a" / "old.jpg").unlink()
    (tmp_path / "a" / "new.jpg").write_bytes(b"another photo")
    if (tmp_path / "a" / "new.jpg").stat().st_ino != inode:
        pytest.skip("the file system did not reuse the inode")
    assert sorted(described(tmp_path, poller.poll())) == [
        ("FileCreatedEvent", "a/new.jpg"), ("FileDeletedEvent", "a/old.jpg")]


def test_an_idle_poll_stats_each_folder_and_lists_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poller = tree(tmp_path, [f"{folder:02d}/{n}.jpg" for folder in range(30) for n in range(5)])
    poller.poll()  # each folder is listed once more after its first listing
    listed: list[str] = []
    scandir = os.scandir

    def counting(path: str) -> object:
        listed.append(path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    assert poller.poll() == []
    assert listed == []
    (tmp_path / "07" / "new.jpg").write_bytes(b"new")
    assert described(tmp_path, poller.poll()) == [("FileCreatedEvent", "07/new.jpg")]
    assert listed == [str(tmp_path / "07")]


def test_a_file_added_in_the_same_mtime_tick_as_a_listing_is_seen_at_the_next_poll(
        tmp_path: Path) -> None:
    poller = tree(tmp_path, ["a/1.jpg"])
    poller.poll()
    (tmp_path / "a" / "2.jpg").write_bytes(b"2")
    tick = (tmp_path / "a").stat().st_mtime_ns
    assert described(tmp_path, poller.poll()) == [("FileCreatedEvent", "a/2.jpg")]
    (tmp_path / "a" / "3.jpg").write_bytes(b"3")
    os.utime(tmp_path / "a", ns=(tick, tick))  # a coarse clock: the folder's mtime did not move
    assert described(tmp_path, poller.poll()) == [("FileCreatedEvent", "a/3.jpg")]


def test_a_gone_root_raises_instead_of_reporting_everything_deleted(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    poller = tree(root, ["a/1.jpg"])
    os.rename(root, tmp_path / "away")
    with pytest.raises(FileNotFoundError):
        poller.poll()


# ---- more folders than inotify may watch


def _fake_watch_limit(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """inotify_add_watch fails with ENOSPC once `limit` watches exist, as the kernel does."""
    monkeypatch.setattr(inotify_c, "inotify_add_watch", inotify_c.inotify_add_watch)
    watch_limit(limit)  # the daemon harness's hook, undone by monkeypatch


def _collect(feed: ChangeFeed, want: Change, limit: float = 10.0) -> list[Change]:
    changes: list[Change] = []
    deadline = time.monotonic() + limit
    while want not in changes and time.monotonic() < deadline:
        changes += feed.get_batch(0.1)
    return changes


def _folders(root: Path, count: int) -> None:
    for index in range(count):
        (root / f"album{index:02d}" / "inner").mkdir(parents=True)


def test_a_tree_over_the_watch_limit_is_polled_and_says_how_to_raise_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _fake_watch_limit(monkeypatch, limit=10)
    _folders(tmp_path, 12)  # 25 folders with the root
    with caplog.at_level(logging.WARNING), ChangeFeed(
            tmp_path, "inotify", 0.2, 0.1, lambda name: name.endswith(".jpg")) as feed:
        (tmp_path / "album11" / "inner" / "late.jpg").write_bytes(b"photo")  # unwatchable
        changes = _collect(feed, Change("upsert", "album11/inner/late.jpg"))
        assert Change("upsert", "album11/inner/late.jpg") in changes
        assert feed.problem is not None
    for text in ("fs.inotify.max_user_watches", "sysctl fs.inotify.max_user_watches=",
                 "/etc/sysctl.d/"):
        assert text in feed.problem and text in caplog.text


def test_the_watch_limit_hit_by_a_new_folder_switches_to_polling_and_rescans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_watch_limit(monkeypatch, limit=30)
    _folders(tmp_path, 12)  # 25 watches: within the limit
    with ChangeFeed(tmp_path, "inotify", 0.2, 0.1, lambda name: name.endswith(".jpg")) as feed:
        assert feed.problem is None
        _folders(tmp_path / "more", 6)  # 13 more folders: over it
        changes = _collect(feed, Change("rescan", ""))
        assert Change("rescan", "") in changes and feed.problem is not None
        (tmp_path / "more" / "album05" / "inner" / "new.jpg").write_bytes(b"photo")
        assert Change("upsert", "more/album05/inner/new.jpg") in _collect(
            feed, Change("upsert", "more/album05/inner/new.jpg"))


@pytest.mark.timeout(120)
def test_the_daemon_over_the_watch_limit_says_so_in_status_and_keeps_sorting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for index in range(12):
        write_photo(tmp_path / "photos" / f"album{index:02d}" / "p.jpg",
                    list(COLOURS.values())[index % 3], seed=index)
    config = write_config(tmp_path, "[watch]\nsettle_seconds = 0.3\npoll_interval_seconds = 0.5\n"
                                    'mode = "inotify"\nrescan_every_minutes = 0\n')
    daemon = DaemonProcess(config, {"PHOTOCLUSTER_TEST_WATCH_LIMIT": "5"})
    try:
        wait_until(lambda: all_linked(tmp_path), 60, "the library to be linked")
        write_photo(tmp_path / "photos" / "album11" / "late.jpg", COLOURS["red"], seed=99)
        wait_until(lambda: all_linked(tmp_path), 30, "the late photo to be linked")
        capsys.readouterr()
        assert cli.main(["-c", str(config), "status"]) == 0
        shown = capsys.readouterr().out
    finally:
        assert daemon.stop() == 0
    assert "watching: inotify cannot watch every folder" in shown
    assert "sysctl fs.inotify.max_user_watches=" in shown

"""watcher: raw watchdog events -> settled, coalesced changes; root presence; overflow."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, WatchDescriptor

from photocluster.watch import Change, ChangeFeed, mounts, observers
from photocluster.watch import feed as feed_module
from photocluster.watch.settle import Settler

SETTLE = 1.0  # unit tests: the clock is explicit
REAL_SETTLE = 0.2  # integration tests: real time, kept short


def is_candidate(name: str) -> bool:
    """A stand-in for photos.is_candidate (stage modules stay independent)."""
    temp = name.startswith((".", "~")) or name.endswith((".partial", ".tmp"))
    return not temp and name.lower().endswith((".jpg", ".png"))


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [thread for thread in threading.enumerate() if thread not in before]
    assert leaked == [], f"threads left running: {leaked}"
    assert threading.active_count() == len(before)


# --- settling logic: events injected, explicit clock ------------------------------------------


class Settling:
    """A `_Settler` on a real folder, driven by explicit times."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settler = Settler(str(root), is_candidate, SETTLE)

    def write(self, rel: str, data: bytes = b"photo") -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def event(self, cls: Callable[..., object], *rels: str, now: float) -> None:
        paths = [os.path.join(str(self.root), rel) for rel in rels]  # absolute rels stay
        self.settler.add(cls(*paths), now)  # type: ignore[arg-type]

    def take(self, now: float) -> list[Change]:
        return self.settler.take(now)


@pytest.fixture
def settling(tmp_path: Path) -> Settling:
    return Settling(tmp_path)


def test_created_photo_is_upserted_once_after_it_settles(settling: Settling) -> None:
    settling.write("a.jpg")
    settling.event(FileCreatedEvent, "a.jpg", now=0.0)
    assert settling.take(0.0) == []
    assert settling.take(0.9) == []
    assert settling.take(1.0) == [Change("upsert", "a.jpg")]
    assert settling.take(5.0) == []


def test_every_event_on_a_path_restarts_its_quiet_period_and_coalesces(settling: Settling) -> None:
    settling.write("a.jpg")
    settling.event(FileCreatedEvent, "a.jpg", now=0.0)
    for now in (0.5, 1.2, 1.9):
        settling.event(FileModifiedEvent, "a.jpg", now=now)
        assert settling.take(now) == []
    settling.event(FileClosedEvent, "a.jpg", now=2.0)
    assert settling.take(2.9) == []
    assert settling.take(3.0) == [Change("upsert", "a.jpg")]


def test_a_size_change_without_events_delays_the_upsert(settling: Settling) -> None:
    settling.write("a.jpg", b"half")
    settling.event(FileCreatedEvent, "a.jpg", now=0.0)
    settling.take(0.0)  # first look
    settling.write("a.jpg", b"half and more")  # e.g. a network mount that sends no events
    assert settling.take(1.0) == []  # second look disagrees
    assert settling.take(1.5) == []
    assert settling.take(2.0) == [Change("upsert", "a.jpg")]


def test_a_later_delete_cancels_a_pending_upsert(settling: Settling) -> None:
    path = settling.write("a.jpg")
    settling.event(FileCreatedEvent, "a.jpg", now=0.0)
    os.unlink(path)
    settling.event(FileDeletedEvent, "a.jpg", now=0.1)
    assert settling.take(0.1) == [Change("delete", "a.jpg")]
    assert settling.take(10.0) == []


def test_a_rename_of_a_known_photo_is_a_move_at_once(settling: Settling) -> None:
    settling.write("b/c.jpg")
    settling.event(FileMovedEvent, "a.jpg", "b/c.jpg", now=0.0)
    assert settling.take(0.0) == [Change("move", "a.jpg", "b/c.jpg")]
    assert settling.take(10.0) == []


def test_a_rename_while_still_settling_deletes_the_old_name_and_settles_the_new(
    settling: Settling,
) -> None:
    settling.write("b.jpg")
    settling.event(FileCreatedEvent, "a.jpg", now=0.0)
    settling.event(FileMovedEvent, "a.jpg", "b.jpg", now=0.5)
    assert settling.take(0.5) == [Change("delete", "a.jpg")]
    assert settling.take(1.5) == [Change("upsert", "b.jpg")]


@pytest.mark.parametrize("temp", ["a.jpg.partial", ".syncthing.a.jpg.tmp", ".sync/a.jpg"])
def test_a_temp_name_renamed_to_a_photo_name_is_an_upsert_of_the_photo(
    settling: Settling, temp: str
) -> None:
    settling.write("a.jpg")
    settling.event(FileCreatedEvent, temp, now=0.0)
    settling.event(FileMovedEvent, temp, "a.jpg", now=0.2)
    assert settling.take(0.2) == []
    assert settling.take(1.2) == [Change("upsert", "a.jpg")]


@pytest.mark.parametrize("dest", ["a.jpg.bak", ".trash/a.jpg", "/outside/a.jpg"])
def test_a_photo_renamed_to_a_non_photo_name_is_a_delete(settling: Settling, dest: str) -> None:
    settling.event(FileMovedEvent, "a.jpg", dest, now=0.0)
    assert settling.take(0.0) == [Change("delete", "a.jpg")]


@pytest.mark.parametrize(
    "rel", ["notes.txt", "a.jpg.partial", ".a.jpg", ".stversions/a.jpg", "/elsewhere/a.jpg"]
)
def test_non_candidates_hidden_folders_and_outside_paths_are_ignored(
    settling: Settling, rel: str
) -> None:
    settling.event(FileCreatedEvent, rel, now=0.0)
    settling.event(FileDeletedEvent, rel, now=0.1)
    assert settling.take(10.0) == []


def test_opening_and_reading_a_photo_is_not_a_change(settling: Settling) -> None:
    settling.write("a.jpg")
    settling.event(FileOpenedEvent, "a.jpg", now=0.0)
    settling.event(FileClosedNoWriteEvent, "a.jpg", now=0.0)
    assert settling.take(10.0) == []


def test_a_symlink_is_not_a_photo(settling: Settling, tmp_path: Path) -> None:
    target = settling.write("real.jpg")
    os.symlink(target, tmp_path / "link.jpg")
    settling.event(FileCreatedEvent, "link.jpg", now=0.0)
    settling.take(0.0)
    assert settling.take(1.0) == [Change("delete", "link.jpg")]  # the daemon ignores unknowns


def test_a_photo_gone_without_its_event_yet_is_dropped_not_deleted(settling: Settling) -> None:
    settling.event(FileCreatedEvent, "a.jpg", now=0.0)
    assert settling.take(0.0) == []
    assert settling.take(5.0) == []


def test_undecodable_names_keep_their_surrogate_escapes(settling: Settling) -> None:
    name = os.fsdecode(b"caf\xe9.jpg")
    (settling.root / name).write_bytes(b"photo")
    settling.event(FileCreatedEvent, name, now=0.0)
    settling.take(0.0)
    assert settling.take(1.0) == [Change("upsert", name)]
    assert os.fsencode(name) == b"caf\xe9.jpg"


def test_a_new_folder_is_rescanned_once_its_subtree_is_quiet(settling: Settling) -> None:
    settling.event(DirCreatedEvent, "album", now=0.0)
    settling.event(FileCreatedEvent, "album/x.jpg.partial", now=0.8)  # still copying
    assert settling.take(1.0) == []
    assert settling.take(1.8) == [Change("rescan", "album")]


def test_a_rescan_waits_for_quiet_at_most_ten_settle_periods(settling: Settling) -> None:
    settling.event(DirCreatedEvent, "album", now=0.0)
    for tenth in range(1, 100):
        settling.event(FileModifiedEvent, "album/big.jpg.partial", now=tenth / 10)
        assert settling.take(tenth / 10) == []
    assert settling.take(10.0) == [Change("rescan", "album")]


def test_a_deleted_folder_is_rescanned_and_nested_rescans_coalesce(settling: Settling) -> None:
    settling.event(DirDeletedEvent, "a/b", now=0.0)
    settling.event(DirCreatedEvent, "a", now=0.0)
    settling.event(DirCreatedEvent, "a/c", now=0.0)
    settling.event(DirCreatedEvent, ".hidden", now=0.0)
    assert settling.take(1.0) == [Change("rescan", "a")]


def test_a_folder_moved_inside_the_tree_is_left_to_its_files_own_moves(
    settling: Settling,
) -> None:
    settling.event(DirMovedEvent, "a", "b", now=0.0)
    settling.event(FileMovedEvent, "a/x.jpg", "b/x.jpg", now=0.0)
    assert settling.take(10.0) == [Change("move", "a/x.jpg", "b/x.jpg")]


def test_an_overflow_asks_for_a_rescan_of_everything(settling: Settling) -> None:
    settling.event(DirCreatedEvent, "a", now=0.0)
    settling.settler.add(observers.OverflowEvent(str(settling.root)), 0.0)
    assert settling.take(1.0) == [Change("rescan", "")]


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/srv/photos/2024", "nfs4"), ("/srv/photo", "ext4"), ("/mnt/my photos/a", "fuse.sshfs")],
)
def test_mount_type_takes_the_innermost_mount(path: str, expected: str) -> None:
    mountinfo = (
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "40 27 0:50 / /srv/photos rw shared:1 - nfs4 nas:/photos rw\n"
        "41 27 0:51 / /mnt/my\\040photos rw - fuse.sshfs me@nas:/ rw\n"
    )
    assert mounts._mount_type(path, mountinfo) == expected


@pytest.mark.parametrize(
    ("fstype", "remote"),
    [("nfs", True), ("cifs", True), ("fuse.rclone", True), ("9p", True), ("ext4", False),
     ("btrfs", False), ("fuseblk", False)],
)  # fmt: skip
def test_network_and_fuse_filesystems_are_polled(fstype: str, remote: bool) -> None:
    assert mounts.is_remote(fstype) is remote


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="watch mode"):
        ChangeFeed(tmp_path, "fanotify", REAL_SETTLE, 1.0, is_candidate)


# --- the real observer in tmp_path ---------------------------------------------------------


def open_feed(root: Path, mode: str = "inotify", **kwargs: object) -> ChangeFeed:
    return ChangeFeed(root, mode, REAL_SETTLE, 0.1, is_candidate, **kwargs)  # type: ignore[arg-type]


def collect(
    feed: ChangeFeed, until: Callable[[list[Change]], bool], limit: float = 5.0
) -> list[Change]:
    """Batches until `until(changes)` holds, then a short quiet look for stragglers."""
    changes: list[Change] = []
    deadline = time.monotonic() + limit
    while not until(changes) and time.monotonic() < deadline:
        changes += feed.get_batch(0.1)
    return changes + feed.get_batch(2 * REAL_SETTLE)


def test_a_created_photo_becomes_one_upsert(tmp_path: Path) -> None:
    with open_feed(tmp_path) as feed:
        (tmp_path / "a.jpg").write_bytes(b"photo")
        assert collect(feed, lambda c: bool(c)) == [Change("upsert", "a.jpg")]


def test_a_slow_chunked_write_yields_one_upsert_after_the_writes_stop(tmp_path: Path) -> None:
    settle = 0.4  # well above the pause between chunks, for a busy machine
    done = threading.Event()

    def write_slowly() -> None:
        with open(tmp_path / "slow.jpg", "wb") as file:
            for _ in range(20):  # about 1 s
                file.write(b"x" * 4096)
                file.flush()
                time.sleep(0.05)
        done.set()

    writer = threading.Thread(target=write_slowly)
    with ChangeFeed(tmp_path, "inotify", settle, 0.1, is_candidate) as feed:
        writer.start()
        while not done.is_set():
            assert feed.get_batch(0.1) == []
        changes = collect(feed, bool)
    writer.join()
    assert changes == [Change("upsert", "slow.jpg")]


def test_a_temp_file_renamed_into_place_is_one_upsert(tmp_path: Path) -> None:
    with open_feed(tmp_path) as feed:
        (tmp_path / "a.jpg.partial").write_bytes(b"photo")
        os.rename(tmp_path / "a.jpg.partial", tmp_path / "a.jpg")
        assert collect(feed, bool) == [Change("upsert", "a.jpg")]


def test_a_move_and_a_delete_inside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"a")
    (tmp_path / "b.jpg").write_bytes(b"b")
    with open_feed(tmp_path) as feed:
        os.rename(tmp_path / "a.jpg", tmp_path / "sub" / "c.jpg")
        os.unlink(tmp_path / "b.jpg")
        changes = collect(feed, lambda c: len(c) >= 2)
    assert changes == [Change("move", "a.jpg", "sub/c.jpg"), Change("delete", "b.jpg")]


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_a_folder_moved_inside_the_tree_moves_each_photo(tmp_path: Path, mode: str) -> None:
    (tmp_path / "old" / "deep").mkdir(parents=True)
    (tmp_path / "old" / "a.jpg").write_bytes(b"a")
    (tmp_path / "old" / "deep" / "b.jpg").write_bytes(b"b")
    with open_feed(tmp_path, mode) as feed:
        os.rename(tmp_path / "old", tmp_path / "new")
        changes = collect(feed, lambda c: len(c) >= 2)
    assert sorted(changes, key=str) == [
        Change("move", "old/a.jpg", "new/a.jpg"),
        Change("move", "old/deep/b.jpg", "new/deep/b.jpg"),
    ]


def test_a_new_folder_with_photos_is_rescanned_and_its_photos_upserted(tmp_path: Path) -> None:
    with open_feed(tmp_path) as feed:
        (tmp_path / "album").mkdir()
        for name in ("1.jpg", "2.png", "notes.txt"):
            (tmp_path / "album" / name).write_bytes(b"photo")
        changes = collect(feed, lambda c: len(c) >= 3)
    assert sorted(changes, key=str) == [
        Change("rescan", "album"),
        Change("upsert", "album/1.jpg"),
        Change("upsert", "album/2.png"),
    ]


def test_undecodable_file_names_arrive_with_surrogate_escapes(tmp_path: Path) -> None:
    with open_feed(tmp_path) as feed:
        with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg"), "wb") as file:
            file.write(b"photo")
        assert collect(feed, bool) == [Change("upsert", os.fsdecode(b"caf\xe9.jpg"))]


def test_polling_mode_sees_new_photos(tmp_path: Path) -> None:
    with open_feed(tmp_path, "polling") as feed:
        (tmp_path / "a.jpg").write_bytes(b"photo")
        assert collect(feed, bool) == [Change("upsert", "a.jpg")]


def test_inotify_that_cannot_start_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_watches(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(feed_module, "InotifyObserver", no_watches)
    with open_feed(tmp_path, "auto") as feed:
        (tmp_path / "a.jpg").write_bytes(b"photo")
        assert collect(feed, bool) == [Change("upsert", "a.jpg")]


def test_settling_follows_the_injected_clock(tmp_path: Path) -> None:
    now = [100.0]
    with open_feed(tmp_path, clock=lambda: now[0]) as feed:
        (tmp_path / "a.jpg").write_bytes(b"photo")
        assert feed.get_batch(3 * REAL_SETTLE) == []  # events read, but the clock stands still
        now[0] += REAL_SETTLE
        assert feed.get_batch(0) == [Change("upsert", "a.jpg")]


@pytest.mark.parametrize("how", ["unmounted", "deleted and recreated"])
def test_a_vanished_root_pauses_without_deletes_and_its_return_asks_for_a_rescan(
    tmp_path: Path, how: str
) -> None:
    root, away = tmp_path / "photos", tmp_path / "unmounted"
    root.mkdir()
    (root / "old.jpg").write_bytes(b"photo")
    with open_feed(root) as feed:
        assert feed.root_present
        (root / "new.jpg").write_bytes(b"photo")  # pending when the root goes
        feed.get_batch(0)
        if how == "unmounted":
            os.rename(root, away)  # the same folder, elsewhere: like a mount going away
        else:
            shutil.rmtree(root)  # its files' deletion events must not become deletes
        assert feed.get_batch(3 * REAL_SETTLE) == []
        assert not feed.root_present
        if how == "unmounted":
            os.rename(away, root)
        else:
            root.mkdir()
            (root / "old.jpg").write_bytes(b"photo")
        assert feed.get_batch(0) == [Change("rescan", "")]
        assert feed.root_present
        (root / "later.jpg").write_bytes(b"photo")  # watched again
        assert collect(feed, bool) == [Change("upsert", "later.jpg")]


def test_an_empty_replacement_root_stays_paused_until_it_holds_files(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    with open_feed(root) as feed:
        root.rmdir()
        root.mkdir()  # a bare mount point looks like this
        assert feed.get_batch(2 * REAL_SETTLE) == []
        assert not feed.root_present
        (root / "a.jpg").write_bytes(b"photo")
        assert feed.get_batch(0) == [Change("rescan", "")]
        assert feed.root_present


def test_a_root_missing_at_start_is_waited_for(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    with open_feed(root) as feed:
        assert not feed.root_present
        assert feed.get_batch(0) == []
        root.mkdir()
        (root / "a.jpg").write_bytes(b"photo")
        assert feed.get_batch(0) == [Change("rescan", "")]


def test_an_inotify_overflow_becomes_a_rescan_of_everything(tmp_path: Path) -> None:
    with open_feed(tmp_path) as feed:
        # What the kernel queues when events were dropped, fed through watchdog's own reader.
        overflow = InotifyEvent(WatchDescriptor(-1), InotifyConstants.IN_Q_OVERFLOW, 0, b"")
        feed._observer._inotify_fd.handle_event(overflow)  # type: ignore[union-attr]
        assert collect(feed, bool) == [Change("rescan", "")]


def test_a_real_kernel_queue_overflow_becomes_a_rescan(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many events to queue quickly")
    # Another process changes two files' times as fast as it can; this process reads the
    # events far slower than that, so the kernel queue fills within a fraction of a second.
    script = (
        "import os, sys\n"
        "a, b = sys.argv[1] + '/a', sys.argv[1] + '/b'\n"
        "open(a, 'w').close(); open(b, 'w').close()\n"
        "for i in range(int(sys.argv[2])):\n"
        "    os.utime(a if i & 1 else b, ns=(i, i))\n"
    )
    with open_feed(tmp_path) as feed:
        subprocess.run([sys.executable, "-c", script, str(tmp_path), str(6 * limit)], check=True)
        changes = collect(feed, lambda c: Change("rescan", "") in c, limit=4.0)
    if not changes:
        pytest.skip("the kernel queue did not overflow on this machine")
    assert set(changes) == {Change("rescan", "")}

"""The daemon end to end: real observer, real temp folders, the fake embedder, signals."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from photocluster import photos
from photocluster.store import Store
from tests.support.config import write_config
from tests.support.consistency import all_linked, assert_consistent, catalog_paths, linked
from tests.support.daemon import DaemonProcess, NotifyListener, wait_until
from tests.support.fakes import FakeEmbedder
from tests.support.photos import COLOURS, write_photo

pytestmark = pytest.mark.timeout(120)

RECLUSTERED = "photocluster.recluster: recluster: "
FAST = "[watch]\nsettle_seconds = 0.3\nrescan_every_minutes = 0\n"


@pytest.fixture
def daemon_base(tmp_path: Path, colour_library: Path) -> Path:
    write_config(tmp_path, FAST)
    return tmp_path


@pytest.fixture
def daemon(daemon_base: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(daemon_base / "config.toml")
    process.wait_for_log(RECLUSTERED)
    wait_until(lambda: all_linked(daemon_base), 30, "the first library to be linked")
    yield process
    assert process.stop() == 0
    assert_consistent(daemon_base)


def _wait_linked(base: Path, timeout: float = 30) -> dict[str, str]:
    wait_until(lambda: all_linked(base), timeout, "every photo on disk to be linked once")
    return linked(base / "clusters", base / "photos")


def test_a_new_library_is_ingested_clustered_and_linked_at_start(
    daemon: DaemonProcess, daemon_base: Path
) -> None:
    tree = _wait_linked(daemon_base)
    assert len(tree) == 18 and len(set(tree.values())) == 3
    assert "ready: 0 photos known, 18 to read" in daemon.log


@pytest.mark.parametrize(
    "temp_name", ["new.jpg.partial", ".syncthing.new.jpg.tmp", ".new.jpg.Ab12"]
)
def test_sync_client_temp_name_then_rename_links_the_final_name_only(
    daemon: DaemonProcess, daemon_base: Path, temp_name: str
) -> None:
    photo_root = daemon_base / "photos"
    temporary = write_photo(photo_root / "red" / temp_name, COLOURS["red"], seed=77)
    time.sleep(0.5)  # the temp file sits there unsettled, as a sync client leaves it
    temporary.rename(photo_root / "red" / "new.jpg")
    tree = _wait_linked(daemon_base)
    assert tree["red/new.jpg"] == tree["red/red_0.jpg"]
    assert not any(temp_name in path for path in tree)


def test_slow_chunked_write_is_embedded_once_complete(
    daemon: DaemonProcess, daemon_base: Path, tmp_path: Path
) -> None:
    source = write_photo(tmp_path / "elsewhere" / "slow.jpg", COLOURS["blue"], size=256, seed=5)
    data = source.read_bytes()
    target = daemon_base / "photos" / "blue" / "slow.jpg"
    with target.open("wb") as handle:
        for start in range(0, len(data), len(data) // 8 + 1):
            handle.write(data[start : start + len(data) // 8 + 1])
            handle.flush()
            time.sleep(0.2)  # slower than nothing, faster than settle_seconds
    _wait_linked(daemon_base)
    image = photos.decode_rgb(data, 32, 10**8, FakeEmbedder.pad_rgb)
    expected = FakeEmbedder().embed(image[None])[0]
    store = Store.open_readonly(daemon_base / "state")
    try:
        record = store.file("blue/slow.jpg")
        assert record is not None and record.error is None
        assert record.content is not None
        vector = store.vectors_of(np.asarray([record.content], np.int64))[0]
    finally:
        store.close()
    assert vector is not None
    np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_move_rename_delete_and_modify_update_catalog_and_links_without_reembedding(
    daemon: DaemonProcess, daemon_base: Path
) -> None:
    root = daemon_base / "photos"
    (root / "red" / "red_0.jpg").rename(root / "red" / "renamed.jpg")
    (root / "moved").mkdir()
    (root / "green" / "green_1.jpg").rename(root / "moved" / "green_1.jpg")
    (root / "blue" / "blue_2.jpg").unlink()
    write_photo(root / "blue" / "blue_3.jpg", COLOURS["red"], seed=33)  # modified: now red
    wait_until(lambda: "blue/blue_2.jpg" not in catalog_paths(daemon_base / "state"), 30, "delete")
    tree = _wait_linked(daemon_base)
    assert tree["red/renamed.jpg"] == tree["red/red_1.jpg"]
    assert tree["moved/green_1.jpg"] == tree["green/green_0.jpg"]
    wait_until(
        lambda: (
            linked(daemon_base / "clusters", root).get("blue/blue_3.jpg") == tree["red/red_1.jpg"]
        ),
        30,
        "the modified photo to move to the red cluster",
    )
    assert daemon.log.count("moved") >= 1


def test_a_burst_of_500_photos_is_ingested_in_batches(
    daemon: DaemonProcess, daemon_base: Path, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    for index in range(500):
        colour = list(COLOURS.values())[index % 3]
        write_photo(staging / f"burst_{index:03d}.jpg", colour, size=32, seed=100 + index)
    shutil.copytree(staging, daemon_base / "photos" / "burst")
    tree = _wait_linked(daemon_base, timeout=90)
    assert len(tree) == 518


def test_kill_9_mid_burst_then_restart_loses_and_duplicates_nothing(
    daemon_base: Path, tmp_path: Path
) -> None:
    process = DaemonProcess(daemon_base / "config.toml")
    _wait_linked(daemon_base)
    for index in range(300):
        colour = list(COLOURS.values())[index % 3]
        write_photo(
            daemon_base / "photos" / "burst" / f"b_{index:03d}.jpg", colour, size=48, seed=index
        )
    wait_until(lambda: len(catalog_paths(daemon_base / "state")) > 40, 60, "ingest to begin")
    process.kill()
    restarted = DaemonProcess(daemon_base / "config.toml")
    _wait_linked(daemon_base, timeout=90)
    assert restarted.stop() == 0
    assert_consistent(daemon_base)


def test_photo_root_vanishing_deletes_nothing_and_is_reconciled_on_return(
    daemon: DaemonProcess, daemon_base: Path
) -> None:
    root = daemon_base / "photos"
    away = daemon_base / "photos-away"
    before = catalog_paths(daemon_base / "state")
    root.rename(away)
    daemon.wait_for_log("missing")
    time.sleep(1.0)
    assert catalog_paths(daemon_base / "state") == before
    assert len(list((daemon_base / "clusters").glob("cluster-*/*"))) == 18
    write_photo(away / "green" / "while_away.jpg", COLOURS["green"], seed=42)
    away.rename(root)
    tree = _wait_linked(daemon_base)
    assert "green/while_away.jpg" in tree


def test_sd_notify_signals_and_reclusters_on_sigusr1_once_more_when_asked_during_one(
    daemon_base: Path,
) -> None:
    listener = NotifyListener(daemon_base / "notify.sock")
    env = {
        "NOTIFY_SOCKET": listener.path,
        "WATCHDOG_USEC": "1000000",
        "PHOTOCLUSTER_TEST_SLOW_RECLUSTER": "1.5",
    }
    process = DaemonProcess(daemon_base / "config.toml", env)
    process.wait_for_log(RECLUSTERED, timeout=40)
    wait_until(lambda: all_linked(daemon_base), 30, "the library to be linked")
    process.signal(signal.SIGUSR1)
    process.wait_for_log("SIGUSR1", count=1)
    time.sleep(0.5)  # the slowed recluster is now computing
    process.signal(signal.SIGUSR1)
    process.wait_for_log(RECLUSTERED, count=3, timeout=40)
    time.sleep(2.5)
    assert process.log.count(RECLUSTERED) == 3  # the startup one, then exactly two
    started = time.monotonic()
    assert process.stop(timeout=10) == 0
    assert time.monotonic() - started < 10
    messages = listener.close()
    assert "READY=1" in messages and "WATCHDOG=1" in messages and "STOPPING=1" in messages
    assert any(m.startswith("STATUS=") for m in messages)


def test_sighup_with_a_broken_config_keeps_running_and_logs_every_problem(
    daemon: DaemonProcess, daemon_base: Path
) -> None:
    config = daemon_base / "config.toml"
    good = config.read_text()
    config.write_text(good.replace("k_min = 2", "k_min = 0") + "[bogus]\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("configuration not reloaded")
    assert "bogus" in daemon.log and "clustering.k_min" in daemon.log
    config.write_text(good.replace("k_max = 6", "k_max = 5"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("configuration reloaded")
    assert daemon.process.poll() is None


def test_photos_arriving_during_a_recluster_land_in_the_new_tree(daemon_base: Path) -> None:
    env = {"PHOTOCLUSTER_TEST_SLOW_RECLUSTER": "2.0"}
    process = DaemonProcess(daemon_base / "config.toml", env)
    try:
        process.wait_for_log(RECLUSTERED, timeout=40)
        wait_until(lambda: all_linked(daemon_base), 30, "the library to be linked")
        live = os.readlink(daemon_base / "clusters")
        process.signal(signal.SIGUSR1)
        process.wait_for_log("SIGUSR1")
        for index in range(4):  # while the recluster computes on its snapshot
            write_photo(daemon_base / "photos" / "late" / f"late_{index}.jpg", COLOURS["red"],
                        seed=50 + index)
        process.wait_for_log(RECLUSTERED, count=2, timeout=40)
        wait_until(lambda: os.readlink(daemon_base / "clusters") != live, 30, "the swap")
        tree = _wait_linked(daemon_base)
        assert {tree[f"late/late_{i}.jpg"] for i in range(4)} == {tree["red/red_0.jpg"]}
    finally:
        assert process.stop() == 0
    assert_consistent(daemon_base)

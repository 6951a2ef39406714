"""Corrections with the real daemon running: the command line asks it, edits in the tree are
read while it runs, and an edit made while a regrouping swaps the tree is not lost."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from photocluster import cli, status
from tests.support.config import write_config
from tests.support.consistency import all_linked, assert_consistent, linked
from tests.support.daemon import DaemonProcess, wait_until

pytestmark = pytest.mark.timeout(120)

RECLUSTERED = "photocluster.recluster: recluster: "
SWAPPED = "photocluster.tree.generations: swapped "
FAST = "[watch]\nsettle_seconds = 0.3\nrescan_every_minutes = 0\n"


def _started(base: Path, env: dict[str, str] | None = None) -> DaemonProcess:
    daemon = DaemonProcess(write_config(base, FAST), env)
    daemon.wait_for_log(RECLUSTERED, timeout=40)
    wait_until(lambda: all_linked(base), 30, "the first library to be linked")
    return daemon


def _tree(base: Path) -> dict[str, str]:
    """The tree as linked now, read again when the daemon rewrote a folder during the read (a
    link listed, then gone before it was read)."""
    for _ in range(50):
        with contextlib.suppress(OSError):
            return linked(base / "clusters", base / "photos")
        time.sleep(0.1)
    return linked(base / "clusters", base / "photos")


def _labels(base: Path) -> dict[str, str]:
    return dict(status.collect(base / "state")["labels"])


def test_name_pin_and_unpin_ask_the_running_daemon_which_also_reads_renamed_folders(
    tmp_path: Path, colour_library: Path
) -> None:
    daemon = _started(tmp_path)
    config, clusters = str(tmp_path / "config.toml"), tmp_path / "clusters"
    try:
        tree = _tree(tmp_path)
        red, green, blue = (tree[f"{c}/{c}_0.jpg"] for c in ("red", "green", "blue"))
        assert cli.main(["-c", config, "name", red, "Beach"]) == 0
        assert (clusters / "Beach").is_dir() and _labels(tmp_path) == {red: "Beach"}
        assert cli.main(["-c", config, "name", blue, "beach"]) == 2  # refused by the daemon
        assert cli.main(["-c", config, "pin", "blue/blue_0.jpg", "Beach"]) == 0
        assert _tree(tmp_path)["blue/blue_0.jpg"] == "Beach"
        os.rename(clusters / green, clusters / "Forest")  # by hand, in a file manager
        wait_until(lambda: _labels(tmp_path).get(green) == "Forest", 10, "the rename to be read")
        daemon.signal(signal.SIGUSR1)
        daemon.wait_for_log(RECLUSTERED, count=2, timeout=40)
        daemon.wait_for_log(SWAPPED, count=2)
        tree = _tree(tmp_path)
        assert tree["red/red_1.jpg"] == "Beach" and tree["green/green_1.jpg"] == "Forest"
        assert tree["blue/blue_0.jpg"] == "Beach"
        assert cli.main(["-c", config, "unpin", "blue/blue_0.jpg"]) == 0
        assert status.collect(tmp_path / "state")["pins"] == []
    finally:
        assert daemon.stop() == 0
    assert_consistent(tmp_path)


def test_a_rename_and_a_moved_link_made_during_a_slow_swap_are_not_lost(
    tmp_path: Path, colour_library: Path
) -> None:
    daemon = _started(tmp_path, {"PHOTOCLUSTER_TEST_SLOW_SWAP": "1.0"})
    clusters = tmp_path / "clusters"
    try:
        tree = _tree(tmp_path)
        red, blue = tree["red/red_0.jpg"], tree["blue/blue_0.jpg"]
        daemon.signal(signal.SIGUSR1)
        daemon.wait_for_log("test hook: tree built, not yet renamed", count=2, timeout=40)
        link = next(path for path in (clusters / red).iterdir()
                    if os.readlink(path).endswith("red/red_1.jpg"))
        os.rename(link, clusters / blue / link.name)  # the old generation is still live
        os.rename(clusters / red, clusters / "Beach")
        daemon.wait_for_log(SWAPPED, count=2, timeout=30)
        wait_until(lambda: _labels(tmp_path) == {red: "Beach"}, 10, "the late rename")
        wait_until(lambda: _tree(tmp_path).get("red/red_1.jpg") == blue, 10, "the late pin")
        assert _tree(tmp_path)["red/red_0.jpg"] == "Beach"
    finally:
        assert daemon.stop() == 0
    assert_consistent(tmp_path)

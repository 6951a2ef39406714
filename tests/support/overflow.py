"""A load run: many small JPEGs dropped at once into the running daemon while its inotify
reader is stalled, so the kernel queue overflows for real and only the rescan finds them."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.support.consistency import all_linked, catalog_paths, photos_on_disk, wait_settled
from tests.support.crash import PALETTE, RECLUSTERED, make_library
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.photos import write_photo


def drop_and_overflow(base: Path, count: int, staging: Path) -> float:
    """With the daemon's inotify reader stalled, overflow the kernel queue, then drop `count`
    JPEGs (their events are lost), then let the reader go. Returns when the drop began."""
    flag = base / "stall-inotify"
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    flood_a, flood_b = base / "photos" / "flood-a.txt", base / "photos" / "flood-b.txt"
    flood_a.touch()
    flood_b.touch()
    for index in range(limit + 100):  # alternate: the kernel merges identical neighbours
        os.utime(flood_a if index & 1 else flood_b, ns=(index, index))
    started = time.monotonic()
    shutil.copytree(staging, base / "photos" / "dropped")
    flag.unlink()
    return started


def make_small_jpegs(folder: Path, count: int) -> None:
    for index in range(count):
        colour = PALETTE[index % len(PALETTE)]
        write_photo(folder / f"{index // 500:02d}" / f"p{index:05d}.jpg", colour, size=16,
                    seed=index)


def load_run(base: Path, count: int, timeout: float) -> tuple[int, float, str]:
    """`count` small JPEGs dropped at once into the running daemon with a forced inotify
    overflow. Returns (photos indexed, seconds from the drop until all were linked, log)."""
    make_library(base, per_colour=2)
    staging = base / "staging"
    make_small_jpegs(staging, count)
    flag = base / "stall-inotify"
    daemon = DaemonProcess(base / "config.toml", {"PHOTOCLUSTER_TEST_STALL_INOTIFY": str(flag)})
    try:
        daemon.wait_for_log(RECLUSTERED, timeout=60)
        wait_settled(base)
        flag.touch()
        (base / "photos" / "wake.txt").touch()  # the reader reads this, then stalls
        daemon.wait_for_log("test hook: inotify reader stalled")
        started = drop_and_overflow(base, count, staging)
        with_dropped = len(photos_on_disk(base))
        wait_until(lambda: all_linked(base), timeout, f"{count} dropped photos to be linked")
        seconds = time.monotonic() - started
        indexed = sum(1 for path in catalog_paths(base / "state") if path.startswith("dropped/"))
        assert len(catalog_paths(base / "state")) == with_dropped
    finally:
        assert daemon.stop(timeout=60) == 0
    return indexed, seconds, daemon.log

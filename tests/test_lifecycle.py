"""The daemon under a service manager's hand: reload, signal bursts, the watchdog through long
work and a stuck worker, READY before the slow start-up work, and a quick clean stop."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from photocluster.errors import StateError
from photocluster.fsutil import TEMP_PREFIX
from tests.support.config import write_config
from tests.support.consistency import all_linked, assert_consistent, catalog_paths, linked
from tests.support.daemon import DaemonProcess, NotifyListener, wait_until
from tests.support.photos import COLOURS, write_photo

pytestmark = pytest.mark.timeout(180)

RECLUSTERED = "photocluster.recluster: recluster: "
FAST = "[watch]\nsettle_seconds = 0.3\nrescan_every_minutes = 0\n"
EMBED_SECONDS = "0.25"  # what VGG16 costs a photo on this machine's CPU
WATCHDOG_USEC = 2_000_000  # WatchdogSec=2: pings every second
STALL_SECONDS = 4.0


@pytest.fixture
def base(tmp_path: Path, colour_library: Path) -> Path:
    write_config(tmp_path, FAST)
    return tmp_path


@pytest.fixture
def daemon(base: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(base / "config.toml")
    process.wait_for_log(RECLUSTERED)
    wait_until(lambda: all_linked(base), 30, "the first library to be linked")
    yield process
    assert process.stop() == 0
    assert_consistent(base)


def _wait_linked(base: Path, timeout: float = 30) -> dict[str, str]:
    wait_until(lambda: all_linked(base), timeout, "every photo on disk to be linked once")
    return linked(base / "clusters", base / "photos")


def _add_photos(base: Path, count: int) -> None:
    for index in range(count):
        colour = list(COLOURS.values())[index % 3]
        write_photo(base / "photos" / "more" / f"more_{index:02d}.jpg", colour, seed=200 + index)


def _stored(base: Path) -> int:
    try:
        return len(catalog_paths(base / "state"))
    except StateError:  # the catalog's tables are not made yet
        return 0


def _embedded(log: str) -> int:
    return sum(int(n) for n in re.findall(r"sync: (\d+) embedded", log))


# ---- reload


def test_sighup_keeps_the_running_photo_folder_and_says_the_new_one_waits_for_a_restart(
    daemon: DaemonProcess, base: Path
) -> None:
    write_photo(base / "elsewhere" / "green" / "far.jpg", COLOURS["green"], seed=9)
    config = base / "config.toml"
    config.write_text(config.read_text().replace('photos = "photos"', 'photos = "elsewhere"'))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("configuration reloaded")
    assert "[paths] take effect at restart" in daemon.log
    # The worker takes the new configuration between two steps: by the step after the one that
    # links the first photo, it has; the second photo is read under it.
    for name in ("late.jpg", "later.jpg"):
        write_photo(base / "photos" / "red" / name, COLOURS["red"], seed=len(name))
        tree = _wait_linked(base)
    assert tree["red/late.jpg"] == tree["red/later.jpg"] == tree["red/red_0.jpg"]
    assert set(catalog_paths(base / "state")) == set(tree)  # nothing read from elsewhere/


def test_sighup_with_a_config_that_is_a_directory_not_utf8_or_gone_keeps_running(
    daemon: DaemonProcess, base: Path
) -> None:
    config = base / "config.toml"
    good = config.read_bytes()

    def a_directory() -> None:
        config.unlink()
        config.mkdir()

    def not_utf8() -> None:
        config.rmdir()
        config.write_bytes(good + b"# \xff\xfe\n")

    for count, spoil in enumerate([a_directory, not_utf8, config.unlink], start=1):
        spoil()
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("configuration not reloaded", count=count)
        assert daemon.process.poll() is None
    config.write_bytes(good.replace(b"k_max = 6", b"k_max = 5"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("configuration reloaded")
    assert "Traceback" not in daemon.log


# ---- signals


def test_a_burst_of_signals_reloads_reclusters_and_stops_without_waiting_for_a_recluster(
    base: Path,
) -> None:
    process = DaemonProcess(base / "config.toml", {"PHOTOCLUSTER_TEST_SLOW_RECLUSTER": "60"})
    try:
        process.wait_for_log("sync: ", timeout=60)  # the backlog is in: a recluster computes
        time.sleep(0.5)
        for signum in [signal.SIGHUP] * 5 + [signal.SIGUSR1] * 3 + [signal.SIGHUP]:
            process.signal(signum)
        process.wait_for_log("configuration reloaded")
        process.wait_for_log("SIGUSR1: recluster requested")
        time.sleep(1.0)  # let a late reload of the burst land before counting
        assert 1 <= process.log.count("configuration reloaded") <= 6
        started = time.monotonic()
        for _ in range(3):
            process.signal(signal.SIGTERM)
        assert process.process.wait(timeout=30) == 0
        assert time.monotonic() - started < 10  # not the 60 s the recluster still computes
    finally:
        process.stop()
    assert "Traceback" not in process.log and "SIGTERM: stopping" in process.log


# ---- the watchdog


def test_watchdog_pings_go_on_through_a_long_backlog_and_stop_while_the_worker_is_stuck(
    base: Path,
) -> None:
    _add_photos(base, 22)  # 40 photos at 0.25 s: a 10 s backlog, past the 4 s stall limit
    listener = NotifyListener(base / "notify.sock")
    hang = base / "hang"
    env = {
        "NOTIFY_SOCKET": listener.path,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "PHOTOCLUSTER_TEST_EMBED_SECONDS": EMBED_SECONDS,
        "PHOTOCLUSTER_TEST_STALL_SECONDS": str(STALL_SECONDS),
        "PHOTOCLUSTER_TEST_HANG_EMBED": str(hang),
    }
    process = DaemonProcess(base / "config.toml", env)
    try:
        process.wait_for_log("sync: 40 embedded", timeout=90)
        done = time.monotonic()
        ready = listener.times_of("READY=1")[0]
        assert done - ready > STALL_SECONDS
        beats = [ready, *(t for t in listener.times_of("WATCHDOG=1") if t > ready), done]
        longest = max(later - earlier for earlier, later in zip(beats, beats[1:], strict=False))
        assert longest < WATCHDOG_USEC / 1e6, f"{longest:.2f} s without a ping"

        hang.touch()
        write_photo(base / "photos" / "red" / "stuck.jpg", COLOURS["red"], seed=99)
        process.wait_for_log("test hook: embedder hung")
        time.sleep(STALL_SECONDS + 2.0)
        quiet_from = time.monotonic()
        time.sleep(3.0)
        assert not [t for t in listener.times_of("WATCHDOG=1") if t > quiet_from]
        hang.unlink()
        wait_until(
            lambda: any(t > quiet_from for t in listener.times_of("WATCHDOG=1")),
            20,
            "the pings to resume once the worker moves again",
        )
        _wait_linked(base)
    finally:
        hang.unlink(missing_ok=True)
        assert process.stop(timeout=30) == 0
        listener.close()


# ---- start and stop


def test_sigterm_mid_backlog_exits_at_once_and_the_restart_embeds_only_the_rest(
    base: Path,
) -> None:
    _add_photos(base, 22)
    env = {"PHOTOCLUSTER_TEST_EMBED_SECONDS": EMBED_SECONDS}
    process = DaemonProcess(base / "config.toml", env)
    wait_until(lambda: _stored(base) >= 8, 60, "a first batch stored")
    started = time.monotonic()
    assert process.stop(timeout=30) == 0
    assert time.monotonic() - started < 8  # the batch in hand (2 s), not the backlog (10 s)
    first = _embedded(process.log)
    assert 8 <= first < 40

    restarted = DaemonProcess(base / "config.toml")
    _wait_linked(base)
    assert restarted.stop() == 0
    assert first + _embedded(restarted.log) == 40  # nothing stored was embedded again
    assert_consistent(base)


def test_ready_comes_before_the_tree_repair_which_a_stop_abandons_or_cuts_short(
    base: Path,
) -> None:
    first = DaemonProcess(base / "config.toml")
    _wait_linked(base)
    assert first.stop() == 0
    os.unlink(base / "clusters")  # the tree is gone: the next start rebuilds it from the catalog

    listener = NotifyListener(base / "notify.sock")
    env = {"NOTIFY_SOCKET": listener.path, "PHOTOCLUSTER_TEST_SLOW_CLUSTER": "1.0"}
    repairing = DaemonProcess(base / "config.toml", env)
    wait_until(lambda: "READY=1" in listener.messages, 60, "READY=1")
    assert "built gen-" not in repairing.log  # three clusters take three seconds at least
    messages = listener.close()
    assert messages.index("EXTEND_TIMEOUT_USEC=60000000") < messages.index("READY=1")
    repairing.wait_for_log("test hook: linking a cluster")
    started = time.monotonic()
    assert repairing.stop(timeout=30) == 0
    assert time.monotonic() - started < 5  # one cluster (1 s), not the rebuild (6 s)
    assert "stopped in the middle of a step" in repairing.log
    generations = base / ".clusters.generations"
    assert not [name for name in os.listdir(generations) if name.startswith(TEMP_PREFIX)]
    assert not os.path.lexists(base / "clusters")

    drawing = DaemonProcess(base / "config.toml", {"PHOTOCLUSTER_TEST_SLOW_CLUSTER": "1.0"})
    drawing.wait_for_log("test hook: drawing a sheet")
    assert drawing.stop(timeout=30) == 0
    assert_consistent(base)  # cut short in the contact sheets: the links were swapped in

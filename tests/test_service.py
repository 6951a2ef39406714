"""The daemon's main-thread parts in-process: signals, schedule, reload, abandoning at a stop."""

from __future__ import annotations

import dataclasses
import dis
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from photocluster import signal_inbox
from photocluster.config import Config, load_config
from photocluster.errors import ConfigError
from photocluster.progress import Pulse, Stopping, checkpoint
from photocluster.records import ElbowCurve
from photocluster.schedule import RECLUSTER, RESCAN, Schedule
from photocluster.sdnotify import Notifier
from photocluster.service import reloaded
from photocluster.signal_inbox import SignalInbox
from photocluster.tree import ClusterTree, plan_tree
from photocluster.tree.overview import write_overview
from tests.support.config import write_config
from tests.support.photos import COLOURS, write_photo

# ---- signals


def test_the_installed_handlers_do_nothing_so_they_can_neither_log_nor_lock() -> None:
    with SignalInbox([signal.SIGUSR1, signal.SIGHUP]):
        for signum in (signal.SIGUSR1, signal.SIGHUP):
            handler = signal.getsignal(signum)
            assert handler is signal_inbox.ignore
    # No name looked up, only constants returned: it can call nothing, so neither log nor lock.
    assert signal_inbox.ignore.__code__.co_names == ()
    operations = {op.opname for op in dis.get_instructions(signal_inbox.ignore)}
    assert operations <= {"RESUME", "NOP", "LOAD_CONST", "RETURN_VALUE", "RETURN_CONST"}


def test_signals_arrive_as_numbers_in_order_and_the_old_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with SignalInbox([signal.SIGUSR1, signal.SIGUSR2]) as inbox:
        assert inbox.wait(0.0) == []
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert inbox.wait(5.0) == [signal.SIGUSR2, signal.SIGUSR1, signal.SIGUSR2]
        assert inbox.wait(0.05) == []
    assert signal.getsignal(signal.SIGUSR1) == before


def test_extend_timeout_asks_systemd_in_microseconds(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        Notifier(path).extend_timeout(60)
        assert listener.recv(100) == b"EXTEND_TIMEOUT_USEC=60000000"


# ---- schedule


@pytest.fixture
def scheduler() -> Iterator[BackgroundScheduler]:
    running = BackgroundScheduler()
    running.start()
    yield running
    running.shutdown(wait=False)


def _config(hours: float = 6.0, minutes: float = 60.0) -> Config:
    config = Config(source=Path("config.toml"))
    return dataclasses.replace(
        config,
        clustering=dataclasses.replace(config.clustering, recluster_every_hours=hours),
        watch=dataclasses.replace(config.watch, rescan_every_minutes=minutes),
    )


def _nothing() -> None:
    pass


def test_a_reload_with_unchanged_intervals_keeps_the_next_run_times(
    scheduler: BackgroundScheduler,
) -> None:
    schedule = Schedule(scheduler, _nothing, _nothing)
    schedule.apply(_config())
    soon = datetime.now(scheduler.timezone) + timedelta(minutes=7)
    for job_id in (RECLUSTER, RESCAN):
        scheduler.modify_job(job_id, next_run_time=soon)
    schedule.apply(dataclasses.replace(_config(), log=dataclasses.replace(_config().log,
                                                                          level="DEBUG")))
    assert scheduler.get_job(RECLUSTER).next_run_time == soon
    assert scheduler.get_job(RESCAN).next_run_time == soon


def test_a_changed_interval_replaces_its_job_and_zero_removes_it(
    scheduler: BackgroundScheduler,
) -> None:
    schedule = Schedule(scheduler, _nothing, _nothing)
    schedule.apply(_config(hours=6, minutes=60))
    soon = datetime.now(scheduler.timezone) + timedelta(minutes=7)
    scheduler.modify_job(RESCAN, next_run_time=soon)
    schedule.apply(_config(hours=1, minutes=60))
    recluster = scheduler.get_job(RECLUSTER)
    assert recluster.trigger.interval == timedelta(hours=1)
    assert recluster.next_run_time > datetime.now(scheduler.timezone) + timedelta(minutes=59)
    assert scheduler.get_job(RESCAN).next_run_time == soon
    schedule.apply(_config(hours=0, minutes=60))
    assert scheduler.get_job(RECLUSTER) is None


def test_a_run_missed_while_suspended_runs_once_on_wake(scheduler: BackgroundScheduler) -> None:
    runs: list[datetime] = []
    ran = threading.Event()

    def recluster() -> None:
        runs.append(datetime.now(scheduler.timezone))
        ran.set()

    Schedule(scheduler, recluster, _nothing).apply(_config(hours=1))
    # Due 2.5 hours ago, as after a suspend: three run times missed.
    hours_ago = datetime.now(scheduler.timezone) - timedelta(hours=2, minutes=30)
    scheduler.modify_job(RECLUSTER, next_run_time=hours_ago)
    assert ran.wait(timeout=10), "the missed recluster did not run"
    job = scheduler.get_job(RECLUSTER)
    assert job.next_run_time > datetime.now(scheduler.timezone)
    assert len(runs) == 1


# ---- reload


def test_a_reload_keeps_the_running_paths_embedding_and_watcher_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path, "[watch]\nsettle_seconds = 1\nrescan_every_minutes = 30\n")
    running = load_config(path)
    path.write_text(
        '[paths]\nphotos = "elsewhere"\n[embedding]\nbatch_size = 4\n'
        "[watch]\nsettle_seconds = 5\nrescan_every_minutes = 10\n"
        "[clustering]\nk_max = 9\n"
    )
    with caplog.at_level(logging.WARNING):
        fresh = reloaded(running)
    assert fresh is not None
    assert fresh.paths == running.paths and fresh.embedding == running.embedding
    assert fresh.watch.settle_seconds == 1 and fresh.watch.rescan_every_minutes == 10
    assert fresh.clustering.k_max == 9
    assert (
        "changes to [paths], [embedding], [watch] (but rescan_every_minutes) take effect at "
        "restart" in caplog.text
    )


def test_a_reload_without_changes_to_what_needs_a_restart_says_nothing_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path)
    running = load_config(path)
    path.write_text(path.read_text().replace("k_max = 6", "k_max = 7"))
    with caplog.at_level(logging.WARNING):
        fresh = reloaded(running)
    assert fresh is not None and fresh.clustering.k_max == 7
    assert "restart" not in caplog.text


def _replace_with_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    "spoil",
    [
        _replace_with_directory,
        lambda path: path.write_bytes(b"[log]\nlevel = '\xff\xfe'\n"),
        lambda path: path.unlink(),
        lambda path: path.write_text("[clustering]\nk_min = 0\n"),
    ],
    ids=["a directory", "not UTF-8", "vanished", "invalid"],
)
def test_a_config_that_cannot_be_used_keeps_the_old_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: Callable[[Path], object]
) -> None:
    path = write_config(tmp_path)
    running = load_config(path)
    spoil(path)
    assert reloaded(running) is None
    assert "configuration not reloaded, keeping the old one" in caplog.text


@pytest.mark.parametrize("error", [RuntimeError("a bug"), PermissionError(13, "denied")])
def test_an_unexpected_error_while_reloading_keeps_the_old_config_and_logs_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    running = load_config(write_config(tmp_path))

    def failing(path: Path) -> Config:
        raise error

    assert reloaded(running, failing) is None
    record = next(r for r in caplog.records if "not reloaded" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[1] is error


def test_a_config_error_is_logged_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = load_config(write_config(tmp_path))

    def invalid(path: Path) -> Config:
        raise ConfigError(str(path), ["clustering.k_min: must be 1..64"])

    assert reloaded(running, invalid) is None
    record = next(r for r in caplog.records if "not reloaded" in r.getMessage())
    assert record.exc_info is None and "clustering.k_min" in record.getMessage()


# ---- abandoning a tree build at a stop


@pytest.fixture
def tree(tmp_path: Path) -> ClusterTree:
    for colour in COLOURS:
        for index in range(2):
            write_photo(tmp_path / "photos" / colour / f"{index}.jpg", COLOURS[colour], size=16)
    return ClusterTree(tmp_path / "clusters", tmp_path / "photos")


PLAN = plan_tree({colour: [f"{colour}/0.jpg", f"{colour}/1.jpg"] for colour in COLOURS})


def _stop_after(pulses: int) -> tuple[list[int], Pulse]:
    """A checkpoint whose stop request comes with the `pulses`-th pulse; and the pulse count."""
    count = [0]

    def pulse() -> None:
        count[0] += 1

    return count, checkpoint(pulse, lambda: count[0] >= pulses)


def test_a_build_stopped_between_clusters_leaves_the_live_tree_and_no_temp_build(
    tree: ClusterTree,
) -> None:
    tree.swap(tree.build({}))
    live = tree.live()
    assert live is not None
    count, check = _stop_after(2)
    with pytest.raises(Stopping):
        tree.build(PLAN, check)
    assert count[0] == 2  # abandoned after the second of three clusters
    assert tree.live() == live
    assert os.listdir(tree.generations) == [live.name]  # no temp build, no new generation


def test_the_overview_stops_between_sheets_with_the_elbow_already_drawn(
    tree: ClusterTree,
) -> None:
    generation = tree.build(PLAN)
    _, check = _stop_after(1)
    curve = ElbowCurve(ks=(2, 3, 4), inertias=(3.0, 1.0, 0.9), chosen_k=3, knee_found=True)
    with pytest.raises(Stopping):
        write_overview(generation, PLAN, lambda photo: None, curve, check)
    assert sorted(os.listdir(generation / "_overview")) == ["blue.jpg", "elbow.png"]

"""The command line: exit codes, status, dry runs, and talking to a running daemon."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from photocluster import cli, library, locking
from photocluster.config import load_config
from tests.support.config import SAYS, bad_config, unprivileged, write_config
from tests.support.consistency import all_linked
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.fakes import FakeEmbedder
from tests.support.photos import REPO

FAST = "[watch]\nsettle_seconds = 0.3\nrescan_every_minutes = 0\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`photocluster ARGS` as its own process: the exit code and what a person sees."""
    command = [
        sys.executable,
        "-c",
        "import sys; from photocluster.cli import main; sys.exit(main())",
    ]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def one_line(stderr: str) -> str:
    """The single line `stderr` holds; fails on a traceback or anything more."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeEmbedder:
    embedder = FakeEmbedder()
    monkeypatch.setattr(library, "vgg16_embedder", lambda config: embedder)
    return embedder


def test_check_config_exits_0_when_valid_and_2_listing_every_problem(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["-c", str(config_file), "check-config"]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[paths]\nphotos = "p"\nstate = "p/s"\n[embedding]\nbatch_size = 0\n')
    assert cli.main(["-c", str(bad), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "paths.state" in err and "embedding.batch_size" in err


def test_unknown_command_is_a_usage_error(config_file: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["-c", str(config_file), "frobnicate"])
    assert caught.value.code == 2


def test_status_shows_sizes_k_elbow_and_failures_in_text_and_json(
    colour_library: Path,
    config_file: Path,
    fake_model: FakeEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (colour_library / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert cli.main(["-c", str(config_file), "scan"]) == 0
    capsys.readouterr()
    assert cli.main(["-c", str(config_file), "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["photos"] == 18 and report["failed"] == 1
    assert sorted(report["clusters"].values()) == [6, 6, 6]
    assert report["last_recluster"]["k"] == 3
    assert set(report["last_recluster"]["elbow"]) >= {"2", "3"}
    assert report["failures"][0]["path"] == "broken.jpg" and report["failures"][0]["reason"]
    assert report["daemon"] is None
    assert cli.main(["-c", str(config_file), "status"]) == 0
    text = capsys.readouterr().out
    assert "K=3" in text and "broken.jpg" in text and "elbow" in text


def test_status_of_a_new_library_says_nothing_yet(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["-c", str(config_file), "status"]) == 0
    assert "last recluster: never" in capsys.readouterr().out


def test_recluster_dry_run_prints_the_plan_and_changes_nothing(
    tmp_path: Path,
    colour_library: Path,
    config_file: Path,
    fake_model: FakeEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["-c", str(config_file), "scan"]) == 0
    live = os.readlink(tmp_path / "clusters")
    catalog = (tmp_path / "state" / "catalog.sqlite").read_bytes()
    capsys.readouterr()
    assert cli.main(["-c", str(config_file), "recluster", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip()
    assert os.readlink(tmp_path / "clusters") == live
    assert (tmp_path / "state" / "catalog.sqlite").read_bytes() == catalog


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "recluster"])
def test_recluster_loads_no_model_and_never_touches_the_network(
    colour_library: Path, config_file: Path, fake_model: FakeEmbedder, dry_run: bool
) -> None:
    assert cli.main(["-c", str(config_file), "scan"]) == 0
    argv = ["-c", str(config_file), "recluster", *(["--dry-run"] if dry_run else [])]
    said = _cli_in_a_process(argv, [
        "import socket",
        "def refuse(*args, **kwargs): raise AssertionError('network use')",
        "socket.create_connection = socket.getaddrinfo = socket.socket.connect = refuse",
    ], "'model loaded' if 'tensorflow' in sys.modules else 'no model'")
    assert said == "no model"


def _cli_in_a_process(argv: list[str], before: list[str], report: str) -> str:
    """Run `main(argv)` in a fresh Python after the `before` lines; asserts it exits 0 and
    returns what the expression `report` printed after it."""
    script = "\n".join(["import sys", *before, "from photocluster.cli import main",
                        f"code = main({argv!r})", f"print({report})", "sys.exit(code)"])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_recluster_without_a_daemon_runs_itself_and_keeps_names(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_model: FakeEmbedder
) -> None:
    assert cli.main(["-c", str(config_file), "scan"]) == 0
    before = {
        p.name: sorted(c.name for c in p.iterdir()) for p in (tmp_path / "clusters").iterdir()
    }
    live = os.readlink(tmp_path / "clusters")
    assert cli.main(["-c", str(config_file), "recluster"]) == 0
    assert os.readlink(tmp_path / "clusters") != live  # forced: a new generation
    after = {p.name: sorted(c.name for c in p.iterdir()) for p in (tmp_path / "clusters").iterdir()}
    assert {k: v for k, v in after.items() if k[0] != "_"} == {
        k: v for k, v in before.items() if k[0] != "_"
    }


def test_scan_while_another_writer_holds_the_state_exits_3(
    config_file: Path, fake_model: FakeEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    with locking.hold(load_config(config_file).paths.state / locking.STATE_LOCK, "run"):
        assert cli.main(["-c", str(config_file), "scan"]) == 3
    assert f"in use by pid {os.getpid()} (run)" in caplog.text


@pytest.mark.timeout(120)
def test_a_manual_scan_while_the_daemon_runs_exits_3_in_one_line(
    tmp_path: Path, colour_library: Path
) -> None:
    """Exit 3 is in the units' RestartPreventExitStatus=: systemd must not restart on it."""
    config = write_config(tmp_path, FAST)
    daemon = DaemonProcess(config)
    try:
        wait_until(lambda: all_linked(tmp_path), 60, "the daemon to link the library")
        result = run_cli("-c", str(config), "scan")
    finally:
        assert daemon.stop() == 0
    assert result.returncode == 3, result.stderr
    assert one_line(result.stderr).endswith(f"is in use by pid {daemon.process.pid} (run)")


def test_recluster_with_a_stale_pid_in_the_lock_file_exits_3_in_one_line(
    config_file: Path,
) -> None:
    """The lock is held, but not by the pid the file names: a process the daemon forked."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    state = load_config(config_file).paths.state
    with locking.hold(state / locking.STATE_LOCK, "run"):
        (state / locking.STATE_LOCK).write_text(f"{gone.pid} run\n")
        result = run_cli("-c", str(config_file), "recluster")
    assert result.returncode == 3, result.stderr
    assert f"(pid {gone.pid}) is not running" in one_line(result.stderr)


def test_recluster_that_may_not_signal_the_daemon_exits_1_saying_how(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(pid: int, signum: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refuse)  # the daemon runs as another user
    with locking.hold(load_config(config_file).paths.state / locking.STATE_LOCK, "run"):
        assert cli.main(["-c", str(config_file), "recluster"]) == 1
    assert "not allowed to signal the daemon" in caplog.text and "systemctl kill" in caplog.text


def test_an_os_error_is_one_line_and_exit_1(tmp_path: Path, colour_library: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").write_text("a file where the state directory should be")
    result = run_cli("-c", str(config), "scan")
    assert result.returncode == 1, result.stderr
    assert "File exists" in one_line(result.stderr)


@pytest.mark.parametrize("kind", ["not UTF-8", "not TOML", "a directory", "unreadable"])
def test_a_bad_config_file_exits_2_naming_the_file_and_the_problem_in_one_line(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bad_config(tmp_path, kind)
    as_whom = unprivileged() if kind == "unreadable" else contextlib.nullcontext()
    with as_whom:
        assert cli.main(["-c", str(path), "check-config"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(path) in line and SAYS[kind] in line


@pytest.mark.timeout(120)
def test_status_reads_a_running_daemon_and_recluster_signals_it(
    tmp_path: Path, colour_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "[watch]\nsettle_seconds = 0.3\n")
    daemon = DaemonProcess(config)
    try:
        wait_until(lambda: all_linked(tmp_path), 60, "the daemon to link the library")
        assert cli.main(["-c", str(config), "status", "--json"]) == 0
        live = json.loads(capsys.readouterr().out)["daemon"]
        assert live["pid"] == daemon.process.pid and "backlog" in live and live["state"]
        assert cli.main(["-c", str(config), "recluster"]) == 0
        assert "asked the running daemon" in capsys.readouterr().out
        daemon.wait_for_log("SIGUSR1: recluster requested")
    finally:
        assert daemon.stop() == 0


def test_scan_of_a_missing_photo_folder_exits_1_with_a_message(
    config_file: Path, fake_model: FakeEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    assert cli.main(["-c", str(config_file), "scan"]) == 1
    assert "photos" in caplog.text


@pytest.mark.timeout(120)
def test_a_file_name_with_a_newline_cannot_forge_a_log_line(
    tmp_path: Path, colour_library: Path
) -> None:
    forged = "forged\n2026-01-01 00:00:00,000 ERROR photocluster: \x1b[31mfake.jpg"
    (colour_library / forged).write_bytes(b"not a photo")
    daemon = DaemonProcess(write_config(tmp_path, FAST))
    try:
        daemon.wait_for_log("skipped 'forged", timeout=60)
    finally:
        assert daemon.stop() == 0
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")
    lines = [line for line in daemon.log.splitlines() if line.strip()]
    assert all(stamp.match(line) for line in lines), daemon.log
    assert "\x1b" not in daemon.log


def test_the_log_formatter_escapes_control_characters_but_not_tracebacks() -> None:
    formatter = cli.OneLineFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("photocluster", logging.WARNING, __file__, 1, "moved %s to %s",
                               ("a\nERROR b.jpg", "\x1b[31mc\udcff.jpg"), None)
    assert formatter.format(record) == "WARNING moved a\\nERROR b.jpg to \\x1b[31mc\\udcff.jpg"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "\nTraceback" in formatter.format(record)


def test_status_imports_no_clustering_or_drawing_stack(config_file: Path) -> None:
    """`status` answers within a second at a million photos: the heavy flows stay unloaded."""
    heavy = "('sklearn', 'matplotlib', 'tensorflow', 'scipy')"
    said = _cli_in_a_process(["-c", str(config_file), "status"], [],
                             f"sorted(m for m in {heavy} if m in sys.modules)")
    assert said == "[]"

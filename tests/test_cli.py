"""The command line: exit codes, status, dry runs, and talking to a running daemon."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from photocluster import cli, library
from tests.conftest import FakeEmbedder


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


def test_scan_while_another_writer_holds_the_state_exits_1(
    config_file: Path, fake_model: FakeEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    from photocluster import locking
    from photocluster.config import load_config

    with locking.hold(load_config(config_file).paths.state / locking.STATE_LOCK, "run"):
        assert cli.main(["-c", str(config_file), "scan"]) == 1


@pytest.mark.timeout(120)
def test_status_reads_a_running_daemon_and_recluster_signals_it(
    tmp_path: Path, colour_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import write_config
    from tests.daemon_support import DaemonProcess, all_linked, wait_until

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

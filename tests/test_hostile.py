"""Hostile and odd input: every kind of file a synced photo folder can hold, fed to a one-shot
scan and to the running daemon. Nothing crashes, every valid photo is linked exactly once,
every refused file has a reason in `photocluster status --json`, and what is not a regular
file (symlinks, FIFOs, sockets, devices, folders) is not a photo at all.

The corpus is built by tests/support/hostile.py (bench/reliability.py runs it too).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from photocluster import cli, library
from photocluster.config import load_config
from tests.support.config import write_config
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.fakes import FakeEmbedder
from tests.support.hostile import (
    CONFIG,
    UNREADABLE,
    Kind,
    build_corpus,
    hostile_reads,
    jpeg,
    photo_count,
    problems,
)

pytestmark = pytest.mark.timeout(120)

# ---------------------------------------------------------------------------- checks


def status_report(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["-c", str(config), "status", "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def _as_expected(
    base: Path, kinds: list[Kind], config: Path, capsys: pytest.CaptureFixture[str]
) -> bool:
    try:
        return not problems(base, kinds, status_report(config, capsys))
    except (OSError, AssertionError):  # read while the daemon writes or swaps: look again
        return False


@pytest.fixture
def corpus_base(tmp_path: Path) -> Path:
    write_config(tmp_path, CONFIG)
    return tmp_path


# ---------------------------------------------------------------------------- tests


def test_the_corpus_has_at_least_40_kinds(tmp_path: Path) -> None:
    kinds = build_corpus(tmp_path / "photos", tmp_path / "outside")
    assert len(kinds) >= 40
    assert {kind.expect for kind in kinds} == {"photo", "refused", "ignored"}


def test_a_scan_of_the_hostile_corpus_links_every_photo_and_explains_every_refusal(
    corpus_base: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = build_corpus(corpus_base / "photos", corpus_base / "outside")
    monkeypatch.setattr(library, "vgg16_embedder", lambda config: FakeEmbedder())
    with hostile_reads():
        assert cli.main(["-c", str(corpus_base / "config.toml"), "scan"]) == 0
    report = status_report(corpus_base / "config.toml", capsys)
    assert problems(corpus_base, kinds, report) == []
    assert report["files"] == photo_count(kinds)
    capsys.readouterr()
    assert cli.main(["-c", str(corpus_base / "config.toml"), "status"]) == 0
    text = capsys.readouterr().out
    assert "refused/forged\\nline-\\udcff.jpg: not an image" in text  # escaped, one line
    assert all(not line.startswith("line-") for line in text.splitlines())


def test_a_second_scan_of_the_corpus_reads_nothing_again(
    corpus_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_corpus(corpus_base / "photos", corpus_base / "outside")
    config, embedder = load_config(corpus_base / "config.toml"), FakeEmbedder()
    with library.open_library(config, "scan", lambda _: embedder) as lib:
        library.scan(lib, show_bar=False)
        embedder.embedded = 0
        report = library.sync(lib, show_bar=False)
    assert (embedder.embedded, report.failed) == (0, 0)  # refused files are retried on change


def test_the_running_daemon_takes_in_the_hostile_corpus_without_crashing(
    corpus_base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = corpus_base / "config.toml"
    (corpus_base / "photos").mkdir()
    (corpus_base / "photos" / "seed.jpg").write_bytes(jpeg(quality=60))
    env = {"PHOTOCLUSTER_TEST_UNREADABLE": UNREADABLE}
    daemon = DaemonProcess(config, env)
    try:
        daemon.wait_for_log("photocluster.tree.generations: swapped", timeout=60)
        kinds = build_corpus(corpus_base / "photos", corpus_base / "outside", daemon=True)
        try:
            wait_until(lambda: _as_expected(corpus_base, kinds, config, capsys), 60,
                       "the corpus to be taken in as expected")
        except AssertionError as timeout:
            found = problems(corpus_base, kinds, status_report(config, capsys))
            raise AssertionError(f"{timeout}: {found}\n{daemon.log[-3000:]}") from None
        assert daemon.process.poll() is None
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log[-3000:]
    assert "Traceback" not in daemon.log
    for leftover in ("fifo.jpg", "sock.jpg"):  # odd files stay as they were
        path = corpus_base / "photos" / "odd" / leftover
        assert not path.exists() or not stat.S_ISREG(os.lstat(path).st_mode)
    shutil.rmtree(corpus_base / "outside")  # nothing in the tree may point there
    assert all(
        os.path.exists(link) for link in (corpus_base / "clusters").glob("*/*")
    ), "a link depended on a file outside the photo root"

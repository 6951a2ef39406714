"""The reliability trials as a program, for bench/reliability.py (the benchmarks import nothing
from tests/, so they run these by module name). Each command prints JSON lines on stdout:

`python -m tests.support.trials crash FOLDER TRIALS CHAIN WINDOW[,WINDOW...]`  one line per
    kill -9 trial: {"trial", "window", "hit", "error"}; "error" is null or {"type", "message",
    "assertion"}. Trials run in chains of CHAIN on one library; windows are taken in turn.
`python -m tests.support.trials hostile FOLDER`  one line: {"kinds", "photos",
    "scan_problems", "daemon_problems", "daemon_crashed"}.
`python -m tests.support.trials load FOLDER COUNT TIMEOUT`  one line: {"indexed", "seconds",
    "overflowed"}.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from photocluster import library, status
from photocluster.config import load_config
from photocluster.errors import StateError
from tests.support.config import write_config
from tests.support.crash import crash_trial, make_library, populate
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
from tests.support.overflow import load_run


def _say(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def crash_trials(folder: Path, count: int, chain: int, windows: list[str]) -> None:
    """Runs `count` trials; a failed trial is reported and the next starts a fresh library."""
    base: Path | None = None
    for trial in range(count):
        if base is None or trial % chain == 0:
            base = folder / f"chain-{trial:03d}"
            make_library(base)
            populate(base)
        window = windows[trial % len(windows)]
        try:
            hit = crash_trial(base, seed=trial, window=window)
        except Exception as error:  # every way a trial can fail is a finding
            error_record = {"type": type(error).__name__, "message": str(error),
                            "assertion": isinstance(error, AssertionError)}
            _say({"trial": trial, "window": window, "hit": "", "error": error_record})
            base = None
            continue
        _say({"trial": trial, "window": window, "hit": hit, "error": None})


def hostile_corpus(folder: Path) -> None:
    """The corpus through a one-shot scan and through the running daemon."""
    scan_base, daemon_base = folder / "scan", folder / "daemon"
    for base in (scan_base, daemon_base):
        base.mkdir(parents=True)
        write_config(base, CONFIG)
    kinds = build_corpus(scan_base / "photos", scan_base / "outside")
    config = load_config(scan_base / "config.toml")
    with hostile_reads(), library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
    scan_problems = problems(scan_base, kinds, status.collect(config.paths.state))
    daemon_problems, crashed = _hostile_daemon(daemon_base)
    _say({"kinds": len(kinds), "photos": photo_count(kinds), "scan_problems": scan_problems,
          "daemon_problems": daemon_problems, "daemon_crashed": crashed})


def _hostile_daemon(base: Path) -> tuple[list[str], bool]:
    state = base / "state"
    (base / "photos").mkdir()
    (base / "photos" / "seed.jpg").write_bytes(jpeg(quality=60))
    daemon = DaemonProcess(base / "config.toml", {"PHOTOCLUSTER_TEST_UNREADABLE": UNREADABLE})
    try:
        daemon.wait_for_log("photocluster.worker: ready:", timeout=60)
        kinds = build_corpus(base / "photos", base / "outside", daemon=True)
        with contextlib.suppress(AssertionError):  # what is still wrong is counted below
            wait_until(lambda: _as_expected(base, kinds), 90, "the corpus")
        found = problems(base, kinds, status.collect(state))
        alive = daemon.process.poll() is None
    finally:
        code = daemon.stop(timeout=30)
    return found, not alive or code != 0 or "Traceback" in daemon.log


def _as_expected(base: Path, kinds: list[Kind]) -> bool:
    try:
        return not problems(base, kinds, status.collect(base / "state"))
    except (OSError, AssertionError, StateError):  # read while the daemon writes or swaps
        return False


def load(folder: Path, count: int, timeout: float) -> None:
    folder.mkdir(parents=True)
    indexed, seconds, log = load_run(folder, count, timeout=timeout)
    _say({"indexed": indexed, "seconds": seconds,
          "overflowed": "inotify queue overflowed; will rescan" in log})


def main(argv: list[str]) -> int:
    command, folder = argv[0], Path(argv[1])
    if command == "crash":
        crash_trials(folder, int(argv[2]), int(argv[3]), argv[4].split(","))
    elif command == "hostile":
        hostile_corpus(folder)
    elif command == "load":
        load(folder, int(argv[2]), float(argv[3]))
    else:
        print(f"unknown command {command!r}: crash, hostile or load", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

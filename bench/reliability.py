"""Reliability: the daemon keeps working, loses nothing and exposes nothing.

- crash trials: the daemon (tests/support/harness.py, fake embedder) is killed with SIGKILL at
  a random moment of a burst of copies, renames, moves, deletes, new folders and folders moved
  out (some swapped for a symlink), or inside a widened tree swap or index save; the folder
  changes more while it is down; it restarts and settles, is stopped, and disk, catalog, FAISS
  index and cluster tree must agree (every photo once, linked once, no dangling or temp link,
  no link leaving the photo root). Trials run in chains of ten on one library.
- hostile corpus: every kind in tests/support/hostile.py, through a one-shot scan and through the
  running daemon.
- load: 10 000 small JPEGs dropped at once into the running daemon while its inotify reader is
  stalled, so the kernel queue overflows for real and only the rescan can find them.

The trials are the tests' own (tests/support/crash.py, hostile.py, overflow.py), run as a
program: `python -m tests.support.trials` (bench/common.py says why not an import).

Not part of `quick`: it takes about ten minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import OUT, REPO, Section, table

COMMAND = ".venv/bin/python -m bench reliability"
TRIALS, QUICK_TRIALS = 52, 8
CHAIN = 10  # trials on one library before a fresh one
LOAD, QUICK_LOAD = 10_000, 2_000
WINDOWS = ("random", "random", "swap", "save")  # random half the time


@dataclass
class CrashTally:
    outcomes: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def run(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.run - self.outcomes["ok"]


def run(quick: bool) -> Section:
    scratch = OUT / "reliability"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        base = Path(folder)
        crashes = crash_trials(base / "crash", QUICK_TRIALS if quick else TRIALS)
        hostile = hostile_corpus(base / "hostile")
        count = QUICK_LOAD if quick else LOAD
        indexed, seconds, overflowed = load(base / "load", count)
    return report(crashes, hostile, count, indexed, seconds, overflowed)


# --- crash trials ------------------------------------------------------------------------


def trials(*args: object) -> Iterator[dict[str, Any]]:
    """The JSON lines of `python -m tests.support.trials ARGS...`, as they come; raises
    RuntimeError when the runner itself fails."""
    command = [sys.executable, "-m", "tests.support.trials", *map(str, args)]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as runner:
        assert runner.stdout is not None
        for line in runner.stdout:
            if line.startswith("{"):
                yield json.loads(line)
    if runner.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {runner.returncode}")


def crash_trials(folder: Path, count: int) -> CrashTally:
    tally = CrashTally()
    started = time.monotonic()
    for record in trials("crash", folder, count, CHAIN, ",".join(WINDOWS)):
        trial, window, hit, error = (record["trial"], record["window"], record["hit"],
                                     record["error"])
        if error is not None:
            tally.outcomes[_classify(error["message"], error["assertion"])] += 1
            tally.failures.append(f"trial {trial} ({window}): {error['type']}: "
                                  f"{error['message'].splitlines()[0][:200]}")
            continue
        tally.outcomes["ok"] += 1
        tally.hits[window if hit else f"{window} (window missed)"] += 1
        print(f"crash trial {trial} ({window}): ok, {hit or 'window missed'}", flush=True)
    tally.seconds = time.monotonic() - started
    return tally


def _classify(text: str, assertion: bool) -> str:
    if "linked twice" in text:
        return "duplicate link"
    if "dangling" in text or "leaves the photo root" in text or "temp name" in text:
        return "dangling, temp or escaping link"
    if "timed out" in text:
        return "never settled"
    if assertion:
        return "loss or disagreement"
    return "error"


# --- hostile corpus ----------------------------------------------------------------------


@dataclass
class HostileResult:
    kinds: int
    photos: int
    scan_problems: list[str]
    daemon_problems: list[str]
    daemon_crashed: bool


def hostile_corpus(folder: Path) -> HostileResult:
    (record,) = trials("hostile", folder)
    return HostileResult(record["kinds"], record["photos"], record["scan_problems"],
                         record["daemon_problems"], record["daemon_crashed"])


# --- load --------------------------------------------------------------------------------


def load(folder: Path, count: int) -> tuple[int, float, bool]:
    (record,) = trials("load", folder, count, 900)
    return record["indexed"], record["seconds"], record["overflowed"]


# --- report ------------------------------------------------------------------------------


def report(
    crashes: CrashTally,
    hostile: HostileResult,
    count: int,
    indexed: int,
    seconds: float,
    overflowed: bool,
) -> Section:
    found = hostile.scan_problems + hostile.daemon_problems
    lost = sum(1 for line in found if "not linked" in line)
    crash_rows = [[outcome, number] for outcome, number in sorted(crashes.outcomes.items())]
    hit_rows = [[window, number] for window, number in sorted(crashes.hits.items())]
    body = "\n\n".join([
        "Kill -9 crash trials (goal: no trial with a loss, duplicate, dangling link or "
        f"disagreement; {crashes.run} trials in {crashes.seconds / 60:.1f} min):",
        table(["outcome", "trials"], crash_rows),
        "Where the kill landed (random: uniform over the first 3 s of a burst; swap / save: "
        "inside a tree build or swap / an index save, widened to 0.4 s by a test hook):",
        table(["window", "trials"], hit_rows),
        *(["Failures:\n\n" + "\n".join(f"- {line}" for line in crashes.failures)]
          if crashes.failures else []),
        "Hostile and odd input (tests/test_hostile.py):",
        table(["kinds tried", "valid photos", "daemon crashes", "photos wrongly lost",
               "problems (scan)", "problems (daemon)"],
              [[hostile.kinds, hostile.photos, int(hostile.daemon_crashed), lost,
                len(hostile.scan_problems), len(hostile.daemon_problems)]]),
        *(["Problems:\n\n" + "\n".join(f"- {line}" for line in
                                        hostile.scan_problems + hostile.daemon_problems)]
          if hostile.scan_problems or hostile.daemon_problems else []),
        "Load: small JPEGs dropped at once into the running daemon while its inotify reader is "
        "stalled, so the kernel queue overflows (fs.inotify.max_queued_events) and only the "
        "overflow rescan finds them:",
        table(["files dropped", "indexed", "seconds to all linked", "photos/s",
               "overflow seen"],
              [[count, indexed, f"{seconds:.1f}", f"{indexed / seconds:.0f}",
                "yes" if overflowed else "no"]]),
    ])
    figures: dict[str, float | str] = {
        "reliability_crash_trials": crashes.run,
        "reliability_crash_failures": crashes.failed,
        "reliability_hostile_kinds": hostile.kinds,
        "reliability_hostile_daemon_crashes": int(hostile.daemon_crashed),
        "reliability_hostile_photos_lost": lost,
        "reliability_load_files": count,
        "reliability_load_indexed": indexed,
        "reliability_load_seconds": round(seconds, 1),
    }
    return Section("Reliability", COMMAND, body, figures)

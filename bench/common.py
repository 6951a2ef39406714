"""What every benchmark suite shares: the result shape, the timing helper, machine facts.

The benchmarks import nothing from tests/ (nor tests from bench/): each side may change its
helpers without breaking the other, and a bench measures the daemon through its public API.
Where a bench needs what the tests built (the daemon harness with its fault hooks, the crash
trials, the hostile corpus) it runs it as a program by module name (`python -m
tests.support.harness`, `python -m tests.support.trials`): a command line, not an import, and
the only interface is its arguments and output. The few lines both need (a solid-colour JPEG,
systemd's notify socket) are small copies here, not a third shared package: daemon/ ships to
users and must not carry test helpers.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
OUT = REPO / "bench" / "out"  # scratch space, git-ignored


@dataclass
class Section:
    """One suite's result: a markdown body for BENCHMARKS.md and `name: value` figures."""

    title: str
    command: str
    body: str
    figures: dict[str, float | str] = field(default_factory=dict)


@dataclass
class Took:
    """What a block cost: wall seconds (perf_counter), this process's CPU seconds, all its
    threads (process_time), and the calling thread's alone (thread_time). Filled when the
    block ends."""

    wall: float = 0.0
    cpu: float = 0.0
    thread_cpu: float = 0.0


@contextlib.contextmanager
def stopwatch() -> Iterator[Took]:
    """Times the block: `with stopwatch() as took: ...`, then `took.wall`, `took.cpu`. The one
    clock of every bench, so that all figures are read the same way."""
    took = Took()
    wall, cpu, thread_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    try:
        yield took
    finally:
        took.wall, took.cpu = time.perf_counter() - wall, time.process_time() - cpu
        took.thread_cpu = time.thread_time() - thread_cpu


def timed(action: Callable[[], object]) -> float:
    """Wall seconds of one run of `action`."""
    with stopwatch() as took:
        action()
    return took.wall


def median_time(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` runs of `action`, in seconds."""
    return statistics.median(timed(action) for _ in range(repeats))


def write_photo(path: Path, colour: tuple[int, int, int], size: int = 64, seed: int = 0) -> Path:
    """A small JPEG of one colour (RGB) with a little noise, so each file is distinct."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(np.array(colour) + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    path.write_bytes(encoded.tobytes())
    return path


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, load {load}"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)

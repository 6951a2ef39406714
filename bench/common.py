"""What every benchmark suite shares: the result shape, timing helpers, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


def median_time(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` runs of `action`, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, load {load}"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)

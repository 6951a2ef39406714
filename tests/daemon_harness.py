"""Runs the real daemon (real watcher, threads, signals) with the fake embedder.

`python -m tests.daemon_harness CONFIG` — used by the daemon tests as a subprocess, so that
signals, sd_notify and kill -9 are exercised as systemd would. With
PHOTOCLUSTER_TEST_SLOW_RECLUSTER=seconds each recluster computation takes at least that long,
so a test can signal during one.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from photocluster import recluster, service
from photocluster.config import load_config
from tests.conftest import FakeEmbedder


def _slow_down(seconds: float) -> None:
    compute = recluster.compute

    def slow(snapshot: recluster.Snapshot, settings: object) -> recluster.Result:
        time.sleep(seconds)
        return compute(snapshot, settings)  # type: ignore[arg-type]

    service.recluster.compute = slow  # type: ignore[assignment]


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    slow = os.environ.get("PHOTOCLUSTER_TEST_SLOW_RECLUSTER")
    if slow:
        _slow_down(float(slow))
    config = load_config(Path(sys.argv[1]))
    return service.run_daemon(config, lambda _: FakeEmbedder())


if __name__ == "__main__":
    sys.exit(main())

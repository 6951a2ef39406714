"""Scale: the real daemon with a million photos (100k in quick mode), polling at 100k, the
recluster computation at 100k and 1M, and a 100k-link tree rebuild.

`python -m bench scale` (or `make bench-scale`). The daemon is tests/support/harness.py as a
subprocess with the real VGG16 loaded when the test weights are cached (.test-cache/weights;
else the fake embedder paced at 0.25 s a photo, what VGG16 costs here), on a synthetic library
(bench/synthetic.py: empty photo files, a catalog filled by direct SQL, its tree); everything
the daemon does with it is real and timed for real. Each recluster size runs in its own process
(`python -m bench.scale recluster N REPEATS`) so its peak RSS is its own. Scratch data goes to
bench/out/scale-<pid>/ and is deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench import scale_daemon as steps
from bench import scale_parts as parts
from bench.common import OUT, REPO, Section, machine, table
from bench.synthetic import make_library
from photocluster.config import load_config

GOALS = {"rss_idle_gb": 1.5, "rss_peak_gb": 2.5, "status_s": 1.0, "moved_10k_s": 30.0,
         "deleted_10k_s": 30.0, "polling_cpu_pct": 5.0, "watchdog_max_gap_s": 120.0,
         "stop_s": 10.0, "place_after_settle_s": 1.5}
Row = list[object]


def run(quick: bool) -> Section:
    """Every measurement; `quick` uses 100k photos for the daemon run and skips 1M vectors."""
    count = 100_000 if quick else 1_000_000
    label = "100k" if quick else "1m"
    scratch = OUT / f"scale-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    figures: dict[str, float | str] = {"load_before": machine().rsplit("load ", 1)[1]}
    try:
        rows = _daemon_rows(scratch / "big", count, label, figures)
        rows += _polling_rows(scratch / "polled", figures)
        rows += parts.recluster_rows(quick, figures)
        rows += parts.tree_rows(scratch / "tree", 1 if quick else 3, figures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures["load_after"] = machine().rsplit("load ", 1)[1]
    body = (table(["measure", "result", "goal", "reference (same run)", "ratio"], rows)
            + "\n\n" + parts.NOTES.format(load=f"{figures['load_before']} / "
                                          f"{figures['load_after']}"))
    command = "python -m bench scale" + (" (quick)" if quick else "")
    return Section("Scale (issues 4, 10)", command, body, figures)


# ---- the daemon on a big library


def _daemon_rows(base: Path, count: int, label: str, figures: dict[str, float | str]) -> list[Row]:
    env, fingerprint, model = _embedder(base / "state")
    setup = make_library(base, count, fingerprint)
    config = _config(base, 'mode = "inotify"\n')
    got = _daemon_run(base, config, env)
    figures.update({f"ready_{label}_s": round(got["start_ready_s"], 2),
                    f"stop_{label}_s": round(got["stop_s"], 2),
                    f"place_p95_{label}_s": round(got["place_p95_s"], 2),
                    f"place_p95_after_settle_{label}_s": round(got["place_p95_s"]
                                                               - got["settle_s"], 2),
                    f"delete_10k_at_{label}_s": round(max(got["moved_10k_s"],
                                                          got["deleted_10k_s"]), 2),
                    f"status_{label}_s": round(got["status_s"], 2),
                    f"rss_idle_{label}_gb": round(got["rss_idle_gb"], 2),
                    f"rss_peak_{label}_gb": round(got["rss_peak_gb"], 2),
                    "watchdog_max_gap_s": round(got["watchdog_max_gap_s"], 1),
                    f"ready_after_rebuild_{label}_s": round(got["rebuild_ready_s"], 2),
                    f"rebuild_peak_{label}_gb": round(got["rebuild_peak_gb"], 2),
                    f"reconciled_{label}_s": round(got["start_reconciled_s"], 2),
                    f"recluster_{label}_s": round(got["recluster_total_s"], 1),
                    f"search_{label}_s": round(got["search_s"], 2),
                    f"backlog_{steps.BACKLOG}_at_{label}_s": round(got["backlog_s"], 1)})
    return parts.daemon_table(got, setup, count, model, GOALS)


def _daemon_run(base: Path, config: Path, env: dict[str, str]) -> dict[str, float]:
    got: dict[str, float] = {"settle_s": load_config(config).watch.settle_seconds}
    (base / "state" / "index.stamp").unlink()  # the first start rebuilds the index
    with steps.running(config, env, "rebuild") as daemon:
        got.update(steps.start_figures(daemon, "rebuild"))
        got["rebuild_peak_gb"] = steps.rss_gb("VmHWM", daemon.process.pid)
        got["stop_after_rebuild_s"] = daemon.stop()
    with steps.running(config, env, "main") as daemon:
        got.update(steps.start_figures(daemon, "start"))
        got["start_peak_gb"] = steps.rss_gb("VmHWM", daemon.process.pid)
        got.update(steps.idle_figures(daemon, 20.0))
        got.update(steps.status_figures(config, base / "state"))
        got.update(steps.place_figures(daemon, base / "photos", base / "clusters",
                                       steps.NEW_PHOTOS))
        got.update(steps.backlog_figures(daemon, base / "photos", base / "clusters",
                                         steps.BACKLOG))
        got.update(steps.removal_figures(base, "000", "moved"))
        got.update(steps.removal_figures(base, "001", "deleted"))
        got.update(steps.recluster_figures(daemon))
        got["rss_peak_gb"] = max(steps.rss_gb("VmHWM", daemon.process.pid), daemon.peak_gb())
        got["watchdog_max_gap_s"] = daemon.watchdog_max_gap()
        got["stop_s"] = daemon.stop()
    got.update(steps.search_figures(base / "state"))
    return got


def _embedder(state: Path) -> tuple[dict[str, str], str, str]:
    """(harness environment, fingerprint, description): the real VGG16 when its weights are
    cached for the tests, else the fake embedder at VGG16's pace."""
    from photocluster import weights
    from photocluster.embedder import model_fingerprint, resolve_precision
    from photocluster.errors import WeightsError

    cache = REPO / ".test-cache" / "weights"
    try:
        found = weights.resolve("auto", "auto", cache, allow_fetch=False)
    except WeightsError:
        return ({"PHOTOCLUSTER_TEST_EMBED_SECONDS": "0.25"}, "fake-embedder-1",
                "fake embedder paced at 0.25 s a photo")
    shutil.copytree(cache, state / "weights")
    fingerprint = model_fingerprint(found, found.preprocessing, resolve_precision("auto"))
    return {"PHOTOCLUSTER_TEST_REAL_MODEL": "1"}, fingerprint, "real VGG16 loaded"


def _config(base: Path, watch: str) -> Path:
    """Defaults but for: no periodic full rescan or scheduled recluster during the run, and
    links named as the photos are (the bench finds a new photo's link by its name; a dated
    name costs the same to make)."""
    config = base / "config.toml"
    config.write_text('[paths]\nphotos = "photos"\nclusters = "clusters"\nstate = "state"\n'
                      "[clustering]\nrecluster_every_hours = 0\n[tree]\ndated_names = false\n"
                      f"[watch]\nrescan_every_minutes = 0\n{watch}", encoding="utf-8")
    return config


# ---- polling at 100k


def _polling_rows(base: Path, figures: dict[str, float | str]) -> list[Row]:
    make_library(base, 100_000, "fake-embedder-1")
    config = _config(base, 'mode = "polling"\npoll_interval_seconds = 10\n')
    with steps.running(config, {"PHOTOCLUSTER_TEST_EMBED_SECONDS": "0.25"}, "poll") as daemon:
        steps.start_figures(daemon, "poll")
        time.sleep(12.0)  # the first poll lists every folder once more
        idle = steps.idle_figures(daemon, 60.0)
        placed = steps.place_figures(daemon, base / "photos", base / "clusters", 5)
        daemon.stop()
    ours, theirs = parts.poll_cpu(base / "photos")
    figures.update({"polling_cpu_100k_pct": round(idle["idle_cpu_pct"], 2),
                    "polling_place_max_s": round(placed["place_p95_s"], 1)})
    return parts.polling_table(idle, placed, ours, theirs, GOALS)


if __name__ == "__main__":
    if sys.argv[1:2] == ["recluster"]:
        print(json.dumps(parts.recluster_child(int(sys.argv[2]), int(sys.argv[3]))))
    elif sys.argv[1:2] == ["sampled"]:
        print(json.dumps(parts.sampled_child(int(sys.argv[2]))))
    else:
        sys.exit("usage: python -m bench.scale recluster COUNT REPEATS | sampled COUNT")

"""Corrections: what reading a user's edits of the cluster tree costs (`TreeReader.check`).

A synthetic library of 100 000 contents in 20 clusters (random 512-d vectors; the photo files
need not exist: links are only read, never followed), its tree built by `rebuild_tree`. Timed,
medians of several rounds: an idle check (nothing changed for a few seconds: one lstat per
folder; a folder changed less than `RACY_SECONDS` ago is read again), a check after
one link was moved (two folders read, the pin recorded and applied), and a full check (every
folder read, as at start and before a recluster commits). The reference, measured in the same
rounds: `ClusterTree.read_plan`, one readlink per link, the least any reading of the tree costs.
Scratch data in bench/out/corrections-<pid>/, deleted at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from bench.common import OUT, Section, table, timed
from photocluster import corrections, placement
from photocluster.corrections import TreeReader
from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.store import NewFile, Store
from photocluster.tree import ClusterTree

PHOTOS, CLUSTERS, DIM = 100_000, 20, 512
_BATCH = 5000


def run(quick: bool) -> Section:
    photos, repeats = (20_000, 3) if quick else (PHOTOS, 5)
    scratch = OUT / f"corrections-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        times = _measure(scratch, photos, repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reference = times.pop("reference")
    rows = [[name, f"{seconds * 1000:.1f} ms", f"{seconds / reference:.3f}"]
            for name, seconds in times.items()]
    rows.append(["reference: read every link (`read_plan`)", f"{reference * 1000:.1f} ms", "1"])
    body = (f"{photos} links in {CLUSTERS} cluster folders; median of {repeats} rounds. An idle "
            "check runs about every second; a full one every ten minutes, at start and before "
            "a recluster commits.\n\n" + table(["check", "time", "x reference"], rows))
    figures: dict[str, float | str] = {f"corrections {name} / read_plan": round(s / reference, 3)
                                       for name, s in times.items()}
    return Section("Corrections: reading the user's edits of the tree",
                   "python -m bench corrections", body, figures)


def _measure(scratch: Path, photos: int, repeats: int) -> dict[str, float]:
    (scratch / "photos").mkdir(parents=True)
    with Store(scratch / "state") as store:
        names = _library(store, photos)
        tree = ClusterTree(scratch / "clusters", scratch / "photos")
        placement.rebuild_tree(store, tree, None, None)
        reader = TreeReader(store, tree)
        reader.trusted = True
        reader.check(full=True)
        live = tree.live()
        assert live is not None
        rounds: dict[str, list[float]] = {"reference": [], "idle": [], "one link moved": [],
                                          "full": []}
        for round_ in range(repeats):
            rounds["reference"].append(timed(tree.read_plan))
            time.sleep(corrections.RACY_SECONDS)  # folders changed just now are read again:
            reader.check(full=False)  # let them settle, so "idle" is a tree left alone
            rounds["idle"].append(timed(lambda: reader.check(full=False)))
            _move_a_link(live / names[round_ % CLUSTERS], live / names[(round_ + 1) % CLUSTERS])
            rounds["one link moved"].append(timed(lambda: reader.check(full=False)))
            rounds["full"].append(timed(lambda: reader.check(full=True)))
    return {name: statistics.median(values) for name, values in rounds.items()}


def _library(store: Store, photos: int) -> list[str]:
    """`photos` contents with random unit vectors, assigned round-robin to the clusters."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((photos, DIM)).astype(np.float32)  # (n, 512) float32
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, photos, _BATCH):
        store.put_files([NewFile(f"{i // 1000:03d}/IMG_{i:07d}.jpg", 1, 1, f"h{i}", vectors[i])
                         for i in range(start, min(photos, start + _BATCH))], "fp")
    ids, _ = store.vectors("fp")
    names = [f"cluster-{j + 1:03d}" for j in range(CLUSTERS)]
    assignment = {int(c): names[int(c) % CLUSTERS] for c in ids}
    info = ReclusterInfo(0.0, photos, 0, ElbowCurve((CLUSTERS,), (0.0,), CLUSTERS, False))
    store.commit_recluster(((c, 1, name) for c, name in assignment.items()),
                           {name: vectors[j] for j, name in enumerate(names)}, info, 0)
    return names


def _move_a_link(source: Path, target: Path) -> None:
    name = next(entry.name for entry in os.scandir(source) if entry.is_symlink())
    os.rename(source / name, target / name)



"""Folder stability as the library grows (issue 13), on the labelled sets' shipped vectors.

Each growth path is a seeded random order in which the photos arrive. The first share of them
is reclustered from scratch; then, step by step, the next photos are placed on the nearest
centroid (as the daemon does between reclusters) and everything present is reclustered with
the previous K and names (`recluster.compute`, as the daemon runs it). Measured per path: the
share of folder names kept (photos clustered by the previous recluster that are still in a
folder of the same name), the photos that changed folder, K, and the ARI of the final tree
against the labels. "before" is the rule set of commit 47014fe, restored here by patching
(see `rules`); "after" is the package as it is. Both continue from the same first recluster.

`python -m bench stability` uses the conv maps that `python -m bench quality` caches in
bench/out/quality/ (and embeds them with the real weights when missing: several minutes).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt
from sklearn.metrics import adjusted_rand_score

from bench.common import Section, table
from bench.quality import SETS, SHIPPED, load_set, vectors_for
from photocluster import clustering, recluster
from photocluster.config import ClusteringConfig

PATHS = tuple(range(10))  # seeds of the order in which the photos arrive
QUICK_PATHS = PATHS[:2]
# share of the set present at each recluster
SCENARIOS = {
    "90% -> 100%": (0.9, 1.0),
    "50% -> 100% in five +10% steps": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
}
RULES = ("before", "after")
SETTINGS = ClusteringConfig()  # the documented defaults: k 2..24, seed 0

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Growth:
    """One growth path under one rule set; lists have one entry per recluster after the first."""

    ks: tuple[int, ...]  # K of every recluster, the first included
    kept: tuple[float, ...]  # share of the previous recluster's photos that kept their name
    changed: tuple[float, ...]  # share of the photos present whose folder changed
    ari: float  # final clusters against the labels


def grow(vectors: Vectors, truth: npt.NDArray[np.int64], order: Ids,
         shares: tuple[float, ...], first: recluster.Result) -> Growth:
    """Continue from `first` (the recluster of the first share of `order`) through `shares`."""
    ks, kept, changed = [first.info.k], [], []
    result, used = first, frozenset(first.centroids)
    for share in shares[1:]:
        present = np.sort(order[: round(share * len(order))])  # (m,) int64
        previous = _placed(vectors, present, result)
        step = recluster.compute(recluster.Snapshot(
            present, vectors[present], previous, used, result.info.k, SETTINGS))
        ks.append(step.info.k)
        kept.append(statistics.mean(step.assignment[i] == name
                                    for i, name in result.assignment.items()))
        changed.append(step.info.changed / len(present))
        result, used = step, used | frozenset(step.centroids)
    final = [result.assignment[int(i)] for i in np.sort(order)]
    return Growth(tuple(ks), tuple(kept), tuple(changed),
                  float(adjusted_rand_score(truth[np.sort(order)], final)))


def first_recluster(vectors: Vectors, order: Ids, share: float) -> recluster.Result:
    present = np.sort(order[: round(share * len(order))])  # (m,) int64
    return recluster.compute(
        recluster.Snapshot(present, vectors[present], {}, frozenset(), None, SETTINGS))


def _placed(vectors: Vectors, present: Ids, result: recluster.Result) -> dict[int, str]:
    """The previous names, and the nearest centroid's for photos that arrived since."""
    names = sorted(result.centroids)
    centroids = np.stack([result.centroids[name] for name in names])  # (k, 512)
    arrived = np.array([i for i in present if int(i) not in result.assignment], dtype=np.int64)
    if not len(arrived):
        return dict(result.assignment)
    nearest = clustering.nearest(vectors[arrived], centroids)  # (a,) int64
    return {**result.assignment,
            **{int(i): names[int(j)] for i, j in zip(arrived, nearest, strict=True)}}


# the rules before issue 13, restored for the comparison


@contextmanager
def rules(name: str) -> Iterator[None]:
    """"after": the package as it is. "before": K kept only when the curve all but ties
    (`_keep_previous_before`), and the previous clusters used as the k-means start only when
    their number equals the new K."""
    if name == "after":
        yield
        return
    real_fit = clustering.fit

    def fit_same_k_only(vectors: Vectors, k: int, seed: int, start: Any = None) -> Any:
        return real_fit(vectors, k, seed, start if start is not None and len(start) == k
                        else None)

    with (mock.patch.object(clustering, "fit", fit_same_k_only),
          mock.patch.object(clustering, "keep_previous", _keep_previous_before)):
        yield


def _keep_previous_before(ks: tuple[int, ...], envelope: npt.NDArray[np.float64], old: int,
                          new: int) -> bool:
    """The rule of 47014fe: a smaller previous k kept with 98% of the chosen k's inertia
    reduction, a larger one with an elbow score within 0.02 of the chosen k's."""
    if old < new:
        reduction = envelope[0] - envelope  # (len(ks),)
        return bool(reduction[old] >= 0.98 * reduction[new])
    scores = clustering.elbow_scores(ks, envelope)
    return bool(scores[old] >= scores[new] - 0.02)


# the table


def measure(set_name: str, paths: tuple[int, ...]) -> dict[tuple[str, str], list[Growth]]:
    """(scenario, rules) -> one Growth per path."""
    vectors = vectors_for(set_name, SHIPPED)
    assert vectors is not None
    truth = np.unique(load_set(set_name).labels, return_inverse=True)[1]
    found: dict[tuple[str, str], list[Growth]] = {}
    for scenario, shares in SCENARIOS.items():
        for path in paths:
            order = np.random.default_rng(path).permutation(len(vectors)).astype(np.int64)
            first = first_recluster(vectors, order, shares[0])
            for name in RULES:
                with rules(name):
                    growth = grow(vectors, truth, order, shares, first)
                found.setdefault((scenario, name), []).append(growth)
    return found


def rows(set_name: str, found: dict[tuple[str, str], list[Growth]]) -> list[list[object]]:
    result: list[list[object]] = []
    for (scenario, name), paths in found.items():
        kept = [share for growth in paths for share in growth.kept]
        changed = [share for growth in paths for share in growth.changed]
        ari = statistics.mean(growth.ari for growth in paths)
        before = statistics.mean(growth.ari for growth in found[(scenario, "before")])
        result.append([
            set_name, scenario, name, _ks(paths),
            f"{statistics.mean(kept):.3f} / {min(kept):.3f}",
            f"{statistics.mean(changed):.3f} / {max(changed):.3f}",
            f"{ari:.3f} ({min(g.ari for g in paths):.3f}-{max(g.ari for g in paths):.3f})",
            "-" if name == "before" else f"{ari - before:+.3f}",
        ])
    return result


def _ks(paths: list[Growth]) -> str:
    """Each path's K sequence, `8` when it never changed, identical sequences counted."""
    sequences = ["->".join(map(str, growth.ks)) if len(set(growth.ks)) > 1 else str(growth.ks[0])
                 for growth in paths]
    counts = {sequence: sequences.count(sequence) for sequence in sequences}
    return ", ".join(f"{sequence} x{count}" if count > 1 else sequence
                     for sequence, count in sorted(counts.items(), key=lambda item: -item[1]))


def run(quick: bool) -> Section:
    paths = QUICK_PATHS if quick else PATHS
    figures: dict[str, float | str] = {}
    body: list[list[object]] = []
    for set_name in SETS:
        found = measure(set_name, paths)
        body += rows(set_name, found)
        for (scenario, name), growths in found.items():
            if name == "after":
                key = f"{set_name}_{'steps' if len(SCENARIOS[scenario]) > 2 else 'growth'}"
                figures[f"{key}_min_kept"] = round(min(min(g.kept) for g in growths), 3)
                figures[f"{key}_ari"] = round(statistics.mean(g.ari for g in growths), 3)
    header = ["set", "growth", "rules", "K at each recluster (paths)",
              "names kept: mean / worst", "photos that changed folder: mean / worst",
              "final ARI: mean (range)", "final ARI vs before"]
    text = [INTRO.format(paths=len(paths)), table(header, body), FINDINGS]
    return Section("Folder stability (issue 13)", "python -m bench stability",
                   "\n\n".join(text), figures)


INTRO = """\
{paths} growth paths per set (seeds of a random arrival order). Each recluster after the first
places the photos that arrived since on the nearest centroid, then runs `recluster.compute`
with the previous K and names. "Names kept": the share of the previous recluster's photos whose
folder keeps its name, per recluster; "changed folder": the share of all photos present whose
folder changed (the new ones' live placement included); both as the mean and the worst single
recluster over all paths. "before" restores the rules of commit 47014fe (K kept only when the
curve all but ties; warm start only at an unchanged K); "after" is the package as shipped.
Both continue from the same first recluster."""

FINDINGS = """\
Findings (issue 13). Kept, in `clustering.py`:

- **K changes only to a clearly better K** (`choose_k`): the clusters the elbow's K adds to the
  previous K must each remove at least `CLEAR_GAIN` = 2.5 times the inertia that each cluster
  beyond it removes (when it is the smaller K: its own last cluster must), or the previous K
  must score `FAR_SCORE` = 0.1 below it on kneedle's curve. On the sweeps of both sets and of
  nested 50-90% subsets of them (ten orders, 51 curves per set), setA's knee at 8 scored
  3.2-5.4 and every change setC's flat curve proposed 1.3-2.0. Now setC's K changes on no path
  (before: on 2 of 10 paths from 90%, on 4 of 10 from 50%, up to three times on one); setA
  stays at 8 throughout, as before.
- **A K change starts k-means from the previous clusters split or merged** (`fit` takes
  previous centres of any number: it splits the cluster whose split gains the most, as the
  sweep does, or merges the pair whose merge adds the least squared error, one at a time)
  instead of a fresh fit; the fresh fit still wins with 1% (`FRESH_GAIN`) less inertia. On
  structureless synthetic vectors one split or merge keeps 0.75+ of the photos in place, a
  fresh fit under 0.5 (tests/test_clustering.py, tests/test_stability.py). No growth path above
  changes K any more, so the table does not exercise it.
- setC, 90% -> 100%: names kept 0.938 -> 0.985 on average, worst 0.747 -> 0.937; photos that
  changed folder 6.2% -> 1.3%; final ARI unchanged (0.363). What is left is not K: at an
  unchanged K, Lloyd from the previous clusters drifts (the worst path: 15 photos, 9 of them
  from one cluster, moved to neighbouring clusters; every name kept).
- setC, five +10% steps from 50%: names kept 0.917 -> 0.962 on average. The worst single
  recluster (0.61) is the same before and after: at an unchanged K a fresh fit beats the
  previous clusters by just over 1% of inertia and moves 31-40% of the photos (4 of the 50
  reclusters). FRESH_GAIN = 2% keeps those in place but lowers the final ARI over these paths
  from 0.356 to 0.340 (measured once, patched): there the fresh optimum is the better one.
- The price: over five steps from 50%, setC's final ARI is 0.010 lower (0.366 -> 0.356). On 4
  of 10 paths K stays at the value chosen on half the photos (7, 8 or 9) where the old rule
  followed the elbow of the whole set to 9 or 10 (on the whole set a fresh fit scores 0.32
  at K = 7, 0.38 at 8-9, 0.40 at 10-13; seed 0). From 90% there is no difference."""

"""Clustering: the elbow, KMeans++, nearest-centroid assignment and stable cluster names.

Plain functions over arrays; this module owns scikit-learn, kneed and scipy. Vectors are the
embedder's L2-normalised rows, `(n, d)` float32. Everything random is seeded, so the same
vectors and seed give the same clusters.

Why one module of this length: it is pure and cohesive, the one owner of scikit-learn, kneed
and scipy; the elbow, the fit and the naming share the same arrays, seeds and thread limits.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import numpy.typing as npt
from kneed import KneeLocator
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits  # sklearn's dep

from photocluster.records import ElbowCurve

logger = logging.getLogger(__name__)

FloatMatrix = npt.NDArray[np.floating[Any]]

# Hysteresis on k (see choose_k). The elbow's k replaces the previous one only when it is
# clearly better: the clusters that take k from the previous value up to it (or, when it is
# the smaller, the one cluster that completes its knee) each remove at least CLEAR_GAIN times
# the inertia that each cluster beyond it removes on average. Measured on the sweeps of the
# labelled sets and of nested 50-90% subsets of them (ten random orders, 51 curves each):
# setA's knee (its 8th cluster against the tail) scored 3.2-5.4 on every curve; on setC's
# flat curve, where the elbow's K wandered over 7..14 with ARI within 0.02 for any K in
# 8..13, every change it proposed scored 1.3-2.0. 2.5 lies between the two.
CLEAR_GAIN = 2.5
# A previous k this far below the chosen one on kneedle's difference curve (0..1; one k step
# of a 2..24 sweep is 0.045) is dropped anyway: a k left from a very different library must
# not stay forever on a curve without a clear knee. setC's proposals (as above) were at most
# 0.066 better than the K they would replace.
FAR_SCORE = 0.1
FIT_N_INIT = 3  # KMeans++ tries, for the final fit and for each 2-means split
# fit() looks for a start on a sample this big, then runs Lloyd over all vectors from it:
# seeding costs k passes over the data, Lloyd converges in few passes from a good start.
FIT_SAMPLE = 20_000
# A fresh k-means replaces the previous clusters (fit's `start`) only with this much less
# inertia. Measured on setC (90% of the photos clustered, 10% added): the fresh optimum was
# 0.1-0.5% below the one reached from the previous clusters and moved 13-23% of the photos.
FRESH_GAIN = 0.01
LARGE_MAX_ITER = 30  # from a start converged on the sample, Lloyd needs a handful; bounds 1M time
# Threads for sklearn/BLAS. One: results then do not depend on the core count (sklearn's
# parallel sums are ordered by thread), and on a shared 2-core machine extra threads spin.
THREADS = 1
_CHUNK = 65_536  # rows per matrix product in nearest(): bounds the (chunk, k) score buffer
_NAME = re.compile(r"cluster-([0-9]+)")


def choose_k(
    vectors: FloatMatrix,
    k_min: int,
    k_max: int,
    sample_size: int,
    seed: int,
    previous_k: int | None = None,
) -> ElbowCurve:
    """Pick k by the elbow of k-means inertia over `k_min..k_max`.

    The sweep runs on a seeded random sample of at most `max(sample_size, k_max + 1)` vectors,
    for every k up to the sample size minus one and the number of distinct sample vectors. The
    knee comes from kneed (convex, decreasing) on the running minimum of the inertias. Without
    a knee (kneed returns None, e.g. on a straight line, a flat curve or fewer than 3 points)
    k is the point farthest below the chord and `knee_found` is False.

    Hysteresis: a `previous_k` inside the sweep is kept instead of the chosen k unless the
    chosen k is clearly better (each recluster that changes k costs the user their bearings):
      - it is larger, and the clusters it adds to `previous_k` each remove at least
        `CLEAR_GAIN` times the inertia that each cluster beyond it removes on average;
      - it is smaller, and its last cluster (k - 1 to k) does so: the curve bends clearly
        there, so the previous k lies past the bend;
      - or the previous k's elbow score (1 - x - y on the curve normalised to [0, 1] both
        ways, what kneedle maximises) is more than `FAR_SCORE` below the chosen k's.
    On a straight line or a flat curve no k is clearly better, so the previous k stays.

    Fewer vectors (or distinct vectors) than `k_min` + 1 give a degenerate curve: k is the
    number of distinct vectors, at most `k_min`, at least 1, with inertia 0.

    Raises ValueError for no vectors, a non-2-D array, or k_min < 1 or k_max < k_min.
    """
    _check_matrix(vectors)
    if vectors.shape[0] == 0:
        raise ValueError("no vectors to cluster")
    if k_min < 1 or k_max < k_min:
        raise ValueError(f"need 1 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    sample = _sample(vectors, max(sample_size, k_max + 1), seed)  # (m, d) float32
    distinct = _count_distinct(sample)
    upper = min(k_max, sample.shape[0] - 1, distinct)
    if upper < k_min:
        k = max(1, min(k_min, distinct))
        logger.debug("elbow: %d distinct vectors: k=%d without a sweep", distinct, k)
        return ElbowCurve(ks=(k,), inertias=(0.0,), chosen_k=k, knee_found=False)
    ks, inertias = _sweep(sample, k_min, upper, seed)
    chosen_k, knee_found = _pick_k(ks, inertias, previous_k)
    logger.debug("elbow over k=%d..%d on %d vectors: k=%d (knee found: %s)",
                 ks[0], ks[-1], len(sample), chosen_k, knee_found)
    return ElbowCurve(ks=ks, inertias=inertias, chosen_k=chosen_k, knee_found=knee_found)


def fit(
    vectors: FloatMatrix, k: int, seed: int, start: FloatMatrix | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """K-means with `k` clusters over all vectors.

    Returns labels `(n,)` int64 and L2-normalised centroids `(k, d)` float32. The start is the
    lower-inertia one of KMeans++ (best of `FIT_N_INIT` seeded tries) and bisecting growth
    (`_grow`), both run on a seeded sample of `FIT_SAMPLE` (or 10 k) vectors; when there are
    more vectors, Lloyd iterations over all of them (at most `LARGE_MAX_ITER`) finish from
    there. Fewer distinct vectors than k leave some labels unused. Labels are k-means' own
    (Euclidean); `nearest` (cosine to the normalised centroids) can differ for a photo lying
    between a tight and a loose cluster.

    `start`, `(j, d)`: the previous clusters' centres (e.g. their members' means), any number
    of them. When j != k they are first brought to k the way the clusters would grow or shrink
    (`_resized`: split the cluster whose split gains the most, or merge the two whose merge
    costs the least), so that most photos keep their cluster when k changes. Lloyd runs from
    there too, and that result is kept unless the fresh one has at least `FRESH_GAIN` less
    inertia: on real photos k-means has many local optima within a fraction of a percent of
    each other, and hopping between them moves photos between folders for nothing.

    Raises ValueError unless 1 <= k <= n, or when `start` is not `(j, d)` with j >= 1.
    """
    _check_matrix(vectors)
    if not 1 <= k <= vectors.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the number of vectors ({len(vectors)})")
    if start is not None and (start.ndim != 2 or start.shape[0] == 0
                              or start.shape[1] != vectors.shape[1]):
        raise ValueError(f"start has shape {start.shape}, expected (j, {vectors.shape[1]})")
    data = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d) float32
    sample = _sample(data, max(FIT_SAMPLE, 10 * k), seed)  # (m, d) float32
    with threadpool_limits(limits=THREADS):
        model = _best_start(sample, k, seed)
        large = sample.shape[0] < data.shape[0]
        if large:
            model = _lloyd(data, model.cluster_centers_, seed, LARGE_MAX_ITER)
        if start is not None:
            centres = _resized(sample, np.asarray(start, dtype=np.float32), k, seed)  # (k, d)
            model = _keep_start(data, model, centres, seed, LARGE_MAX_ITER if large else 300)
    labels = np.asarray(model.labels_, dtype=np.int64)  # (n,) int64
    centroids = _unit_rows(np.asarray(model.cluster_centers_, dtype=np.float32))  # (k, d)
    return labels, centroids


def nearest(vectors: FloatMatrix, centroids: FloatMatrix) -> npt.NDArray[np.int64]:
    """Index of the centroid with the largest inner product, per vector: `(n,)` int64.

    Raises ValueError when there are no centroids or the dimensions differ.
    """
    _check_matrix(vectors)
    _check_matrix(centroids)
    if centroids.shape[0] == 0:
        raise ValueError("no centroids")
    if vectors.shape[1] != centroids.shape[1]:
        raise ValueError(f"vectors have {vectors.shape[1]} dims, centroids {centroids.shape[1]}")
    result = np.empty(vectors.shape[0], dtype=np.int64)  # (n,) int64
    for start in range(0, vectors.shape[0], _CHUNK):
        scores = vectors[start : start + _CHUNK] @ centroids.T  # (chunk, k)
        result[start : start + _CHUNK] = np.argmax(scores, axis=1)
    return result


def match_names(
    previous: Mapping[int, str],
    labels: Mapping[int, int],
    used_names: AbstractSet[str],
    min_overlap: float,
) -> dict[int, str]:
    """Name the new clusters after the old ones they continue.

    `previous`: photo id -> old cluster name; `labels`: photo id -> new label. Only photos in
    both count: vanished photos and new photos carry no evidence. Old clusters and new labels
    are paired by Hungarian assignment maximising shared photos; a pair is accepted when
    `overlap >= min_overlap * max(old size, new size)` (sizes over those shared photos), i.e.
    the new cluster holds at least that share of the old one and the old one supplied at least
    that share of it. So an unchanged clustering keeps every name, a split gives the name to
    the larger part, a merge keeps the larger old cluster's name, and growth by new photos
    alone never renames. Every other label gets a new name, numbered above all of
    `used_names` and the previous names.

    Returns label -> name for every label in `labels`. Raises ValueError unless
    0 <= min_overlap <= 1.
    """
    shared = Counter(
        (previous[photo], int(label)) for photo, label in labels.items() if photo in previous
    )
    new_labels = {int(label) for label in labels.values()}
    return name_labels(shared, new_labels, set(used_names) | set(previous.values()), min_overlap)


def name_labels(
    shared: Counter[tuple[str, int]],
    new_labels: AbstractSet[int],
    taken: AbstractSet[str],
    min_overlap: float,
) -> dict[int, str]:
    """`match_names` on counts already made: `shared[(old name, new label)]` photos, the
    labels to name, and every name taken (used before, or previous). The same rules; for
    callers that count over arrays (a million photos do not fit in dicts cheaply).

    Raises ValueError unless 0 <= min_overlap <= 1."""
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be within [0, 1], got {min_overlap}")
    names = {label: name for label, name in _assign_old_names(shared, min_overlap).items()
             if label in new_labels}
    unmatched = sorted(label for label in new_labels if label not in names)
    names.update(zip(unmatched, new_names(len(unmatched), taken), strict=True))
    logger.debug("names: %d kept, %d new", len(new_labels) - len(unmatched), len(unmatched))
    return names


def new_names(count: int, used_names: AbstractSet[str]) -> list[str]:
    """`count` names "cluster-NNN", numbered above the highest "cluster-<digits>" in use.

    Other names do not affect the numbering (they cannot collide). Zero-padded to 3 digits,
    longer past 999. Raises ValueError for a negative count.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    numbers = (_NAME.fullmatch(name) for name in used_names)
    highest = max((int(match.group(1)) for match in numbers if match), default=0)
    return [f"cluster-{number:03d}" for number in range(highest + 1, highest + 1 + count)]


def _check_matrix(array: FloatMatrix) -> None:
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"expected a 2-D array of vectors, got shape {array.shape}")


def _sample(vectors: FloatMatrix, size: int, seed: int) -> npt.NDArray[np.float32]:
    """At most `size` rows, chosen without replacement by `seed`, in their original order."""
    count = vectors.shape[0]
    if count <= size:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)  # (size, d) float32


def _unit_rows(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (k, 1)
    # a zero centroid (only from all-zero input) stays zero instead of turning into NaN
    unit = np.zeros_like(matrix)  # (k, d) float32
    np.divide(matrix, norms, out=unit, where=norms > 0)
    return unit


def _count_distinct(vectors: npt.NDArray[np.float32]) -> int:
    # rows as opaque byte strings: np.unique over them is one sort, not a per-column lexsort
    rows = vectors.view(np.dtype((np.void, vectors.dtype.itemsize * vectors.shape[1])))
    return int(np.unique(rows).size)


def _grow(sample: npt.NDArray[np.float32], k_max: int, seed: int) -> Iterator[Any]:
    """Fitted KMeans models for k = 1, 2, ... up to `k_max` by bisecting growth.

    Each step splits in two (KMeans++ 2-means) the cluster whose split removes the most squared
    error, then runs Lloyd over the whole sample from those centres. Why not KMeans++ per k: in
    512 dims a point's squared distance to a foreign blob is only about twice that to its own,
    so D^2 seeding often puts two seeds in one blob and none in another, which Lloyd cannot
    repair; the curve then shows false knees. Why the largest gain and not the largest error:
    a big loose cluster (all the photos of people) has the largest error without having two
    parts, and splitting it first makes the curve bend one k too late or too early. Stops
    early once every cluster is one point.
    """
    model = _lloyd(sample, sample.mean(axis=0, keepdims=True), seed)
    yield model
    for _ in range(1, k_max):
        centres = split_best(sample, model, seed)  # (k + 1, d) float32, or None
        if centres is None:
            return
        model = _lloyd(sample, centres, seed)
        yield model


def split_best(
    sample: npt.NDArray[np.float32], model: Any, seed: int
) -> npt.NDArray[np.float32] | None:
    """The centres after splitting the cluster whose 2-means split gains the most.

    Public, with `two_means`, as the growth rule: bench/quality.py swaps in the rule it
    replaced to measure the difference."""
    labels = model.labels_  # (m,)
    centres = np.asarray(model.cluster_centers_, dtype=np.float32)  # (k, d)
    best_gain, best = 0.0, None
    for cluster in range(len(centres)):
        members = sample[labels == cluster]  # (c, d)
        if len(members) < 2:
            continue
        halves = two_means(members, seed)
        residual = members - centres[cluster]  # (c, d)
        gain = float(np.einsum("ij,ij->", residual, residual)) - float(halves.inertia_)
        if gain > best_gain:
            best_gain, best = gain, (cluster, halves.cluster_centers_)
    if best is None:
        return None
    kept = np.delete(centres, best[0], axis=0)  # (k - 1, d)
    return np.vstack([kept, best[1]]).astype(np.float32)


def two_means(members: npt.NDArray[np.float32], seed: int) -> Any:
    """A fitted 2-means of `members` (c, d): the split `split_best` weighs for each cluster."""
    halves = KMeans(n_clusters=2, init="k-means++", n_init=FIT_N_INIT, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # identical members
        return halves.fit(members)


def _lloyd(
    data: npt.NDArray[np.float32], centres: Any, seed: int, max_iter: int = 300
) -> Any:
    model = KMeans(
        n_clusters=len(centres), init=centres, n_init=1, max_iter=max_iter, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points, capped iterations
        return model.fit(data)


def _resized(
    sample: npt.NDArray[np.float32], start: npt.NDArray[np.float32], k: int, seed: int
) -> npt.NDArray[np.float32]:
    """`start` `(j, d)` brought to k centres `(k, d)` on the sample, one cluster at a time.

    Growing splits the cluster whose 2-means split removes the most squared error, as the
    elbow's sweep does (`split_best`); shrinking merges the pair whose merge adds the least
    (`_merge_cheapest`). Each step leaves every other cluster as it was, so the clusters that
    did not take part keep their photos and names. Lloyd settles the sample after each step.
    When no cluster can be split (too few distinct points), the fresh start is used instead.
    """
    if len(start) == k:
        return start
    model = _lloyd(sample, start, seed)
    while model.n_clusters != k:
        # one cluster fewer or more, (k' - 1, d) or (k' + 1, d); None when none can split
        centres = (_merge_cheapest(model) if model.n_clusters > k
                   else split_best(sample, model, seed))
        if centres is None:
            model = _best_start(sample, k, seed)
            break
        model = _lloyd(sample, centres, seed)
    return np.asarray(model.cluster_centers_, dtype=np.float32)


def _merge_cheapest(model: Any) -> npt.NDArray[np.float32]:
    """The centres after merging the pair whose merge adds the least squared error (Ward)."""
    centres = np.asarray(model.cluster_centers_, dtype=np.float64)  # (k, d)
    sizes = np.bincount(model.labels_, minlength=len(centres)).astype(np.float64)  # (k,)
    gaps = np.square(centres[:, None, :] - centres[None, :, :]).sum(axis=2)  # (k, k)
    totals = sizes[:, None] + sizes[None, :]  # (k, k)
    costs = np.divide(sizes[:, None] * sizes[None, :] * gaps, totals,
                      out=np.zeros_like(gaps), where=totals > 0)
    costs[np.tril_indices(len(centres))] = np.inf  # each pair once, never a cluster with itself
    first, second = np.unravel_index(int(np.argmin(costs)), costs.shape)
    weights = sizes[[first, second]] + 1e-12  # two empty clusters merge at their midpoint
    merged = np.average(centres[[first, second]], axis=0, weights=weights)  # (d,)
    kept = np.delete(centres, [first, second], axis=0)  # (k - 2, d)
    return np.vstack([kept, merged]).astype(np.float32)


def _keep_start(
    data: npt.NDArray[np.float32], fresh: Any, start: npt.NDArray[np.float32], seed: int,
    max_iter: int,
) -> Any:
    """Lloyd from `start`, unless the fresh model is clearly better (see fit)."""
    warm = _lloyd(data, start, seed, max_iter)
    if fresh.inertia_ < (1.0 - FRESH_GAIN) * warm.inertia_:
        logger.debug("fit: fresh start beats the previous clusters (%.4g < %.4g)",
                     fresh.inertia_, warm.inertia_)
        return fresh
    return warm


def _best_start(sample: npt.NDArray[np.float32], k: int, seed: int) -> Any:
    """The lower-inertia fit on the sample: KMeans++ or bisecting growth."""
    plus = KMeans(n_clusters=k, init="k-means++", n_init=FIT_N_INIT, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        plus.fit(sample)
    *_, grown = _grow(sample, k, seed)  # the last model: k clusters unless points ran out
    if grown.n_clusters == k and grown.inertia_ < plus.inertia_:
        logger.debug("fit: bisecting start beats KMeans++ (%.4g < %.4g)",
                      grown.inertia_, plus.inertia_)
        return grown
    return plus


def _sweep(
    sample: npt.NDArray[np.float32], k_min: int, k_max: int, seed: int
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """ks and k-means inertias on `sample` for k_min..k_max (fewer if points run out)."""
    with threadpool_limits(limits=THREADS):
        grown = [model for model in _grow(sample, k_max, seed) if model.n_clusters >= k_min]
    if not grown:  # only when rounding makes distinct points coincide
        return (k_min,), (0.0,)
    ks = tuple(int(model.n_clusters) for model in grown)
    return ks, tuple(float(model.inertia_) for model in grown)


def _pick_k(
    ks: tuple[int, ...], inertias: tuple[float, ...], previous_k: int | None
) -> tuple[int, bool]:
    """The knee (or the fallback) with hysteresis applied; also whether kneed found a knee."""
    # k clusters can always do as well as k - 1: a bad k-means run must not fake a knee
    envelope = np.minimum.accumulate(np.asarray(inertias, dtype=np.float64))
    scores = elbow_scores(ks, envelope)
    knee = _kneed_knee(ks, envelope)
    chosen = knee if knee is not None else ks[int(np.argmax(scores))]
    if knee is None:
        logger.info("no knee in the elbow curve over k=%d..%d; using k=%d", ks[0], ks[-1], chosen)
    if previous_k is not None and previous_k in ks and previous_k != chosen:
        old, new = ks.index(previous_k), ks.index(chosen)
        if keep_previous(ks, envelope, old, new):
            logger.debug("elbow: keeping the previous k=%d over k=%d", previous_k, chosen)
            chosen = previous_k
    return chosen, knee is not None


def keep_previous(
    ks: tuple[int, ...], envelope: npt.NDArray[np.float64], old: int, new: int
) -> bool:
    """The hysteresis rule of choose_k, on positions in the sweep: False when `new` is
    clearly better than `old`. Public, with `elbow_scores`: bench/stability.py swaps in the
    rule it replaced to measure the difference."""
    scores = elbow_scores(ks, envelope)
    if scores[new] - scores[old] > FAR_SCORE:
        return False
    start = old if old < new else new - 1  # the gain counted from here up to `new`
    if start < 0 or new == len(ks) - 1:
        return True  # no cluster before the knee, or none after it, to compare with
    gain = (envelope[start] - envelope[new]) / (ks[new] - ks[start])  # per cluster added
    tail = (envelope[new] - envelope[-1]) / (ks[-1] - ks[new])  # per cluster beyond
    return not (gain > 0 and gain >= CLEAR_GAIN * tail)


def elbow_scores(
    ks: tuple[int, ...], envelope: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Kneedle's difference curve: how far each point lies below the normalised chord."""
    span_k = ks[-1] - ks[0]
    x = (np.asarray(ks, dtype=np.float64) - ks[0]) / span_k if span_k else np.zeros(len(ks))
    return 1.0 - x - _normalised(envelope)


def _normalised(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Scaled to [0, 1]; a flat (or non-finite) curve becomes all zeros."""
    low, high = float(values.min()), float(values.max())
    span = high - low
    if not np.isfinite(span) or span <= 1e-12 * max(abs(high), 1e-300):
        return np.zeros_like(values)
    return (values - low) / span


def _kneed_knee(ks: tuple[int, ...], envelope: npt.NDArray[np.float64]) -> int | None:
    """kneed's elbow, or None when it finds none or cannot work on this curve."""
    curve = _normalised(envelope)
    if len(ks) < 3 or not curve.any():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older kneed warns "no knee found"
            locator = KneeLocator(list(ks), curve, curve="convex", direction="decreasing")
    except (ValueError, IndexError, FloatingPointError) as error:
        logger.debug("kneed failed on the elbow curve: %s", error)
        return None
    return None if locator.knee is None else int(locator.knee)


def _assign_old_names(shared: Counter[tuple[str, int]], min_overlap: float) -> dict[int, str]:
    """Hungarian assignment of old names to new labels on the shared-photo counts."""
    if not shared:
        return {}
    old_names = sorted({name for name, _ in shared})
    new_labels = sorted({label for _, label in shared})
    overlap = np.zeros((len(old_names), len(new_labels)), dtype=np.int64)  # (old, new)
    row = {name: index for index, name in enumerate(old_names)}
    column = {label: index for index, label in enumerate(new_labels)}
    for (name, label), count in shared.items():
        overlap[row[name], column[label]] = count
    old_sizes, new_sizes = overlap.sum(axis=1), overlap.sum(axis=0)
    names: dict[int, str] = {}
    for i, j in zip(*linear_sum_assignment(overlap, maximize=True), strict=True):
        common = int(overlap[i, j])
        if common > 0 and common >= min_overlap * max(old_sizes[i], new_sizes[j]):
            names[new_labels[j]] = old_names[i]
    return names

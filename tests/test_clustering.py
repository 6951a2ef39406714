"""Tests for photocluster.clustering on synthetic blobs on the unit sphere."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from photocluster import clustering
from photocluster.clustering import (
    ElbowCurve,
    choose_k,
    fit,
    match_names,
    nearest,
    new_names,
)

Vectors = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


def make_blobs(count: int, blobs: int, dims: int, seed: int = 0) -> tuple[Vectors, Labels]:
    """`count` unit vectors around `blobs` random unit centres, and each one's true blob."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)  # (blobs, dims)
    truth = np.arange(count) % blobs  # equal sizes, so no blob is too small to count
    points = centres[truth] + rng.standard_normal((count, dims)) * (0.4 / np.sqrt(dims))
    points /= np.linalg.norm(points, axis=1, keepdims=True)  # (count, dims)
    return points.astype(np.float32), truth.astype(np.int64)


def fake_sweep(inertias: list[float], k_min: int = 2) -> Any:
    """A stand-in for the k-means sweep that returns a fixed curve."""

    def sweep(
        sample: Vectors, low: int, high: int, seed: int
    ) -> tuple[tuple[int, ...], tuple[float, ...]]:
        ks = tuple(range(k_min, k_min + len(inertias)))
        return ks, tuple(inertias)

    return sweep


def loose_cluster_and_tight_pair(seed: int) -> tuple[Vectors, Labels]:
    """300 vectors spread widely around one centre, and two tight groups of 60 close together.

    The loose cluster has by far the largest squared error, yet splitting it gains less than
    separating the pair."""
    rng = np.random.default_rng(seed)
    dims = 32
    centres = rng.standard_normal((3, dims))
    centres[1] /= np.linalg.norm(centres[1])
    centres[2] = centres[1] + 0.5 * rng.standard_normal(dims) / np.sqrt(dims)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)  # (3, dims)
    sizes, noise = [300, 60, 60], [0.9, 0.1, 0.1]
    points = np.vstack([
        centres[i] + rng.standard_normal((sizes[i], dims)) * noise[i] / np.sqrt(dims)
        for i in range(3)
    ])
    points /= np.linalg.norm(points, axis=1, keepdims=True)  # (420, dims)
    return points.astype(np.float32), np.repeat([0, 1, 2], sizes).astype(np.int64)


def structureless(count: int, dims: int, seed: int) -> Vectors:
    """Unit vectors drawn uniformly: k-means has many near-equal optima on these."""
    points = np.random.default_rng(seed).standard_normal((count, dims))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


INVERSE_K = [1.0 / k for k in range(2, 25)]  # kneed puts the knee at 7


def bent(knee: int, before: float, after: float) -> list[float]:
    """Inertias over k = 2..24 falling by `before` per k up to `knee`, by `after` beyond it."""
    return [300.0 - before * (min(k, knee) - 2) - after * max(0, k - knee) for k in range(2, 25)]


MARGINAL_KNEE = bent(8, 10.0, 5.0)  # the 8th cluster removes only twice what later ones do
CLEAR_KNEE = bent(8, 10.0, 2.0)  # five times


# choose_k


@pytest.mark.parametrize(("blobs", "dims"), [(5, 64), (8, 512)])
def test_choose_k_finds_the_number_of_clear_blobs(blobs: int, dims: int) -> None:
    vectors, _ = make_blobs(100 * blobs, blobs, dims)

    curve = choose_k(vectors, k_min=2, k_max=14, sample_size=20000, seed=0)

    assert curve.chosen_k == blobs
    assert curve.knee_found
    assert curve.ks == tuple(range(2, 15))
    assert len(curve.inertias) == len(curve.ks)


def test_choose_k_is_the_same_for_the_same_seed() -> None:
    vectors, _ = make_blobs(300, 6, 64)

    first = choose_k(vectors, 2, 10, 200, seed=3)
    second = choose_k(vectors, 2, 10, 200, seed=3)

    assert first == second


def test_choose_k_sweeps_a_sample_of_at_most_sample_size(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real_sweep = clustering._sweep

    def spy(sample: Vectors, low: int, high: int, seed: int) -> Any:
        sizes.append(sample.shape[0])
        return real_sweep(sample, low, high, seed)

    monkeypatch.setattr(clustering, "_sweep", spy)
    vectors, _ = make_blobs(1000, 4, 64)

    curve = choose_k(vectors, 2, 8, sample_size=300, seed=0)

    assert sizes == [300]
    assert curve.chosen_k == 4


def test_choose_k_without_a_knee_falls_back_inside_the_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = [float(30 - k) for k in range(2, 25)]  # kneed finds no knee on a straight line
    monkeypatch.setattr(clustering, "_sweep", fake_sweep(line))
    vectors, _ = make_blobs(100, 2, 16)

    curve = choose_k(vectors, 2, 24, 20000, seed=0)

    assert not curve.knee_found
    assert 2 <= curve.chosen_k <= 24
    assert curve.inertias == tuple(line)


def test_choose_k_without_a_knee_keeps_the_previous_k(monkeypatch: pytest.MonkeyPatch) -> None:
    line = [float(30 - k) for k in range(2, 25)]
    monkeypatch.setattr(clustering, "_sweep", fake_sweep(line))
    vectors, _ = make_blobs(100, 2, 16)

    curve = choose_k(vectors, 2, 24, 20000, seed=0, previous_k=11)

    assert (curve.chosen_k, curve.knee_found) == (11, False)


def test_choose_k_survives_kneed_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("kneed gave up")

    monkeypatch.setattr(clustering, "KneeLocator", broken)
    vectors, _ = make_blobs(300, 5, 64)

    curve = choose_k(vectors, 2, 10, 20000, seed=0)

    assert not curve.knee_found
    assert curve.chosen_k == 5  # the farthest point below the chord is still the blob count


def test_choose_k_on_a_flat_curve_picks_the_fewest_clusters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clustering, "_sweep", fake_sweep([2.0] * 9))
    vectors, _ = make_blobs(100, 2, 16)

    curve = choose_k(vectors, 2, 10, 20000, seed=0)

    assert (curve.chosen_k, curve.knee_found) == (2, False)


@pytest.mark.parametrize("previous_k", [6, 7, 10, 12])
def test_choose_k_keeps_the_previous_k_when_the_knee_is_only_marginally_better(
    monkeypatch: pytest.MonkeyPatch, previous_k: int
) -> None:
    monkeypatch.setattr(clustering, "_sweep", fake_sweep(MARGINAL_KNEE))
    vectors, _ = make_blobs(100, 2, 16)

    assert choose_k(vectors, 2, 24, 20000, seed=0).chosen_k == 8
    assert choose_k(vectors, 2, 24, 20000, seed=0, previous_k=previous_k).chosen_k == previous_k


@pytest.mark.parametrize("previous_k", [3, 6, 7, 9, 12, 20])
def test_choose_k_moves_to_a_clearly_better_knee(
    monkeypatch: pytest.MonkeyPatch, previous_k: int
) -> None:
    monkeypatch.setattr(clustering, "_sweep", fake_sweep(CLEAR_KNEE))
    vectors, _ = make_blobs(100, 2, 16)

    assert choose_k(vectors, 2, 24, 20000, seed=0, previous_k=previous_k).chosen_k == 8


def test_choose_k_drops_a_previous_k_far_past_a_marginal_knee(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clustering, "_sweep", fake_sweep(MARGINAL_KNEE))
    vectors, _ = make_blobs(100, 2, 16)

    assert choose_k(vectors, 2, 24, 20000, seed=0, previous_k=22).chosen_k == 8


def test_choose_k_keeps_a_previous_k_near_the_knee_of_structureless_vectors() -> None:
    noise = structureless(300, 16, seed=3)
    fresh = choose_k(noise, 2, 12, 20000, seed=0).chosen_k

    for previous_k in (fresh - 1, fresh + 1):
        assert choose_k(noise, 2, 12, 20000, seed=0, previous_k=previous_k).chosen_k == previous_k


def test_choose_k_moves_to_the_knee_of_a_one_over_k_curve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the 7th cluster removes four times the inertia that each later one does
    monkeypatch.setattr(clustering, "_sweep", fake_sweep(INVERSE_K))
    vectors, _ = make_blobs(100, 2, 16)

    assert choose_k(vectors, 2, 24, 20000, seed=0, previous_k=6).chosen_k == 7
    assert choose_k(vectors, 2, 24, 20000, seed=0, previous_k=10).chosen_k == 7


@pytest.mark.parametrize(("blobs", "dims"), [(5, 64), (8, 512)])
def test_choose_k_moves_away_from_a_wrong_previous_k_on_clear_blobs(blobs: int, dims: int) -> None:
    vectors, _ = make_blobs(100 * blobs, blobs, dims)

    for previous_k in (2, blobs - 1, blobs + 1, blobs + 4, 30):
        curve = choose_k(vectors, 2, 14, 20000, seed=0, previous_k=previous_k)
        assert curve.chosen_k == blobs


def test_choose_k_keeps_the_previous_k_when_it_is_the_knee() -> None:
    vectors, _ = make_blobs(500, 5, 64)

    assert choose_k(vectors, 2, 10, 20000, seed=0, previous_k=5).chosen_k == 5


@pytest.mark.parametrize("count", [1, 2, 3])
def test_choose_k_with_fewer_vectors_than_k_min_uses_one_cluster_per_vector(count: int) -> None:
    vectors, _ = make_blobs(count, count, 16)

    curve = choose_k(vectors, k_min=3, k_max=10, sample_size=20000, seed=0)

    assert curve == ElbowCurve(ks=(count,), inertias=(0.0,), chosen_k=count, knee_found=False)


def test_choose_k_bounds_the_sweep_by_the_number_of_vectors() -> None:
    vectors, _ = make_blobs(6, 6, 16)

    curve = choose_k(vectors, 2, 24, 20000, seed=0)

    assert curve.ks == (2, 3, 4, 5)
    assert curve.chosen_k in curve.ks


def test_choose_k_on_identical_vectors_gives_one_cluster() -> None:
    vectors = np.tile(make_blobs(1, 1, 32)[0], (50, 1))  # (50, 32)

    curve = choose_k(vectors, 2, 24, 20000, seed=0)

    assert (curve.chosen_k, curve.knee_found) == (1, False)
    labels, centroids = fit(vectors, curve.chosen_k, seed=0)
    assert labels.tolist() == [0] * 50
    assert np.allclose(centroids[0], vectors[0], atol=1e-6)


def test_choose_k_on_two_repeated_vectors_gives_two_clusters() -> None:
    two, _ = make_blobs(2, 2, 32)
    vectors = np.repeat(two, 20, axis=0)  # (40, 32): two distinct rows

    curve = choose_k(vectors, 2, 24, 20000, seed=0)

    assert curve.chosen_k == 2
    labels, _ = fit(vectors, 2, seed=0)
    assert adjusted_rand_score(np.repeat([0, 1], 20), labels) == 1.0


def test_choose_k_on_structureless_vectors_stays_in_range() -> None:
    noise = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)

    curve = choose_k(noise, 2, 12, 20000, seed=0)

    assert 2 <= curve.chosen_k <= 12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sweep_separates_a_tight_pair_before_splitting_a_loose_cluster(seed: int) -> None:
    vectors, truth = loose_cluster_and_tight_pair(seed)

    *_, three = clustering._grow(vectors, 3, seed=0)

    assert adjusted_rand_score(truth, three.labels_) == 1.0


@pytest.mark.parametrize(("k_min", "k_max"), [(0, 5), (5, 4)])
def test_choose_k_rejects_a_bad_range(k_min: int, k_max: int) -> None:
    vectors, _ = make_blobs(20, 2, 8)

    with pytest.raises(ValueError):
        choose_k(vectors, k_min, k_max, 100, seed=0)


def test_choose_k_rejects_no_vectors() -> None:
    with pytest.raises(ValueError, match="no vectors"):
        choose_k(np.zeros((0, 512), dtype=np.float32), 2, 24, 20000, seed=0)


# fit


def test_fit_recovers_the_blobs_with_unit_centroids() -> None:
    vectors, truth = make_blobs(400, 8, 512)

    labels, centroids = fit(vectors, 8, seed=0)

    assert labels.shape == (400,) and labels.dtype == np.int64
    assert centroids.shape == (8, 512) and centroids.dtype == np.float32
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_fit_is_deterministic_for_a_seed() -> None:
    vectors, _ = make_blobs(300, 5, 64)

    labels_a, centroids_a = fit(vectors, 5, seed=7)
    labels_b, centroids_b = fit(vectors, 5, seed=7)

    assert np.array_equal(labels_a, labels_b)
    assert np.array_equal(centroids_a, centroids_b)


def test_fit_on_more_vectors_than_its_sample_runs_lloyd_on_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clustering, "FIT_SAMPLE", 100)
    vectors, truth = make_blobs(1000, 6, 64)

    labels, centroids = fit(vectors, 6, seed=0)

    assert labels.shape == (1000,)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert np.array_equal(nearest(vectors, centroids), labels)


def member_means(vectors: Vectors, labels: Labels, k: int) -> Vectors:
    return np.stack([vectors[labels == j].mean(axis=0) for j in range(k)]).astype(np.float32)


def test_fit_from_the_previous_clusters_keeps_structureless_photos_in_place() -> None:
    vectors = structureless(400, 16, seed=1)
    older = np.arange(400) % 10 != 0  # 10% arrive later
    before, _ = fit(vectors[older], 6, seed=0)
    start = member_means(vectors[older], before, 6)

    warm, _ = fit(vectors, 6, seed=0, start=start)
    fresh, _ = fit(vectors, 6, seed=0)

    assert adjusted_rand_score(before, warm[older]) >= 0.9
    assert adjusted_rand_score(before, fresh[older]) < 0.8  # why the start matters


def test_fit_replaces_previous_clusters_that_are_clearly_worse() -> None:
    vectors, truth = make_blobs(400, 4, 64)
    # a local optimum Lloyd cannot leave: blob 0 cut in two, blobs 2 and 3 lumped together
    stuck = np.where(truth == 3, 2, truth)
    stuck[(truth == 0) & (np.arange(400) % 8 == 0)] = 3
    start = member_means(vectors, stuck, 4)
    assert adjusted_rand_score(truth, clustering._lloyd(vectors, start, 0).labels_) < 0.9

    labels, _ = fit(vectors, 4, seed=0, start=start)

    assert adjusted_rand_score(truth, labels) == 1.0


def test_fit_from_a_start_on_more_vectors_than_its_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clustering, "FIT_SAMPLE", 100)
    vectors, truth = make_blobs(1000, 5, 64)
    start = member_means(vectors, truth, 5)

    labels, centroids = fit(vectors, 5, seed=0, start=start)

    assert np.array_equal(labels, truth)
    assert np.array_equal(nearest(vectors, centroids), labels)


def agreement(before: Labels, after: Labels) -> float:
    """Share of points whose cluster continues: old and new labels paired one to one
    (Hungarian), as the names follow them."""
    table = np.zeros((before.max() + 1, after.max() + 1), dtype=np.int64)  # (old, new)
    np.add.at(table, (before, after), 1)
    rows, columns = linear_sum_assignment(table, maximize=True)
    return float(table[rows, columns].sum() / len(before))


@pytest.mark.parametrize(("previous", "k", "kept"), [(6, 7, 0.75), (6, 5, 0.75), (6, 8, 0.6),
                                                     (6, 4, 0.6)])
def test_fit_from_previous_clusters_of_another_k_keeps_most_points_in_place(
    previous: int, k: int, kept: float
) -> None:
    vectors = structureless(400, 16, seed=1)  # many equally good clusterings: nothing is forced
    older = np.arange(400) % 10 != 0  # 10% arrive later
    before, _ = fit(vectors[older], previous, seed=0)
    start = member_means(vectors[older], before, previous)

    warm, _ = fit(vectors, k, seed=0, start=start)
    fresh, _ = fit(vectors, k, seed=0)

    assert len(set(warm.tolist())) == k
    assert agreement(before, warm[older]) >= kept  # each split or merge moves about 1/12
    assert agreement(before, fresh[older]) < 0.5  # why the start matters


def test_fit_merges_the_two_closest_previous_clusters() -> None:
    vectors, truth = make_blobs(500, 5, 64)
    cut = np.where((truth == 0) & (np.arange(500) % 2 == 0), 5, truth)  # blob 0 in two halves
    start = member_means(vectors, cut, 6)

    labels, _ = fit(vectors, 5, seed=0, start=start)

    assert adjusted_rand_score(truth, labels) == 1.0


@pytest.mark.parametrize("shape", [(3, 7), (0, 8), (8,)])
def test_fit_rejects_a_start_of_the_wrong_shape(shape: tuple[int, ...]) -> None:
    vectors, _ = make_blobs(40, 2, 8)

    with pytest.raises(ValueError, match="start"):
        fit(vectors, 2, seed=0, start=np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("k", [0, 11])
def test_fit_rejects_k_outside_one_to_n(k: int) -> None:
    vectors, _ = make_blobs(10, 2, 8)

    with pytest.raises(ValueError):
        fit(vectors, k, seed=0)


# nearest


def test_nearest_picks_the_largest_inner_product() -> None:
    centroids = np.eye(3, dtype=np.float32)  # (3, 3)
    vectors = np.array([[0.1, 0.9, 0.0], [0.0, 0.2, 0.3], [1.0, 0.0, -1.0]], dtype=np.float32)

    result = nearest(vectors, centroids)

    assert result.dtype == np.int64
    assert result.tolist() == [1, 2, 0]


def test_nearest_agrees_with_fit_on_blobs_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clustering, "_CHUNK", 7)
    vectors, _ = make_blobs(200, 4, 64)
    labels, centroids = fit(vectors, 4, seed=0)

    assert np.array_equal(nearest(vectors, centroids), labels)


def test_nearest_of_no_vectors_is_empty() -> None:
    result = nearest(np.zeros((0, 4), dtype=np.float32), np.eye(4, dtype=np.float32))

    assert result.shape == (0,) and result.dtype == np.int64


def test_nearest_rejects_mismatched_dimensions_and_no_centroids() -> None:
    vectors = np.ones((2, 4), dtype=np.float32)

    with pytest.raises(ValueError):
        nearest(vectors, np.ones((3, 5), dtype=np.float32))
    with pytest.raises(ValueError):
        nearest(vectors, np.zeros((0, 4), dtype=np.float32))


# match_names


def clusters(**members: range) -> dict[int, str]:
    """photo id -> old name, from name=range(ids)."""
    return {photo: name for name, ids in members.items() for photo in ids}


def test_match_names_keeps_every_name_of_a_relabelled_identical_clustering() -> None:
    previous = clusters(**{"cluster-001": range(0, 10), "cluster-002": range(10, 25),
                           "beach": range(25, 30)})
    relabel = {"cluster-001": 2, "cluster-002": 0, "beach": 1}
    labels = {photo: relabel[name] for photo, name in previous.items()}

    names = match_names(previous, labels, {"cluster-001", "cluster-002", "beach"}, 0.3)

    assert names == {2: "cluster-001", 0: "cluster-002", 1: "beach"}


def test_match_names_gives_a_split_clusters_name_to_the_larger_part() -> None:
    previous = clusters(**{"cluster-001": range(0, 10)})
    labels = {photo: (0 if photo < 3 else 1) for photo in range(10)}

    names = match_names(previous, labels, {"cluster-001"}, 0.3)

    assert names == {1: "cluster-001", 0: "cluster-002"}


def test_match_names_keeps_the_larger_old_name_in_a_merge() -> None:
    previous = clusters(**{"cluster-001": range(0, 4), "cluster-002": range(4, 10)})
    labels = dict.fromkeys(range(10), 5)

    names = match_names(previous, labels, {"cluster-001", "cluster-002"}, 0.3)

    assert names == {5: "cluster-002"}


def test_match_names_never_reuses_a_retired_name() -> None:
    previous = clusters(**{"cluster-002": range(0, 10)})
    labels = {photo: photo % 2 for photo in range(10)}  # every second photo: no majority part
    used = {"cluster-001", "cluster-002", "cluster-007"}  # 001 and 007 are retired

    names = match_names(previous, labels, used, 0.6)

    assert sorted(names.values()) == ["cluster-008", "cluster-009"]


def test_match_names_ignores_photos_that_vanished() -> None:
    previous = clusters(**{"cluster-001": range(0, 100), "cluster-002": range(100, 110)})
    labels = {**dict.fromkeys(range(95, 100), 0), **dict.fromkeys(range(100, 110), 1)}
    # 95 photos of cluster-001 are gone: the 5 left are still all of it that is here

    names = match_names(previous, labels, {"cluster-001", "cluster-002"}, 0.3)

    assert names == {0: "cluster-001", 1: "cluster-002"}


def test_match_names_keeps_a_name_when_only_new_photos_joined() -> None:
    previous = clusters(**{"cluster-001": range(0, 5)})
    labels = dict.fromkeys(range(0, 100), 3)  # photos 5..99 are new

    names = match_names(previous, labels, {"cluster-001"}, 0.3)

    assert names == {3: "cluster-001"}


def test_match_names_gives_a_cluster_of_new_photos_a_new_name() -> None:
    previous = clusters(**{"cluster-001": range(0, 5)})
    labels = {**dict.fromkeys(range(0, 5), 0), **dict.fromkeys(range(5, 9), 1)}

    names = match_names(previous, labels, {"cluster-001"}, 0.3)

    assert names == {0: "cluster-001", 1: "cluster-002"}


def test_match_names_below_min_overlap_gives_a_new_name() -> None:
    previous = clusters(**{"cluster-001": range(0, 10)})
    labels = {photo: photo % 4 for photo in range(10)}  # largest part: 3 of 10

    names = match_names(previous, labels, {"cluster-001"}, 0.4)

    assert "cluster-001" not in names.values()
    assert sorted(names) == [0, 1, 2, 3]
    assert len(set(names.values())) == 4


def test_match_names_when_k_grows_and_shrinks_keeps_matched_names_and_never_reuses_one() -> None:
    previous = clusters(**{"cluster-001": range(0, 20), "cluster-002": range(20, 30),
                           "cluster-003": range(30, 36)})
    # K 3 -> 4: cluster-001 splits 14 / 6, the others stay
    grown = {photo: (0 if photo < 14 else 1) for photo in range(20)}
    grown.update({photo: 2 for photo in range(20, 30)} | {photo: 3 for photo in range(30, 36)})
    used = {"cluster-001", "cluster-002", "cluster-003"}

    after_split = match_names(previous, grown, used, 0.3)

    assert after_split == {0: "cluster-001", 1: "cluster-004", 2: "cluster-002", 3: "cluster-003"}
    # K 4 -> 3: cluster-002 (10) and cluster-003 (6) merge; the smaller name retires
    named = {photo: after_split[label] for photo, label in grown.items()}
    merged = {photo: (7 if name in ("cluster-002", "cluster-003") else 8 if name == "cluster-001"
                      else 9) for photo, name in named.items()}
    used |= {"cluster-004"}

    after_merge = match_names(named, merged, used, 0.3)

    assert after_merge == {7: "cluster-002", 8: "cluster-001", 9: "cluster-004"}
    # K 3 -> 4 again: the piece that splits off gets a fresh name, not the retired cluster-003
    again = {photo: (10 if photo >= 30 else merged[photo]) for photo in merged}

    named_after_merge = {photo: after_merge[label] for photo, label in merged.items()}
    assert match_names(named_after_merge, again, used, 0.3)[10] == "cluster-005"


def test_match_names_of_no_labels_is_empty() -> None:
    assert match_names(clusters(a=range(3)), {}, {"a"}, 0.3) == {}


@pytest.mark.parametrize("min_overlap", [-0.1, 1.5])
def test_match_names_rejects_min_overlap_outside_zero_to_one(min_overlap: float) -> None:
    with pytest.raises(ValueError):
        match_names({}, {1: 0}, set(), min_overlap)


# new_names


def test_new_names_start_at_one_without_used_names() -> None:
    assert new_names(3, set()) == ["cluster-001", "cluster-002", "cluster-003"]


def test_new_names_number_above_the_highest_used_one_and_ignore_other_names() -> None:
    used = {"cluster-002", "cluster-0010", "beach", "cluster-x", "cluster-99a", "xcluster-500"}

    assert new_names(2, used) == ["cluster-011", "cluster-012"]


def test_new_names_grow_past_three_digits() -> None:
    assert new_names(2, {"cluster-998"}) == ["cluster-999", "cluster-1000"]


def test_new_names_of_zero_is_empty_and_negative_is_an_error() -> None:
    assert new_names(0, {"cluster-001"}) == []
    with pytest.raises(ValueError):
        new_names(-1, set())

"""Stable folders: names survive a recluster after growth, and a recluster of unchanged data.

The set A tests use the real model's vectors from the session's one scan of set A
(`scanned_set_a` in tests/conftest.py, shared with test_quality.py), replayed by `set_a_replay`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from photocluster import cli, library, recluster
from photocluster.config import ClusteringConfig, load_config
from photocluster.tree import ClusterTree
from tests.support.config import write_config
from tests.support.fakes import ReplayEmbedder
from tests.support.photos import copy_dataset

real_set_a = [pytest.mark.weights, pytest.mark.datasets, pytest.mark.slow]


def snapshot(vectors: np.ndarray, previous: dict[int, str] | None = None,
             previous_k: int | None = None, used: frozenset[str] = frozenset(),
             settings: ClusteringConfig | None = None) -> recluster.Snapshot:
    ids = np.arange(len(vectors), dtype=np.int64)
    return recluster.Snapshot(ids, vectors, previous or {}, used, previous_k,
                              settings or ClusteringConfig())


def structureless(count: int, dims: int, seed: int) -> np.ndarray:
    points = np.random.default_rng(seed).standard_normal((count, dims))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


# recluster.compute on synthetic vectors (fast)


def test_previous_centres_are_the_member_means_in_name_order() -> None:
    vectors = np.eye(4, dtype=np.float32)  # (4, 4)
    snap = snapshot(vectors, {0: "b", 1: "a", 2: "b"})  # photo 3 has no cluster yet

    centres = recluster.previous_centres(snap)

    assert centres is not None
    assert np.allclose(centres, [[0, 1, 0, 0], [0.5, 0, 0.5, 0]])


def test_previous_centres_count_the_clusters_present_and_are_none_without_any() -> None:
    snap = snapshot(np.eye(3, dtype=np.float32), {0: "a", 1: "b", 2: "b", 7: "gone"})

    centres = recluster.previous_centres(snap)

    assert centres is not None and centres.shape == (2, 3)
    assert recluster.previous_centres(snapshot(np.eye(3, dtype=np.float32))) is None


def first_and_placed(
    vectors: np.ndarray, older: np.ndarray, settings: ClusteringConfig
) -> tuple[recluster.Result, dict[int, str]]:
    """A recluster of the `older` photos, and every photo's folder after the rest arrived and
    went to the nearest centroid (as the daemon does between reclusters)."""
    first = recluster.compute(
        recluster.Snapshot(older, vectors[older], {}, frozenset(), None, settings)
    )
    names = sorted(first.centroids)
    placed = recluster.clustering.nearest(vectors, np.stack([first.centroids[n] for n in names]))
    return first, {i: first.assignment.get(i, names[int(placed[i])]) for i in range(len(vectors))}


def test_recluster_after_ten_percent_more_photos_keeps_the_folders_of_the_rest() -> None:
    vectors = structureless(400, 16, seed=1)  # the hard case: many equally good clusterings
    settings = ClusteringConfig(k_min=6, k_max=6)
    older = np.flatnonzero(np.arange(400) % 10 != 0)
    first, previous = first_and_placed(vectors, older, settings)

    second = recluster.compute(
        snapshot(vectors, previous, 6, frozenset(first.centroids), settings)
    )

    kept = np.mean([second.assignment[int(i)] == first.assignment[int(i)] for i in older])
    assert kept >= 0.95
    assert second.info.changed == sum(second.assignment[i] != previous[i] for i in range(400))


@pytest.mark.parametrize("k", [5, 7])
def test_recluster_to_another_k_keeps_the_folders_of_most_photos(k: int) -> None:
    vectors = structureless(400, 16, seed=1)
    older = np.flatnonzero(np.arange(400) % 10 != 0)
    first, previous = first_and_placed(vectors, older, ClusteringConfig(k_min=6, k_max=6))

    second = recluster.compute(snapshot(vectors, previous, 6, frozenset(first.centroids),
                                        ClusteringConfig(k_min=k, k_max=k)))

    kept = np.mean([second.assignment[int(i)] == first.assignment[int(i)] for i in older])
    assert second.info.k == k
    assert kept >= 0.75  # one cluster split or merged (1/12 of the photos) and Lloyd's drift


@pytest.mark.parametrize("offset", [-1, 1])
def test_recluster_keeps_k_when_the_elbow_only_marginally_prefers_another(offset: int) -> None:
    vectors = structureless(300, 16, seed=3)
    settings = ClusteringConfig(k_min=2, k_max=12)
    k = recluster.compute(snapshot(vectors, settings=settings)).info.k + offset
    first, previous = first_and_placed(vectors, np.arange(300), ClusteringConfig(k_min=k, k_max=k))

    again = recluster.compute(snapshot(vectors, previous, k, frozenset(first.centroids), settings))

    assert again.info.k == k
    assert again.info.changed <= 0.05 * 300


def test_recluster_moves_to_a_clearly_better_k_and_keeps_the_untouched_names() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 64))  # six clear blobs
    truth = np.arange(600) % 6
    vectors = centres[truth] + 0.05 * rng.standard_normal((600, 64))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    names = ["beach", "cats", "dogs", "food", "snow"]
    previous = {i: names[min(int(truth[i]), 4)] for i in range(600)}  # blobs 4 and 5 lumped

    again = recluster.compute(snapshot(vectors, previous, 5, frozenset(names),
                                       ClusteringConfig(k_min=2, k_max=12)))

    assert again.info.k == 6
    assert all(again.assignment[i] == previous[i] for i in range(600) if truth[i] < 4)
    assert again.info.changed == 100  # one half of the lumped cluster got a new folder


def test_recluster_of_unchanged_vectors_keeps_every_name_and_changes_nothing() -> None:
    vectors = structureless(300, 16, seed=2)
    settings = ClusteringConfig(k_min=2, k_max=12)
    first = recluster.compute(snapshot(vectors, settings=settings))

    again = recluster.compute(
        snapshot(vectors, first.assignment, first.info.k, frozenset(first.centroids), settings)
    )

    assert again.assignment == first.assignment
    assert again.info.changed == 0


# set A through the library, as the daemon runs it


def _linked(base: Path) -> dict[str, str]:
    plan = ClusterTree(base / "clusters", base / "photos").read_plan()
    return {photo: cluster for cluster, links in plan.items() for photo in links.values()}


@pytest.mark.weights
@pytest.mark.datasets
@pytest.mark.slow
@pytest.mark.parametrize("offset", [0, 5])
def test_set_a_growing_by_a_tenth_keeps_folders_and_an_idle_recluster_writes_nothing(
    tmp_path: Path, set_a_replay: ReplayEmbedder, offset: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = copy_dataset("setA", tmp_path / "photos")
    later = sorted(labels)[offset::10]
    for photo in later:  # 10% of the photos arrive after the first recluster
        (tmp_path / "later" / photo).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp_path / "photos" / photo, tmp_path / "later" / photo)
    config_file = write_config(tmp_path)
    config_file.write_text(config_file.read_text().replace("k_max = 6", "k_max = 24"))

    with library.open_library(load_config(config_file), "run", lambda _: set_a_replay) as lib:
        library.scan(lib, show_bar=False)
        first = _linked(tmp_path)
        for photo in later:
            shutil.move(tmp_path / "later" / photo, tmp_path / "photos" / photo)
        library.sync(lib, show_bar=False)  # the new photos go to the nearest folder
        placed = _linked(tmp_path)
        assert library.recluster_now(lib, force=False) == []  # scheduled: something changed
        grown = _linked(tmp_path)
        _assert_status(config_file, grown, sum(placed[p] != grown[p] for p in grown), capsys)
        live = os.readlink(tmp_path / "clusters")
        assert library.recluster_now(lib, force=False) is None  # scheduled: nothing changed
        assert os.readlink(tmp_path / "clusters") == live  # no new generation
        assert library.recluster_now(lib, force=True) == []
        assert _linked(tmp_path) == grown  # forced on the same photos: every name kept
        _assert_status(config_file, grown, 0, capsys)

    assert set(grown) == set(labels)
    kept = sum(grown[photo] == name for photo, name in first.items()) / len(first)
    assert kept >= 0.95, f"{kept:.3f} of the first photos kept their folder"


def _assert_status(config_file: Path, linked: dict[str, str], changed: int,
                   capsys: pytest.CaptureFixture[str]) -> None:
    """`photocluster status` shows the last recluster's K, changed count and elbow curve."""
    capsys.readouterr()
    assert cli.main(["-c", str(config_file), "status", "--json"]) == 0
    last = json.loads(capsys.readouterr().out)["last_recluster"]
    assert (last["k"], last["changed"]) == (len(set(linked.values())), changed)
    assert list(last["elbow"]) == [str(k) for k in range(2, 25)]
    assert cli.main(["-c", str(config_file), "status"]) == 0
    text = capsys.readouterr().out
    assert f"K={last['k']}" in text and f"{changed} changed folder" in text
    assert f"elbow (k:inertia): 2:{last['elbow']['2']:.1f}, 3:" in text

"""A recluster's memory bounds (photocluster.recluster): the writer's snapshot holds no vectors,
the computing thread reads them from the snapshot's own read transaction, and a library larger
than FIT_LIMIT is fitted on a sample and assigned in full."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from photocluster import recluster
from photocluster.config import ClusteringConfig
from photocluster.store import NewFile, Store

DIM = 32
FP = "model"
SETTINGS = ClusteringConfig(k_min=2, k_max=8, sample_size=200)


def blobs(count: int, centres: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` unit vectors (count, DIM) around `centres` far-apart centres, and their centre."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, DIM)).astype(np.float32) * 4
    truth = rng.integers(0, centres, count)  # (count,) int64
    points = (middle[truth] + rng.standard_normal((count, DIM))).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


def filled_store(state: Path, vectors: np.ndarray) -> Store:
    store = Store(state, dim=DIM)
    store.put_files([NewFile(f"{i:05d}.jpg", 1, 1, f"h{i}", vector)
                     for i, vector in enumerate(vectors)], FP)
    return store


@pytest.mark.parametrize("fit_limit", [10_000, 150], ids=["all", "sampled"])
def test_a_catalog_snapshot_clusters_every_photo_whether_fitted_on_all_or_a_sample(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fit_limit: int) -> None:
    monkeypatch.setattr(recluster, "FIT_LIMIT", fit_limit)
    vectors, truth = blobs(600, 4)
    with filled_store(tmp_path, vectors) as store:
        snap = recluster.snapshot(store, FP, SETTINGS)
        assert isinstance(snap.vectors, recluster.CatalogVectors)  # the writer copied none
        result = recluster.compute(snap)
        recluster.commit(result, store)
        found = [store.file(f"{i:05d}.jpg").cluster for i in range(600)]  # type: ignore[union-attr]
    assert result.info.k == 4 and result.info.photos == 600
    assert adjusted_rand_score(truth, found) == 1.0


def test_a_sampled_fit_keeps_the_names_of_an_unchanged_library(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recluster, "FIT_LIMIT", 150)
    vectors, _ = blobs(600, 4, seed=1)
    with filled_store(tmp_path, vectors) as store:
        first = recluster.compute(recluster.snapshot(store, FP, SETTINGS))
        recluster.commit(first, store)
        again = recluster.compute(recluster.snapshot(store, FP, SETTINGS))
    assert again.assignment == first.assignment and again.info.changed == 0


def test_the_computing_thread_reads_the_catalog_as_the_snapshot_saw_it(tmp_path: Path) -> None:
    vectors, _ = blobs(80, 2, seed=2)
    with filled_store(tmp_path, vectors[:60]) as store:
        snap = recluster.snapshot(store, FP, SETTINGS)
        store.put_files([NewFile(f"late{i}.jpg", 1, 1, f"late{i}", vector)
                         for i, vector in enumerate(vectors[60:])], FP)  # arrive meanwhile
        store.remove(["00000.jpg"])
        assert store.forget_gone(before=float("inf")) == 1  # its vector row is gone too
        result = recluster.compute(snap)
    assert len(result.ids) == 60 and result.ids.tolist() == snap.ids.tolist()


def test_compute_closes_the_snapshots_read_transaction(tmp_path: Path) -> None:
    vectors, _ = blobs(40, 2, seed=3)
    with filled_store(tmp_path, vectors) as store:
        snap = recluster.snapshot(store, FP, SETTINGS)
        recluster.compute(snap)
        assert isinstance(snap.vectors, recluster.CatalogVectors)
        with pytest.raises(Exception, match="closed"):
            snap.vectors.take(np.arange(1))


@pytest.mark.parametrize("fit_limit", [10_000, 150], ids=["all", "sampled"])
def test_near_duplicates_are_grouped_whether_fitted_on_all_or_cluster_by_cluster(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fit_limit: int) -> None:
    monkeypatch.setattr(recluster, "FIT_LIMIT", fit_limit)
    rng = np.random.default_rng(3)
    middle = rng.standard_normal((4, DIM)).astype(np.float32) * 1.5  # wide blobs: members of
    points = middle[rng.integers(0, 4, 600)] + 2 * rng.standard_normal((600, DIM))  # one are no
    vectors = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)  # dups
    copies = vectors[:20] + 0.01 * rng.standard_normal((20, DIM)).astype(np.float32)
    vectors = np.vstack([vectors, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    seen: list[int] = []  # how many vectors each call of the pass was handed
    full_pass = recluster.duplicates.full_pass

    def counted(ids: np.ndarray, held: np.ndarray, *rest: object) -> dict[int, int]:
        seen.append(len(held))
        return full_pass(ids, held, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(recluster.duplicates, "full_pass", counted)
    with filled_store(tmp_path, vectors) as store:
        result = recluster.compute(recluster.snapshot(store, FP, SETTINGS))
        recluster.commit(result, store)
        groups = store.duplicate_groups()
        ids = {store.file(f"{i:05d}.jpg").content: i for i in range(620)}  # type: ignore[union-attr]
    pairs = sorted(sorted(ids[member.id] for member in members) for members in groups.values())
    assert pairs == [[i, 600 + i] for i in range(20)]  # each copy with its original, no more
    # one call over all 620, or one per cluster, none holding every vector
    assert seen == [620] if fit_limit > 620 else (len(seen) == 4 and max(seen) < 620)

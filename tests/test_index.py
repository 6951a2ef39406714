"""The vector index on disk (photocluster.store.index): searches against brute force, and the
copy-on-write rule that keeps a saved index right whatever happens after the save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photocluster.store import index as index_module
from photocluster.store.index import IDS, INDEX, STAMP, VectorIndex

DIM = 16


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)  # (count, DIM)
    return unit


@pytest.fixture(autouse=True, params=["kept-map", "map-per-chunk"])
def small_chunks(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Chunks of 8 rows, so a few dozen vectors span several chunks; every test runs with the
    file's map kept between searches (a small library) and with a map per chunk (a large one)."""
    monkeypatch.setattr(index_module, "CHUNK_ROWS", 8)
    if request.param == "map-per-chunk":
        monkeypatch.setattr(index_module, "KEEP_MAPPED_BYTES", 0)


def filled(folder: Path, ids: list[int], vectors: np.ndarray) -> VectorIndex:
    index = VectorIndex(folder, DIM)
    index.rebuild([], "test")
    index.add(np.asarray(ids, np.int64), vectors)
    return index


def brute_force(held: dict[int, np.ndarray], query: np.ndarray) -> list[tuple[int, float]]:
    return sorted(((content, float(vector @ query)) for content, vector in held.items()),
                  key=lambda pair: -pair[1])


def test_search_finds_what_brute_force_finds_across_chunks_and_skips_removed(
        tmp_path: Path) -> None:
    vectors = unit_vectors(40)
    index = filled(tmp_path, list(range(100, 140)), vectors)
    index.remove(np.asarray([100, 117, 131], np.int64))
    held = {100 + i: vectors[i] for i in range(40) if 100 + i not in (100, 117, 131)}
    queries = unit_vectors(3, seed=1)
    scores, ids = index.search(queries, 5)
    assert scores.shape == ids.shape == (3, 5)
    for row, query in enumerate(queries):
        expected = brute_force(held, query)[:5]
        assert ids[row].tolist() == [content for content, _ in expected]
        np.testing.assert_allclose(scores[row], [score for _, score in expected], atol=1e-3)


def test_search_with_fewer_vectors_than_k_pads_with_minus_one(tmp_path: Path) -> None:
    vectors = unit_vectors(2)
    scores, ids = filled(tmp_path, [7, 9], vectors).search(vectors[0], 4)
    assert ids.tolist() == [[7, 9, -1, -1]]
    assert np.isneginf(scores[0, 2:]).all()
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("chunk_rows", [8, 32_768])
def test_range_search_returns_every_vector_above_the_radius_best_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int) -> None:
    monkeypatch.setattr(index_module, "CHUNK_ROWS", chunk_rows)  # several chunks, or one
    vectors = unit_vectors(30)
    index = filled(tmp_path, list(range(30)), vectors)
    index.remove(np.asarray([4], np.int64))
    held = {i: vectors[i] for i in range(30) if i != 4}
    query = vectors[4]  # removed itself: it must not come back
    ids, scores = index.range_search(query, 0.2)
    expected = [(c, s) for c, s in brute_force(held, query) if s > 0.2]
    assert ids.tolist() == [content for content, _ in expected]
    np.testing.assert_allclose(scores, [score for _, score in expected], atol=1e-3)


def test_an_id_added_again_has_only_its_new_vector(tmp_path: Path) -> None:
    first, second = unit_vectors(2)
    index = filled(tmp_path, [5], first[None])
    index.add(np.asarray([5], np.int64), second[None])
    assert index.count == 1 and index.ids().tolist() == [5]
    np.testing.assert_allclose(index.reconstruct(np.asarray([5]))[0], second, atol=1e-3)
    with pytest.raises(KeyError):
        index.reconstruct(np.asarray([6]))


def test_a_saved_index_stays_right_whatever_changes_after_its_save(tmp_path: Path) -> None:
    vectors = unit_vectors(6)
    index = filled(tmp_path, [1, 2, 3], vectors[:3])
    index.remove(np.asarray([2], np.int64))
    index.save("catalog:1")
    index.add(np.asarray([4], np.int64), vectors[3:4])  # may take 2's slot: the save has it free
    index.remove(np.asarray([1], np.int64))  # its row stays: the save refers to it
    index.add(np.asarray([5, 6], np.int64), vectors[4:6])
    index.close()  # a crash: no save after the changes

    again = VectorIndex(tmp_path, DIM)
    assert again.load("catalog:1", expected=2) is None
    assert sorted(again.ids().tolist()) == [1, 3]
    np.testing.assert_allclose(again.reconstruct(np.asarray([1, 3])), vectors[[0, 2]], atol=1e-3)


def test_a_load_refuses_another_stamp_count_or_damaged_files(tmp_path: Path) -> None:
    index = filled(tmp_path, [1, 2], unit_vectors(2))
    index.save("catalog:1")
    index.close()
    assert "stamp" in str(VectorIndex(tmp_path, DIM).load("catalog:2", expected=2))
    assert VectorIndex(tmp_path, DIM).load("catalog:1", expected=3) is not None
    (tmp_path / INDEX).write_bytes(b"short")
    assert VectorIndex(tmp_path, DIM).load("catalog:1", expected=2) is not None
    (tmp_path / IDS).unlink()
    assert VectorIndex(tmp_path, DIM).load("catalog:1", expected=2) == "no saved index"


def test_a_rollback_restores_ids_slots_and_search(tmp_path: Path) -> None:
    vectors = unit_vectors(5)
    index = filled(tmp_path, [1, 2, 3], vectors[:3])
    index.save("catalog:1")
    before = index.search(vectors[:2], 3)
    index.begin()
    index.remove(np.asarray([1], np.int64))
    index.add(np.asarray([2, 4, 5], np.int64), vectors[2:5])
    index.rollback()
    assert sorted(index.ids().tolist()) == [1, 2, 3] and index.count == 3
    after = index.search(vectors[:2], 3)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(index.reconstruct(np.asarray([2]))[0], vectors[1], atol=1e-3)


def test_a_save_with_most_slots_free_compacts_the_file(tmp_path: Path) -> None:
    vectors = unit_vectors(40)
    index = filled(tmp_path, list(range(40)), vectors)
    index.save("catalog:1")
    index.remove(np.arange(0, 35, dtype=np.int64))
    index.save("catalog:2")
    assert (tmp_path / INDEX).stat().st_size == 5 * DIM * 4  # float32 rows
    index.close()
    again = VectorIndex(tmp_path, DIM)
    assert again.load("catalog:2", expected=5) is None
    np.testing.assert_allclose(again.reconstruct(np.arange(35, 40)), vectors[35:], atol=1e-3)
    assert (tmp_path / STAMP).read_text().split()[0] == "catalog:2"


def test_rows_added_replaced_or_compacted_after_a_search_are_what_the_next_search_sees(
        tmp_path: Path) -> None:
    vectors = unit_vectors(60)
    index = filled(tmp_path, list(range(20)), vectors[:20])
    assert index.search(vectors[0], 1)[1][0, 0] == 0  # maps the file as it is now
    index.add(np.arange(20, 40, dtype=np.int64), vectors[20:40])  # appended past that map
    index.add(np.asarray([5], np.int64), vectors[40:41])  # id 5 gets another vector
    assert index.search(vectors[35], 1)[1][0, 0] == 35
    assert index.search(vectors[40], 1)[1][0, 0] == 5
    index.save("catalog:1")
    index.remove(np.arange(0, 30, dtype=np.int64))
    index.save("catalog:2")  # most slots free: the file is rewritten
    scores, ids = index.search(vectors[35], 3)
    assert ids[0, 0] == 35 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert set(index.search(vectors[:40], 10)[1].ravel().tolist()) <= set(range(30, 40)) | {-1}

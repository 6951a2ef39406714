"""Tests of the SQLite catalog + FAISS index cache (photocluster.store)."""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from photocluster.errors import LockedError, StateError
from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.store import NewVector, Store

DIM = 8
FP = "vgg16-test"
UNDECODABLE = os.fsdecode(b"2024/caf\xe9 \xff.jpg")  # not UTF-8: surrogate escapes


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)  # (count, DIM) float32
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def new(path: str, vector: np.ndarray, content_hash: str | None = None) -> NewVector:
    return NewVector(path, 100, 1_700_000_000_000_000_000, content_hash or f"hash-{path}", vector)


def index_contents(store: Store) -> dict[int, np.ndarray]:
    """White box: what the in-memory FAISS index holds, id -> vector."""
    index = store._index
    assert index is not None
    ids = [int(index.id_map.at(i)) for i in range(index.ntotal)]
    return {i: index.reconstruct(i) for i in ids}


def catalog_vectors(state_dir: Path) -> dict[int, np.ndarray]:
    with Store.open_readonly(state_dir) as reader:
        ids, vectors = reader.vectors(FP)
    return dict(zip(ids.tolist(), vectors, strict=True))


def assert_index_matches_catalog(store: Store, state_dir: Path) -> None:
    held, truth = index_contents(store), catalog_vectors(state_dir)
    assert held.keys() == truth.keys()
    for photo_id, vector in truth.items():
        np.testing.assert_array_equal(held[photo_id], vector)


def rebuilds(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "rebuilt the vector index" in r.getMessage()]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path) -> Iterator[Store]:
    with Store(state_dir, dim=DIM) as opened:
        yield opened


def info(k: int = 2, at: float = 1000.0) -> ReclusterInfo:
    return ReclusterInfo(at, 3, 1, ElbowCurve((1, 2, 3), (9.5, 4.25, 3.0), k, True))


# ---- reads and writes


def test_put_vectors_round_trips_through_photo_photos_and_vectors(store: Store) -> None:
    vectors = unit_vectors(3)
    ids = store.put_vectors([new(f"a/{i}.jpg", vectors[i]) for i in range(3)], FP)
    record = store.photo("a/1.jpg")
    assert record is not None
    assert (record.id, record.path, record.size, record.content_hash) == (
        ids[1], "a/1.jpg", 100, "hash-a/1.jpg")
    assert (record.fingerprint, record.cluster, record.error) == (FP, None, None)
    assert [r.path for r in store.photos()] == ["a/0.jpg", "a/1.jpg", "a/2.jpg"]
    store.put_failure("bad.jpg", 1, 1, "corrupt")
    assert store.count() == 4
    got_ids, got_vectors = store.vectors(FP)
    assert got_ids.tolist() == sorted(ids) and got_ids.dtype == np.int64
    np.testing.assert_array_equal(got_vectors, vectors)
    assert got_vectors.dtype == np.float32
    assert store.photo("missing.jpg") is None


def test_put_vectors_on_existing_path_replaces_the_vector_and_keeps_the_id(store: Store) -> None:
    first, second = unit_vectors(2)
    [photo_id] = store.put_vectors([new("a.jpg", first)], FP)
    assert store.put_vectors([new("a.jpg", second, "other")], FP) == [photo_id]
    ids, vectors = store.vectors(FP)
    assert ids.tolist() == [photo_id]
    np.testing.assert_array_equal(vectors[0], second)
    assert len(index_contents(store)) == 1


def test_put_vectors_keeps_the_cluster_only_when_the_vector_is_unchanged(store: Store) -> None:
    first, second = unit_vectors(2)
    [photo_id] = store.put_vectors([new("a.jpg", first)], FP)
    store.assign({photo_id: "cluster-001"})
    store.put_vectors([new("a.jpg", first)], FP)  # touched, same content
    assert store.photo("a.jpg").cluster == "cluster-001"  # type: ignore[union-attr]
    store.put_vectors([new("a.jpg", second)], FP)
    assert store.photo("a.jpg").cluster is None  # type: ignore[union-attr]


def test_put_vectors_rejects_a_vector_of_the_wrong_shape(store: Store) -> None:
    with pytest.raises(ValueError, match="vector"):
        store.put_vectors([new("a.jpg", np.zeros(DIM + 1, np.float32))], FP)
    assert store.photos() == []


def test_undecodable_path_round_trips(store: Store) -> None:
    [photo_id] = store.put_vectors([new(UNDECODABLE, unit_vectors(1)[0], "h1")], FP)
    assert store.photo(UNDECODABLE).id == photo_id  # type: ignore[union-attr]
    assert [r.path for r in store.photos()] == [UNDECODABLE]
    moved = os.fsdecode(b"2025/\xfe.jpg")
    store.move(UNDECODABLE, moved)
    assert [r.path for r in store.remove([moved])] == [moved]


def test_put_failure_then_put_vectors_clears_the_error(store: Store) -> None:
    store.put_failure("bad.jpg", 5, 7, "corrupt JPEG")
    record = store.photo("bad.jpg")
    assert record is not None
    assert (record.size, record.mtime_ns, record.error, record.fingerprint) == (
        5, 7, "corrupt JPEG", None)
    assert store.put_vectors([new("bad.jpg", unit_vectors(1)[0])], FP) == [record.id]
    fixed = store.photo("bad.jpg")
    assert fixed is not None and fixed.error is None and fixed.fingerprint == FP


def test_put_failure_drops_an_existing_vector_from_the_index(store: Store) -> None:
    vectors = unit_vectors(2)
    ids = store.put_vectors([new("a.jpg", vectors[0]), new("b.jpg", vectors[1])], FP)
    store.assign({ids[0]: "cluster-001"})
    store.put_failure("a.jpg", 1, 2, "truncated")
    record = store.photo("a.jpg")
    assert record is not None
    assert (record.fingerprint, record.cluster, record.content_hash) == (None, None, None)
    assert store.vectors(FP)[0].tolist() == [ids[1]]
    assert list(index_contents(store)) == [ids[1]]
    assert store.vector_for_hash("hash-a.jpg", FP) is None


def test_vector_for_hash_reuses_a_vector_of_the_same_content_and_model(store: Store) -> None:
    vector = unit_vectors(1)[0]
    store.put_vectors([new("a.jpg", vector, "h1")], FP)
    found = store.vector_for_hash("h1", FP)
    assert found is not None and found.shape == (DIM,) and found.dtype == np.float32
    np.testing.assert_array_equal(found, vector)
    assert store.vector_for_hash("h1", "other-model") is None
    assert store.vector_for_hash("h2", FP) is None


def test_vectors_returns_only_rows_of_that_fingerprint_in_id_order(store: Store) -> None:
    vectors = unit_vectors(3)
    old = store.put_vectors([new("old.jpg", vectors[0])], "old-model")
    ids = store.put_vectors([new("b.jpg", vectors[1]), new("a.jpg", vectors[2])], FP)
    got_ids, got = store.vectors(FP)
    assert got_ids.tolist() == sorted(ids)
    np.testing.assert_array_equal(got, vectors[1:])
    assert store.vectors("old-model")[0].tolist() == old
    empty_ids, empty = store.vectors("nothing")
    assert empty_ids.shape == (0,) and empty.shape == (0, DIM)


def test_move_keeps_id_vector_and_cluster(store: Store) -> None:
    vector = unit_vectors(1)[0]
    [photo_id] = store.put_vectors([new("a/x.jpg", vector)], FP)
    store.assign({photo_id: "cluster-001"})
    store.move("a/x.jpg", "b/y.jpg")
    assert store.photo("a/x.jpg") is None
    moved = store.photo("b/y.jpg")
    assert moved is not None and (moved.id, moved.cluster) == (photo_id, "cluster-001")
    np.testing.assert_array_equal(store.vectors(FP)[1][0], vector)


def test_move_onto_an_existing_path_replaces_that_row(store: Store) -> None:
    vectors = unit_vectors(2)
    ids = store.put_vectors([new("a.jpg", vectors[0]), new("b.jpg", vectors[1])], FP)
    store.move("a.jpg", "b.jpg")
    assert [(r.id, r.path) for r in store.photos()] == [(ids[0], "b.jpg")]
    assert list(index_contents(store)) == [ids[0]]


def test_move_of_an_unknown_path_raises_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        store.move("nowhere.jpg", "b.jpg")


def test_remove_returns_the_removed_rows_and_ignores_unknown_paths(store: Store) -> None:
    vectors = unit_vectors(2)
    ids = store.put_vectors([new("a.jpg", vectors[0]), new("b.jpg", vectors[1])], FP)
    store.put_failure("bad.jpg", 1, 1, "empty file")
    removed = store.remove(["a.jpg", "bad.jpg", "unknown.jpg", "a.jpg"])
    assert [(r.path, r.error) for r in removed] == [("a.jpg", None), ("bad.jpg", "empty file")]
    assert removed[0].id == ids[0]
    assert [r.path for r in store.photos()] == ["b.jpg"]
    assert list(index_contents(store)) == [ids[1]]


def test_unclustered_lists_ids_with_a_vector_and_no_cluster(store: Store) -> None:
    vectors = unit_vectors(3)
    ids = store.put_vectors([new(f"{i}.jpg", vectors[i]) for i in range(3)], FP)
    store.put_failure("bad.jpg", 1, 1, "bad")
    store.assign({ids[1]: "cluster-001"})
    assert store.unclustered(FP) == [ids[0], ids[2]]
    assert store.unclustered("other") == []


# ---- reclusters


def test_commit_recluster_sets_clusters_and_centroids_and_retires_old_names(store: Store) -> None:
    vectors = unit_vectors(5)
    ids = store.put_vectors([new(f"{i}.jpg", vectors[i]) for i in range(3)], FP)
    first = {"cluster-001": vectors[3], "cluster-002": vectors[4]}
    store.commit_recluster({ids[0]: "cluster-001", ids[1]: "cluster-001", ids[2]: "cluster-002"},
                           first, info())
    names, centroids = store.centroids()
    assert names == ["cluster-001", "cluster-002"]
    np.testing.assert_array_equal(centroids, vectors[3:5])
    store.commit_recluster({photo_id: "cluster-003" for photo_id in ids},
                           {"cluster-003": vectors[0]}, info(k=1))
    assert store.centroids()[0] == ["cluster-003"]
    assert {r.cluster for r in store.photos()} == {"cluster-003"}
    assert store.used_names() == {"cluster-001", "cluster-002", "cluster-003"}


def test_commit_recluster_unclusters_photos_missing_from_the_assignment(store: Store) -> None:
    vectors = unit_vectors(2)
    ids = store.put_vectors([new("a.jpg", vectors[0]), new("b.jpg", vectors[1])], FP)
    store.commit_recluster({photo_id: "cluster-old" for photo_id in ids},
                           {"cluster-old": vectors[0]}, info(k=1))
    store.commit_recluster({ids[0]: "cluster-001"}, {"cluster-001": vectors[0]}, info(k=1))
    assert store.unclustered(FP) == [ids[1]]
    assert "cluster-old" in store.used_names()


def test_commit_recluster_rejects_a_name_without_a_centroid(store: Store) -> None:
    [photo_id] = store.put_vectors([new("a.jpg", unit_vectors(1)[0])], FP)
    with pytest.raises(ValueError, match="cluster-009"):
        store.commit_recluster({photo_id: "cluster-009"}, {}, info())
    assert store.last_recluster() is None


def test_last_recluster_returns_the_latest_info(store: Store) -> None:
    assert store.last_recluster() is None
    store.commit_recluster({}, {}, info(k=2, at=10.0))
    store.commit_recluster({}, {}, info(k=3, at=20.0))
    assert store.last_recluster() == info(k=3, at=20.0)


def test_photos_since_recluster_counts_ok_vectors_the_recluster_did_not_see(
        store: Store) -> None:
    vectors = unit_vectors(4)
    ids = store.put_vectors([new(f"{i}.jpg", vectors[i]) for i in range(2)], FP)
    assert store.photos_since_recluster() == 2
    store.commit_recluster({photo_id: "cluster-001" for photo_id in ids},
                           {"cluster-001": vectors[0]}, info(k=1))
    assert store.photos_since_recluster() == 0
    store.put_vectors([new("new.jpg", vectors[2])], FP)
    store.put_vectors([new("0.jpg", vectors[3])], FP)  # changed content
    store.put_failure("bad.jpg", 1, 1, "bad")
    store.move("1.jpg", "renamed.jpg")
    assert store.photos_since_recluster() == 2


def test_meta_round_trips_and_the_store_keys_are_reserved(store: Store) -> None:
    assert store.meta("fingerprint") is None
    store.set_meta("fingerprint", FP)
    assert store.meta("fingerprint") == FP
    with pytest.raises(ValueError, match="reserved"):
        store.set_meta("store.changes", "0")


# ---- the index cache


def test_index_is_loaded_without_rebuild_when_its_stamp_matches(
        state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    vectors = unit_vectors(3)
    with Store(state_dir, dim=DIM) as store:
        store.put_vectors([new(f"{i}.jpg", vectors[i]) for i in range(3)], FP)
    caplog.set_level(logging.DEBUG, logger="photocluster.store")
    caplog.clear()  # the first open's records too, if the logger was left at INFO
    with Store(state_dir, dim=DIM) as store:
        assert rebuilds(caplog) == []
        assert any("loaded the vector index" in r.getMessage() for r in caplog.records)
        assert_index_matches_catalog(store, state_dir)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_index_is_rebuilt_after_a_crash_without_close(
        state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    vectors = unit_vectors(4)
    with Store(state_dir, dim=DIM) as store:
        store.put_vectors([new(f"{i}.jpg", vectors[i]) for i in range(3)], FP)
    crashed = Store(state_dir, dim=DIM)
    crashed.put_vectors([new("3.jpg", vectors[3])], FP)
    crashed.remove(["0.jpg"])
    del crashed  # no close(): the index on disk is older than the catalog
    gc.collect()
    caplog.set_level(logging.INFO, logger="photocluster.store")
    caplog.clear()  # the first open's records too, if the logger was left at INFO
    with Store(state_dir, dim=DIM) as store:
        assert len(rebuilds(caplog)) == 1 and "stamp" in rebuilds(caplog)[0]
        assert len(index_contents(store)) == 3
        assert_index_matches_catalog(store, state_dir)


def test_index_is_rebuilt_after_kill_9_between_catalog_write_and_index_save(
        state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from pathlib import Path
        from photocluster.store import NewVector, Store
        store = Store(Path({str(state_dir)!r}), dim={DIM})
        vectors = np.eye({DIM}, dtype=np.float32)
        store.put_vectors([NewVector("a.jpg", 1, 1, "ha", vectors[0])], {FP!r})
        store.save_index()
        store.put_vectors([NewVector("b.jpg", 1, 1, "hb", vectors[1])], {FP!r})
        store.put_vectors([NewVector("a.jpg", 1, 2, "hc", vectors[2])], {FP!r})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert done.returncode == -9
    caplog.set_level(logging.INFO, logger="photocluster.store")
    caplog.clear()  # the first open's records too, if the logger was left at INFO
    with Store(state_dir, dim=DIM) as store:
        assert len(rebuilds(caplog)) == 1
        held, replaced = index_contents(store), store.photo("a.jpg")
        assert len(held) == 2 and replaced is not None
        np.testing.assert_array_equal(held[replaced.id], np.eye(DIM)[2])
        assert_index_matches_catalog(store, state_dir)


def corrupt_index(state_dir: Path) -> None:
    data = bytearray((state_dir / "index.faiss").read_bytes())
    data[data.index(unit_vectors(3)[1].tobytes()) + 2] ^= 0x10  # faiss alone would not notice
    (state_dir / "index.faiss").write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    corrupt_index,
    lambda state_dir: (state_dir / "index.faiss").write_bytes(b"garbage"),
    lambda state_dir: (state_dir / "index.faiss").unlink(),
    lambda state_dir: (state_dir / "index.stamp").unlink(),
    lambda state_dir: (state_dir / "index.stamp").write_text("nonsense\n"),
], ids=["flipped-bit", "garbage", "index-missing", "stamp-missing", "stamp-garbage"])
def test_index_is_rebuilt_when_its_file_is_damaged_or_missing(
        state_dir: Path, caplog: pytest.LogCaptureFixture, damage: object) -> None:
    vectors = unit_vectors(3)
    with Store(state_dir, dim=DIM) as store:
        store.put_vectors([new(f"{i}.jpg", vectors[i]) for i in range(3)], FP)
    damage(state_dir)  # type: ignore[operator]
    caplog.set_level(logging.INFO, logger="photocluster.store")
    caplog.clear()  # the first open's records too, if the logger was left at INFO
    with Store(state_dir, dim=DIM) as store:
        assert len(rebuilds(caplog)) == 1
        assert_index_matches_catalog(store, state_dir)


def test_a_write_failing_after_the_index_changed_rolls_back_and_rebuilds_the_index(
        store: Store, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = unit_vectors(2)
    store.put_vectors([new("a.jpg", first)], FP)
    add_to_index = store._add_to_index

    def add_then_fail(ids: list[int], blobs: list[bytes]) -> None:
        add_to_index(ids, blobs)
        raise OSError("disk full")

    monkeypatch.setattr(store, "_add_to_index", add_then_fail)
    with pytest.raises(OSError, match="disk full"):
        store.put_vectors([new("a.jpg", second), new("b.jpg", second)], FP)
    assert [r.path for r in store.photos()] == ["a.jpg"]
    np.testing.assert_array_equal(store.vectors(FP)[1], [first])
    assert_index_matches_catalog(store, state_dir)


def test_save_index_writes_nothing_when_nothing_changed(store: Store, state_dir: Path) -> None:
    store.put_vectors([new("a.jpg", unit_vectors(1)[0])], FP)
    store.save_index()
    saved = (state_dir / "index.faiss").stat().st_ino, (state_dir / "index.stamp").stat().st_ino
    store.save_index()
    assert saved == ((state_dir / "index.faiss").stat().st_ino,
                     (state_dir / "index.stamp").stat().st_ino)
    assert [p.name for p in state_dir.iterdir() if p.name.endswith(".tmp")] == []


# ---- catalog layout and schema migration


def test_vectors_are_packed_so_the_catalog_is_not_twice_their_size(state_dir: Path) -> None:
    count, dim = 700, 512  # 512-d: a 2 KiB vector filled a 4 KiB page alone in schema 1
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)  # (count, dim) float32
    with Store(state_dir, dim=dim) as store:
        store.put_vectors([new(f"{i:04d}.jpg", vectors[i]) for i in range(count)], FP)
    assert (state_dir / "catalog.sqlite").stat().st_size < 1.35 * vectors.nbytes


SCHEMA_1 = """
CREATE TABLE photos (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, content_hash TEXT,
    vector BLOB, fingerprint TEXT, cluster TEXT, error TEXT, added_at REAL NOT NULL,
    in_recluster INTEGER NOT NULL DEFAULT 0);
CREATE INDEX photos_content_hash ON photos (content_hash);
CREATE INDEX photos_ok ON photos (fingerprint, cluster, in_recluster) WHERE vector IS NOT NULL;
CREATE TABLE clusters (name TEXT PRIMARY KEY, centroid BLOB NOT NULL, active INTEGER NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE reclusters (id INTEGER PRIMARY KEY, at REAL NOT NULL, k INTEGER NOT NULL,
    photos INTEGER NOT NULL, changed INTEGER NOT NULL, ks TEXT NOT NULL,
    inertias TEXT NOT NULL, knee_found INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('store.catalog_id', 'c1'), ('store.changes', '7'), ('store.dim', '8');
PRAGMA user_version = 1;
"""


def write_schema_1_catalog(state_dir: Path, vectors: np.ndarray) -> None:
    """A catalog as schema 1 wrote it: two clustered photos with vectors, one failure."""
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / "catalog.sqlite")
    conn.executescript(SCHEMA_1)
    conn.executemany(
        "INSERT INTO photos (id, path, size, mtime_ns, content_hash, vector, fingerprint,"
        " cluster, error, added_at, in_recluster) VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
            (3, b"a.jpg", 10, 11, "ha", vectors[0].tobytes(), FP, "cluster-001", None, 1.0, 1),
            (5, os.fsencode(UNDECODABLE), 20, 21, "hb", vectors[1].tobytes(), FP, None, None,
             2.0, 0),
            (9, b"bad.jpg", 30, 31, None, None, None, None, "truncated", 3.0, 0)])
    conn.execute("INSERT INTO clusters VALUES ('cluster-001', ?, 1, 1.0)", (vectors[0].tobytes(),))
    conn.commit()
    conn.close()


def test_a_schema_1_catalog_is_migrated_keeping_every_row(
        state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    vectors = unit_vectors(3)
    write_schema_1_catalog(state_dir, vectors)
    caplog.set_level(logging.INFO, logger="photocluster.store")
    with Store(state_dir, dim=DIM) as store:
        assert any("migrated from schema 1" in r.getMessage() for r in caplog.records)
        assert store.meta("store.changes") == "7"  # so an index saved by schema 1 stays valid
        assert [(r.id, r.path, r.size, r.fingerprint, r.cluster, r.error)
                for r in store.photos()] == [(3, "a.jpg", 10, FP, "cluster-001", None),
                                             (5, UNDECODABLE, 20, FP, None, None),
                                             (9, "bad.jpg", 30, None, None, "truncated")]
        ids, got = store.vectors(FP)
        assert ids.tolist() == [3, 5]
        np.testing.assert_array_equal(got, vectors[:2])
        assert store.unclustered(FP) == [5]
        assert store.centroids()[0] == ["cluster-001"]
        assert_index_matches_catalog(store, state_dir)
        store.put_vectors([new("a.jpg", vectors[2])], FP)  # the migrated catalog takes writes
        assert store.photo("a.jpg").cluster is None  # type: ignore[union-attr]
    with Store(state_dir, dim=DIM) as store:
        assert store.vectors(FP)[0].tolist() == [3, 5]


# ---- files, locking, read-only access


def test_state_files_are_private_even_with_a_permissive_umask(state_dir: Path) -> None:
    previous = os.umask(0)
    try:
        with Store(state_dir, dim=DIM) as store:
            store.put_vectors([new("a.jpg", unit_vectors(1)[0])], FP)
            while_open = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state_dir.iterdir()}
    finally:
        os.umask(previous)
    after_close = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state_dir.iterdir()}
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert {"catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"} <= while_open.keys()
    assert {"index.faiss", "index.stamp"} <= after_close.keys()
    assert set(while_open.values()) == set(after_close.values()) == {0o600}


def test_a_second_writer_is_locked_out(store: Store, state_dir: Path) -> None:
    with pytest.raises(LockedError):
        Store(state_dir, dim=DIM)


def test_opening_with_another_dim_raises_state_error(state_dir: Path) -> None:
    Store(state_dir, dim=DIM).close()
    with pytest.raises(StateError, match="8-d"):
        Store(state_dir, dim=DIM * 2)


def test_an_unusable_state_dir_raises_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StateError, match="state directory"):
        Store(tmp_path / "file" / "state", dim=DIM)


def test_open_readonly_sees_a_live_writer_and_cannot_write(store: Store, state_dir: Path) -> None:
    vectors = unit_vectors(2)
    ids = store.put_vectors([new("a.jpg", vectors[0]), new("b.jpg", vectors[1])], FP)
    store.commit_recluster({ids[0]: "cluster-001"}, {"cluster-001": vectors[0]}, info(k=1))
    with Store.open_readonly(state_dir) as reader:
        assert [r.path for r in reader.photos()] == ["a.jpg", "b.jpg"]
        got_ids, got = reader.vectors(FP)
        assert got_ids.tolist() == ids
        np.testing.assert_array_equal(got, vectors)
        assert reader.centroids()[0] == ["cluster-001"]
        assert reader.last_recluster() == info(k=1)
        store.put_vectors([new("c.jpg", vectors[0])], FP)
        assert reader.photo("c.jpg") is not None
        with pytest.raises(StateError):
            reader.set_meta("x", "y")
        with pytest.raises(StateError):
            reader.remove(["a.jpg"])
    assert store.photo("a.jpg") is not None


def test_open_readonly_without_a_catalog_raises_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError):
        Store.open_readonly(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()

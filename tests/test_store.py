"""The catalog (files and contents in SQLite) and its FAISS index cache (photocluster.store)."""

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
from photocluster.records import ElbowCurve, ReclusterInfo, Taken
from photocluster.store import INDEX, NewFile, Relink, Store

DIM = 8
FP = "vgg16-test"
UNDECODABLE = os.fsdecode(b"2024/caf\xe9 \xff.jpg")  # not UTF-8: surrogate escapes


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)  # (count, DIM) float32
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def new(path: str, vector: np.ndarray | None, content_hash: str | None = None,
        mtime_ns: int = 1_700_000_000_000_000_000) -> NewFile:
    return NewFile(path, 100, mtime_ns, content_hash or f"hash-{path}", vector)


def put(store: Store, *items: NewFile) -> list[int]:
    """Store items and return their content ids."""
    store.put_files(list(items), FP)
    records = [store.file(item.path) for item in items]
    return [record.content for record in records if record is not None and record.content]


def index_contents(store: Store) -> dict[int, np.ndarray]:
    """What the vector index holds, id -> vector (float16 precision)."""
    ids = store.index_ids()
    return dict(zip(ids.tolist(), store._index.reconstruct(ids), strict=True))


def catalog_vectors(state_dir: Path) -> dict[int, np.ndarray]:
    with Store.open_readonly(state_dir) as reader:
        ids, vectors = reader.vectors(FP)
    return dict(zip(ids.tolist(), vectors, strict=True))


def assert_index_matches_catalog(store: Store, state_dir: Path) -> None:
    held, truth = index_contents(store), catalog_vectors(state_dir)
    assert held.keys() == truth.keys()
    for content, vector in truth.items():
        np.testing.assert_allclose(held[content], vector, atol=1e-3)  # float16 rows


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


def commit(store: Store, assignment: dict[int, str], centroids: dict[str, np.ndarray]) -> None:
    """A recluster commit of the catalog as it is now."""
    members = store.members(FP)
    versions = dict(zip(members.ids.tolist(), members.versions.tolist(), strict=True))
    store.commit_recluster([(c, versions[c], name) for c, name in assignment.items()],
                           centroids, info(k=len(centroids)), members.changes)


# ---- files and contents


def test_put_files_round_trips_through_file_files_and_vectors(store: Store) -> None:
    vectors = unit_vectors(3)
    ids = put(store, *(new(f"a/{i}.jpg", vectors[i]) for i in range(3)))
    record = store.file("a/1.jpg")
    assert record is not None
    assert (record.content, record.path, record.size, record.content_hash) == (
        ids[1], "a/1.jpg", 100, "hash-a/1.jpg")
    assert (record.fingerprint, record.cluster, record.error, record.canonical) == (
        FP, None, None, True)
    assert [r.path for r in store.files()] == ["a/0.jpg", "a/1.jpg", "a/2.jpg"]
    store.put_failure("bad.jpg", 1, 1, "corrupt")
    assert store.count() == 4
    got_ids, got_vectors = store.vectors(FP)
    assert got_ids.tolist() == sorted(ids) and got_ids.dtype == np.int64
    np.testing.assert_array_equal(got_vectors, vectors)
    assert got_vectors.dtype == np.float32
    assert store.file("missing.jpg") is None
    assert [r.path for r in store.files("a/")] == ["a/0.jpg", "a/1.jpg", "a/2.jpg"]
    assert store.files("b/") == []


def test_new_contents_are_placeable_with_their_canonical_path_and_vector(store: Store) -> None:
    vector = unit_vectors(1)[0]
    written = store.put_files([new("2023/x.jpg", vector, "h"), new("album/x.jpg", None, "h")], FP)
    [placeable] = written.placeable
    assert placeable.path == "2023/x.jpg"  # a date folder beats an album folder
    np.testing.assert_array_equal(placeable.vector, vector)
    assert store.put_files([new("album2/x.jpg", None, "h")], FP).placeable == []


def test_identical_copies_are_one_content_with_one_vector(store: Store) -> None:
    vector = unit_vectors(1)[0]
    [content] = put(store, new("album/x.jpg", vector, "same"))
    put(store, new("Photos from 2021/x.jpg", None, "same"), new("x (1).jpg", None, "same"))
    assert {r.content for r in store.files()} == {content}
    assert store.vectors(FP)[0].tolist() == [content]
    assert store.content_counts()["with_copies"] == 1
    assert store.content_counts()["extra_files"] == 2
    canonical = [r.path for r in store.files() if r.canonical]
    assert canonical == ["album/x.jpg"]  # the first copy stays canonical: links do not jump


def test_deleting_one_copy_keeps_the_content_and_moves_its_link(store: Store) -> None:
    vector = unit_vectors(1)[0]
    content, _ = put(store, new("a/x.jpg", vector, "same"), new("bb/x.jpg", None, "same"))
    store.assign({content: "cluster-001"})
    written = store.remove(["a/x.jpg"])
    assert written.relinks == [Relink(content, "cluster-001", "a/x.jpg", "bb/x.jpg")]
    assert store.file("bb/x.jpg").canonical  # type: ignore[union-attr]
    assert store.vectors(FP)[0].tolist() == [content]
    assert store.remove(["not-there.jpg"]).relinks == []


def test_deleting_a_non_canonical_copy_changes_no_link(store: Store) -> None:
    put(store, new("a/x.jpg", unit_vectors(1)[0], "same"), new("bb/x.jpg", None, "same"))
    assert store.remove(["bb/x.jpg"]).relinks == []
    assert store.file("a/x.jpg").canonical  # type: ignore[union-attr]


def test_the_last_copy_gone_removes_the_content_but_keeps_its_vector_for_a_while(
        store: Store) -> None:
    vector = unit_vectors(1)[0]
    [content] = put(store, new("x.jpg", vector, "same"))
    store.assign({content: "cluster-001"})
    written = store.remove(["x.jpg"])
    assert written.relinks == [Relink(content, "cluster-001", "x.jpg", None)]
    assert store.vectors(FP)[0].tolist() == []
    assert store.index_ids().tolist() == []
    assert store.has_vector("same", FP)  # a re-download reuses it
    back = store.put_files([new("again/x.jpg", None, "same")], FP)
    assert [row.id for row in back.placeable] == [content]
    np.testing.assert_array_equal(back.placeable[0].vector, vector)
    assert store.file("again/x.jpg").cluster is None  # type: ignore[union-attr]
    assert store.index_ids().tolist() == [content]


def test_forgotten_contents_are_embedded_again(store: Store) -> None:
    put(store, new("x.jpg", unit_vectors(1)[0], "same"))
    store.remove(["x.jpg"])
    assert store.forget_gone(before=float("inf")) == 1
    assert not store.has_vector("same", FP)
    assert store.put_files([new("x.jpg", None, "same")], FP).skipped == ["x.jpg"]


def test_an_edited_file_points_at_a_new_content_and_its_old_one_goes(store: Store) -> None:
    first, second = unit_vectors(2)
    [old] = put(store, new("a.jpg", first, "v1"))
    store.assign({old: "cluster-001"})
    written = store.put_files([new("a.jpg", second, "v2", mtime_ns=5)], FP)
    [fresh] = written.placeable
    assert fresh.id != old and fresh.path == "a.jpg"
    assert written.relinks == [Relink(old, "cluster-001", "a.jpg", None)]
    assert store.file("a.jpg").cluster is None  # type: ignore[union-attr]


def test_a_touched_file_keeps_its_content_and_cluster(store: Store) -> None:
    [content] = put(store, new("a.jpg", unit_vectors(1)[0], "same"))
    store.assign({content: "cluster-001"})
    written = store.put_files([new("a.jpg", None, "same", mtime_ns=9)], FP)
    assert (written.placeable, written.relinks) == ([], [])
    assert store.file("a.jpg").cluster == "cluster-001"  # type: ignore[union-attr]


def test_ids_are_never_reused(store: Store) -> None:
    first, second = unit_vectors(2)
    [old] = put(store, new("a.jpg", first))
    store.remove(["a.jpg"])
    store.forget_gone(before=float("inf"))
    [fresh] = put(store, new("b.jpg", second))
    assert fresh > old


def test_put_files_rejects_a_vector_of_the_wrong_shape(store: Store) -> None:
    with pytest.raises(ValueError, match="vector"):
        store.put_files([new("a.jpg", np.zeros(DIM + 1, np.float32))], FP)
    assert store.files() == []


def test_undecodable_path_round_trips(store: Store) -> None:
    [content] = put(store, new(UNDECODABLE, unit_vectors(1)[0], "h1"))
    assert store.file(UNDECODABLE).content == content  # type: ignore[union-attr]
    assert [r.path for r in store.files()] == [UNDECODABLE]
    moved = os.fsdecode(b"2025/\xfe.jpg")
    store.move(UNDECODABLE, moved)
    assert [r.path for r in store.files()] == [moved]
    assert store.paths_of([content]) == {content: moved}


def test_put_failure_then_put_files_clears_the_error(store: Store) -> None:
    store.put_failure("a.jpg", 1, 1, "truncated")
    assert store.file("a.jpg").error == "truncated"  # type: ignore[union-attr]
    put(store, new("a.jpg", unit_vectors(1)[0]))
    record = store.file("a.jpg")
    assert record is not None and record.error is None and record.content is not None
    assert store.count() == 1


def test_a_file_that_fails_loses_its_content(store: Store) -> None:
    [content] = put(store, new("a.jpg", unit_vectors(1)[0]))
    store.assign({content: "cluster-001"})
    written = store.put_failure("a.jpg", 1, 2, "corrupt")
    assert written.relinks == [Relink(content, "cluster-001", "a.jpg", None)]
    assert store.vectors(FP)[0].tolist() == []
    assert store.content_counts()["failed"] == 1


def test_a_vector_of_another_model_is_replaced_and_the_content_placed_again(
        store: Store) -> None:
    first, second = unit_vectors(2)
    [content] = put(store, new("a.jpg", first, "same"))
    store.assign({content: "cluster-001"})
    written = store.put_files([new("a.jpg", second, "same")], "another-model")
    assert [row.id for row in written.placeable] == [content]
    assert store.vectors(FP)[0].tolist() == []
    np.testing.assert_array_equal(store.vectors("another-model")[1], [second])


def test_move_keeps_content_vector_and_cluster_and_moves_the_link(store: Store) -> None:
    [content] = put(store, new("a.jpg", unit_vectors(1)[0]))
    store.assign({content: "cluster-001"})
    written = store.move("a.jpg", "b/c.jpg")
    assert written.relinks == [Relink(content, "cluster-001", "a.jpg", "b/c.jpg")]
    record = store.file("b/c.jpg")
    assert record is not None and (record.content, record.cluster) == (content, "cluster-001")
    assert store.file("a.jpg") is None


def test_move_onto_an_existing_path_replaces_that_file(store: Store) -> None:
    first, second = unit_vectors(2)
    [kept, replaced] = put(store, new("a.jpg", first), new("b.jpg", second))
    store.move("a.jpg", "b.jpg")
    assert [r.path for r in store.files()] == ["b.jpg"]
    assert store.vectors(FP)[0].tolist() == [kept] and replaced != kept


def test_move_of_an_unknown_path_raises_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        store.move("nope.jpg", "b.jpg")


def test_unclustered_lists_live_contents_with_a_vector_and_no_cluster(store: Store) -> None:
    vectors = unit_vectors(3)
    ids = put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(3)))
    store.put_failure("bad.jpg", 1, 1, "corrupt")
    store.assign({ids[1]: "cluster-001"})
    store.remove(["2.jpg"])
    assert store.unclustered(FP) == [ids[0]]
    assert store.without_cluster(ids) == {ids[0]}


def test_commit_recluster_sets_clusters_and_centroids_and_retires_old_names(store: Store) -> None:
    vectors = unit_vectors(3)
    ids = put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(3)))
    commit(store, {ids[0]: "cluster-001", ids[1]: "cluster-001", ids[2]: "cluster-002"},
           {"cluster-001": vectors[0], "cluster-002": vectors[2]})
    commit(store, {i: "cluster-003" for i in ids}, {"cluster-003": vectors[1]})
    names, centroids = store.centroids()
    assert names == ["cluster-003"] and centroids.shape == (1, DIM)
    assert store.used_names() == {"cluster-001", "cluster-002", "cluster-003"}
    assert store.cluster_sizes() == {"cluster-003": 3}
    assert [(c, p) for c, p, _ in store.plan_members()] == [
        ("cluster-003", "0.jpg"), ("cluster-003", "1.jpg"), ("cluster-003", "2.jpg")]


def test_status_figures_count_contents_clusters_and_their_dates(store: Store) -> None:
    vectors = unit_vectors(6)
    taken = [Taken(at, None, "exif") for at in (300.0, 100.0, 200.0)]
    items = [NewFile(f"{i}.jpg", 100, 1, f"h{i}", vectors[i], taken=taken[i]) for i in range(3)]
    items += [new("3.jpg", vectors[3]), new("3 copy.jpg", None, "hash-3.jpg"),
              new("4.jpg", vectors[4])]
    store.put_files(items, FP)
    store.put_failure("bad.jpg", 1, 1, "truncated")
    ids = sorted({record.content for record in store.files() if record.content})
    commit(store, {ids[0]: "cluster-001", ids[1]: "cluster-001", ids[2]: "cluster-002",
                   ids[3]: "cluster-002"}, {"cluster-001": vectors[0], "cluster-002": vectors[2]})
    assert store.content_counts() == {"contents": 5, "unclustered": 1, "failed": 1,
                                      "with_copies": 1, "extra_files": 1}
    sizes = store.cluster_sizes()
    assert sizes == {"cluster-001": 2, "cluster-002": 2}
    assert store.cluster_dates(sizes) == {"cluster-001": (100.0, 300.0),
                                          "cluster-002": (200.0, 200.0)}


def test_a_schema_3_catalog_gets_the_taken_time_in_its_cluster_index(
        state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Store(state_dir, dim=DIM):
        pass
    conn = sqlite3.connect(state_dir / "catalog.sqlite")
    conn.executescript("DROP INDEX contents_cluster; CREATE INDEX contents_cluster ON contents"
                       " (cluster) WHERE gone_at IS NULL; PRAGMA user_version = 3;")
    conn.close()
    caplog.set_level(logging.INFO, logger="photocluster.store")
    with Store(state_dir, dim=DIM):
        assert any("migrated from schema 3 to 4" in r.getMessage() for r in caplog.records)
    conn = sqlite3.connect(state_dir / "catalog.sqlite")
    columns = [row[2] for row in conn.execute("PRAGMA index_info(contents_cluster)")]
    conn.close()
    assert columns == ["cluster", "taken_at"]


def test_commit_recluster_unclusters_contents_added_or_changed_while_it_computed(
        store: Store) -> None:
    vectors = unit_vectors(4)
    ids = put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(3)))
    members = store.members(FP)  # the snapshot
    versions = dict(zip(members.ids.tolist(), members.versions.tolist(), strict=True))
    [late] = put(store, new("late.jpg", vectors[3]))  # arrives meanwhile
    store.put_files([new("1.jpg", vectors[3], "hash-1.jpg")], "other-model")  # re-embedded
    store.commit_recluster([(i, versions[i], "cluster-001") for i in ids],
                           {"cluster-001": vectors[0]}, info(k=1), members.changes)
    assert store.file("0.jpg").cluster == "cluster-001"  # type: ignore[union-attr]
    assert store.file("1.jpg").cluster is None  # type: ignore[union-attr]
    assert store.unclustered(FP) == [late]
    assert store.changed_since_recluster()  # the next scheduled recluster is not skipped


def test_commit_recluster_of_an_unchanged_catalog_leaves_it_unchanged_since(
        store: Store) -> None:
    vectors = unit_vectors(2)
    ids = put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(2)))
    assert store.changed_since_recluster()
    commit(store, dict.fromkeys(ids, "cluster-001"), {"cluster-001": vectors[0]})
    assert not store.changed_since_recluster()
    put(store, new("0-copy.jpg", None, "hash-0.jpg"))  # a copy is no change to the clustering
    assert not store.changed_since_recluster()


def test_commit_recluster_rejects_a_name_without_a_centroid(store: Store) -> None:
    [content] = put(store, new("a.jpg", unit_vectors(1)[0]))
    with pytest.raises(ValueError, match="cluster-009"):
        commit(store, {content: "cluster-009"}, {})


def test_last_recluster_returns_the_latest_info(store: Store) -> None:
    assert store.last_recluster() is None
    [content] = put(store, new("a.jpg", unit_vectors(1)[0]))
    commit(store, {content: "cluster-001"}, {"cluster-001": unit_vectors(1)[0]})
    assert store.last_recluster() == info(k=1)


def test_photos_since_recluster_counts_live_contents_the_recluster_did_not_place(
        store: Store) -> None:
    vectors = unit_vectors(4)
    ids = put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(2)))
    commit(store, dict.fromkeys(ids, "cluster-001"), {"cluster-001": vectors[0]})
    assert store.photos_since_recluster() == 0
    [late] = put(store, new("late.jpg", vectors[2]))
    store.assign({late: "cluster-001"})  # placed live: still not seen by a recluster
    put(store, new("later.jpg", vectors[3]))
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
        put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(3)))
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
        put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(3)))
    crashed = Store(state_dir, dim=DIM)
    put(crashed, new("3.jpg", vectors[3]))
    crashed.remove(["0.jpg"])
    crashed._lock.close()  # what the kernel does to the flock of a dead process
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
        from photocluster.store import NewFile, Store
        store = Store(Path({str(state_dir)!r}), dim={DIM})
        vectors = np.eye({DIM}, dtype=np.float32)
        store.put_files([NewFile("a.jpg", 1, 1, "ha", vectors[0])], {FP!r})
        store.save_index()
        store.put_files([NewFile("b.jpg", 1, 1, "hb", vectors[1])], {FP!r})
        store.put_files([NewFile("a.jpg", 1, 2, "hc", vectors[2])], {FP!r})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert done.returncode == -9
    caplog.set_level(logging.INFO, logger="photocluster.store")
    caplog.clear()  # the first open's records too, if the logger was left at INFO
    with Store(state_dir, dim=DIM) as store:
        assert len(rebuilds(caplog)) == 1
        held, replaced = index_contents(store), store.file("a.jpg")
        assert len(held) == 2 and replaced is not None and replaced.content is not None
        np.testing.assert_allclose(held[replaced.content], np.eye(DIM)[2], atol=1e-3)
        assert_index_matches_catalog(store, state_dir)


def corrupt_slots(state_dir: Path) -> None:
    data = bytearray((state_dir / "index.ids").read_bytes())
    data[8] ^= 0x01  # the second slot now names another content: only the digest notices
    (state_dir / "index.ids").write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    corrupt_slots,
    lambda state_dir: (state_dir / INDEX).write_bytes(b"garbage"),
    lambda state_dir: (state_dir / INDEX).unlink(),
    lambda state_dir: (state_dir / "index.ids").unlink(),
    lambda state_dir: (state_dir / "index.stamp").unlink(),
    lambda state_dir: (state_dir / "index.stamp").write_text("nonsense\n"),
], ids=["flipped-bit", "garbage", "index-missing", "ids-missing", "stamp-missing",
        "stamp-garbage"])
def test_index_is_rebuilt_when_its_file_is_damaged_or_missing(
        state_dir: Path, caplog: pytest.LogCaptureFixture, damage: object) -> None:
    vectors = unit_vectors(3)
    with Store(state_dir, dim=DIM) as store:
        put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(3)))
    damage(state_dir)  # type: ignore[operator]
    caplog.set_level(logging.INFO, logger="photocluster.store")
    caplog.clear()  # the first open's records too, if the logger was left at INFO
    with Store(state_dir, dim=DIM) as store:
        assert len(rebuilds(caplog)) == 1
        assert_index_matches_catalog(store, state_dir)


def test_a_rebuilt_index_is_saved_at_once_so_a_crash_after_it_does_not_rebuild_again(
        state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The stop after a rebuild at 1M photos had 2 GB of rows to sync (16 s)."""
    vectors = unit_vectors(3)
    with Store(state_dir, dim=DIM) as store:
        put(store, *(new(f"{i}.jpg", vectors[i]) for i in range(3)))
    (state_dir / "index.stamp").unlink()
    caplog.set_level(logging.INFO, logger="photocluster.store")
    caplog.clear()
    store = Store(state_dir, dim=DIM)
    assert len(rebuilds(caplog)) == 1
    saved = (state_dir / "index.stamp").read_text()
    store._release()  # white box: a kill -9 now, before any save at close
    with Store(state_dir, dim=DIM) as again:
        assert len(rebuilds(caplog)) == 1  # loaded, not rebuilt
        assert (state_dir / "index.stamp").read_text() == saved
        assert_index_matches_catalog(again, state_dir)


def test_a_write_failing_after_the_index_changed_rolls_the_index_back_without_a_rebuild(
        store: Store, state_dir: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="photocluster.store")
    first, second = unit_vectors(2)
    put(store, new("a.jpg", first))
    index = store._index  # white box: fail right after the index took the new vectors
    add = index.add

    def add_then_fail(ids: np.ndarray, vectors: np.ndarray) -> None:
        add(ids, vectors)
        raise OSError("disk full")

    monkeypatch.setattr(index, "add", add_then_fail)
    with pytest.raises(OSError, match="disk full"):
        store.put_files([new("a.jpg", second, "v2"), new("b.jpg", second)], FP)
    assert [r.path for r in store.files()] == ["a.jpg"]
    np.testing.assert_array_equal(store.vectors(FP)[1], [first])
    assert_index_matches_catalog(store, state_dir)
    assert rebuilds(caplog) == []


def test_save_index_writes_nothing_when_nothing_changed(store: Store, state_dir: Path) -> None:
    put(store, new("a.jpg", unit_vectors(1)[0]))
    store.save_index()
    saved = (state_dir / "index.ids").stat().st_ino, (state_dir / "index.stamp").stat().st_ino
    store.save_index()
    assert saved == ((state_dir / "index.ids").stat().st_ino,
                     (state_dir / "index.stamp").stat().st_ino)
    assert [p.name for p in state_dir.iterdir() if p.name.startswith(".tmp-")] == []


# ---- catalog layout and schema migration


def test_vectors_are_packed_so_the_catalog_is_not_twice_their_size(state_dir: Path) -> None:
    count, dim = 2000, 512  # 512-d: a 2 KiB vector filled a 4 KiB page alone in schema 1
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)  # (count, dim) float32
    with Store(state_dir, dim=dim) as store:
        store.put_files([new(f"{i:04d}.jpg", vectors[i]) for i in range(count)], FP)
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
INSERT INTO meta VALUES ('store.catalog_id', 'c1'), ('store.changes', '7'), ('store.dim', '8'),
    ('changed_since_recluster', '0');
PRAGMA user_version = 1;
"""


def write_schema_1_catalog(state_dir: Path, vectors: np.ndarray) -> None:
    """A catalog as schema 1 wrote it: two clustered photos, a copy of one, a failure."""
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / "catalog.sqlite")
    conn.executescript(SCHEMA_1)
    conn.executemany(
        "INSERT INTO photos (id, path, size, mtime_ns, content_hash, vector, fingerprint,"
        " cluster, error, added_at, in_recluster) VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
            (3, b"album/a.jpg", 10, 11, "ha", vectors[0].tobytes(), FP, "cluster-001", None,
             1.0, 1),
            (4, b"2021/a.jpg", 10, 11, "ha", vectors[0].tobytes(), FP, "cluster-001", None,
             1.5, 1),
            (5, os.fsencode(UNDECODABLE), 20, 21, "hb", vectors[1].tobytes(), FP, None, None,
             2.0, 0),
            (9, b"bad.jpg", 30, 31, None, None, None, None, "truncated", 3.0, 0)])
    conn.execute("INSERT INTO clusters VALUES ('cluster-001', ?, 1, 1.0)", (vectors[0].tobytes(),))
    conn.commit()
    conn.close()


def test_a_schema_1_catalog_is_migrated_merging_copies_into_one_content(
        state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    vectors = unit_vectors(3)
    write_schema_1_catalog(state_dir, vectors)
    caplog.set_level(logging.INFO, logger="photocluster.store")
    with Store(state_dir, dim=DIM) as store:
        assert any("migrated from schema 1 to 4" in r.getMessage() for r in caplog.records)
        assert [(r.path, r.size, r.fingerprint, r.cluster, r.error, r.canonical)
                for r in store.files()] == [
            ("2021/a.jpg", 10, FP, "cluster-001", None, True),
            (UNDECODABLE, 20, FP, None, None, True),
            ("album/a.jpg", 10, FP, "cluster-001", None, False),
            ("bad.jpg", 30, None, None, "truncated", False)]
        ids, got = store.vectors(FP)
        assert len(ids) == 2
        np.testing.assert_array_equal(got, vectors[:2])
        assert store.centroids()[0] == ["cluster-001"]
        assert not store.changed_since_recluster()  # the old flag said nothing changed
        assert_index_matches_catalog(store, state_dir)
        store.put_files([new("album/a.jpg", vectors[2], "new")], FP)  # it takes writes
        assert store.file("2021/a.jpg").cluster == "cluster-001"  # type: ignore[union-attr]


# ---- files, locking, read-only access


def test_state_files_are_private_even_with_a_permissive_umask(state_dir: Path) -> None:
    previous = os.umask(0)
    try:
        with Store(state_dir, dim=DIM) as store:
            put(store, new("a.jpg", unit_vectors(1)[0]))
            while_open = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state_dir.iterdir()}
    finally:
        os.umask(previous)
    after_close = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state_dir.iterdir()}
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert {"catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"} <= while_open.keys()
    assert {INDEX, "index.ids", "index.stamp"} <= after_close.keys()
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
    ids = put(store, new("a.jpg", vectors[0]), new("b.jpg", vectors[1]))
    commit(store, {ids[0]: "cluster-001"}, {"cluster-001": vectors[0]})
    with Store.open_readonly(state_dir) as reader:
        assert [r.path for r in reader.files()] == ["a.jpg", "b.jpg"]
        got_ids, got = reader.vectors(FP)
        assert got_ids.tolist() == ids
        np.testing.assert_array_equal(got, vectors)
        assert reader.centroids()[0] == ["cluster-001"]
        assert reader.last_recluster() == info(k=1)
        put(store, new("c.jpg", vectors[0], "c"))
        assert reader.file("c.jpg") is not None
        with pytest.raises(StateError):
            reader.set_meta("x", "y")
        with pytest.raises(StateError):
            reader.remove(["a.jpg"])
    assert store.file("a.jpg") is not None


def test_open_readonly_without_a_catalog_raises_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError):
        Store.open_readonly(tmp_path / "nothing")

"""Placing a new photo costs what its batch costs, not what the library costs; copies of one
photo are one clustering member with one link."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from photocluster import library, photos, recluster
from photocluster.config import load_config
from photocluster.progress import Progress
from photocluster.watch import Change
from tests.support.config import write_config
from tests.support.consistency import assert_consistent, linked
from tests.support.fakes import FakeEmbedder
from tests.support.photos import COLOURS, write_photo
from tests.support.reads import Reads, counting


def _progress(total: int) -> Progress:
    return Progress(total, "embedding", bar=False)


def _library(base: Path, per_colour: int, extra: str = "") -> Path:
    for name, colour in COLOURS.items():
        for index in range(per_colour):
            write_photo(base / "photos" / name / f"{name}_{index}.jpg", colour, size=32,
                        seed=index)
    return write_config(base, extra)


def _reads_placing_one_photo(base: Path, per_colour: int) -> Reads:
    # To the fake model every photo of a colour is a near-duplicate of every other, so the new
    # photo's group would grow with the library: groups are off here (test_duplicates.py
    # holds a new photo's join to the same bound with groups of a fixed size).
    config = load_config(_library(base, per_colour, "[duplicates]\nthreshold = 0\n"))
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        write_photo(base / "photos" / "red" / "new.jpg", COLOURS["red"], size=32, seed=999)
        changes = [Change("upsert", "red/new.jpg")]
        with counting(lib.store._conn) as reads:
            library.apply_changes(lib, changes, _progress, lambda: False)
    tree = linked(base / "clusters", base / "photos")
    assert tree["red/new.jpg"] == tree["red/red_0.jpg"]
    return reads


def test_placing_a_new_photo_reads_the_same_at_any_library_size(tmp_path: Path) -> None:
    small = _reads_placing_one_photo(tmp_path / "small", per_colour=20)
    large = _reads_placing_one_photo(tmp_path / "large", per_colour=120)  # 6x the photos
    assert large.rows == small.rows, (small, large)
    assert large.steps <= small.steps + 5, (small, large)  # B-tree depth only


def test_a_copy_in_another_folder_is_one_photo_with_one_link(tmp_path: Path) -> None:
    config = load_config(_library(tmp_path, per_colour=4))
    root = tmp_path / "photos"
    (root / "Photos from 2023").mkdir()
    shutil.copy(root / "red" / "red_0.jpg", root / "Photos from 2023" / "red_0.jpg")
    embedder = FakeEmbedder()
    with library.open_library(config, "scan", lambda _: embedder) as lib:
        library.scan(lib, show_bar=False)
        assert embedder.embedded == 12  # the copy was not embedded
    tree = linked(tmp_path / "clusters", root)
    assert "Photos from 2023/red_0.jpg" in tree  # a date folder beats an album-like one
    assert "red/red_0.jpg" not in tree
    assert_consistent(tmp_path)


def test_deleting_the_linked_copy_moves_the_link_to_another_copy(tmp_path: Path) -> None:
    config = load_config(_library(tmp_path, per_colour=4))
    root = tmp_path / "photos"
    shutil.copy(root / "red" / "red_0.jpg", root / "red" / "red_0 copy.jpg")
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        cluster = linked(tmp_path / "clusters", root)["red/red_0.jpg"]
        (root / "red" / "red_0.jpg").unlink()
        library.apply_changes(lib, [Change("delete", "red/red_0.jpg")],
                              _progress, lambda: False)
    tree = linked(tmp_path / "clusters", root)
    assert tree["red/red_0 copy.jpg"] == cluster
    assert_consistent(tmp_path)


def test_thumbnails_are_kept_at_ingest_and_contact_sheets_never_decode_an_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_library(tmp_path, per_colour=4))
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        hashes = {r.content_hash for r in lib.store.files() if r.content_hash}
        assert all(lib.thumbnails.has(h) for h in hashes)

        def no_decoding(*args: object) -> None:
            raise AssertionError("an original was decoded for a contact sheet")

        monkeypatch.setattr(photos, "thumbnail", no_decoding)
        assert library.recluster_now(lib, force=True) == []
    sheets = list((tmp_path / "clusters" / "_overview").glob("cluster-*.jpg"))
    assert sheets


def test_a_library_from_before_thumbnails_gets_them_in_the_background(tmp_path: Path) -> None:
    config = load_config(_library(tmp_path, per_colour=4))
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        shutil.rmtree(tmp_path / "state" / library.THUMBNAILS)
        rounds = 0
        while library.fill_thumbnails(lib, limit=5):
            rounds += 1
        hashes = {r.content_hash for r in lib.store.files() if r.content_hash}
        assert all(lib.thumbnails.has(h) for h in hashes) and rounds == 2  # 12 photos, 5 a go
        assert not library.fill_thumbnails(lib, limit=5)  # and it stays done


def test_two_libraries_with_their_own_state_cannot_share_one_cluster_tree(
    tmp_path: Path,
) -> None:
    from photocluster.errors import LockedError

    config = load_config(_library(tmp_path, per_colour=2))
    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other")
    other.write_text(other.read_text().replace('clusters = "clusters"', 'clusters = "../clusters"')
                     .replace('photos = "photos"', 'photos = "../photos"'))  # own state only
    second = library.open_library(load_config(other), "scan", lambda _: FakeEmbedder())
    with (library.open_library(config, "run", lambda _: FakeEmbedder()),
          pytest.raises(LockedError, match="generations"), second):
        pass


def test_a_photo_edited_while_a_recluster_computes_is_placed_afresh_and_keeps_it_due(
    tmp_path: Path,
) -> None:
    config = load_config(_library(tmp_path, per_colour=4))
    root = tmp_path / "photos"
    with library.open_library(config, "run", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        snapshot = library.snapshot_if_dirty(lib, forced=True)
        assert snapshot is not None
        write_photo(root / "blue" / "blue_0.jpg", COLOURS["red"], size=32, seed=77)  # edited
        library.apply_changes(lib, [Change("upsert", "blue/blue_0.jpg")], _progress,
                              lambda: False)
        library.apply_recluster(lib, recluster.compute(snapshot))
        assert lib.store.changed_since_recluster()  # the next scheduled recluster is not skipped
    tree = linked(tmp_path / "clusters", root)
    assert tree["blue/blue_0.jpg"] == tree["red/red_0.jpg"]  # by its new content, not the old
    assert_consistent(tmp_path)


def _rows_removing_a_moved_out_folder(base: Path, per_colour: int) -> int:
    config = load_config(_library(base, per_colour))
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        shutil.move(base / "photos" / "red", base / "moved-out")
        with counting(lib.store._conn) as reads:
            library.apply_changes(lib, [Change("rescan", "red")], _progress, lambda: False)
    assert not any(path.startswith("red/") for path in linked(base / "clusters", base / "photos"))
    assert_consistent(base)
    return reads.rows


def test_a_folder_moved_out_costs_its_own_rows_not_the_librarys(tmp_path: Path) -> None:
    small = _rows_removing_a_moved_out_folder(tmp_path / "small", per_colour=20)
    larger = tmp_path / "larger"  # the same red folder, 100 more photos elsewhere
    for index in range(100):
        write_photo(larger / "photos" / "green" / f"extra_{index}.jpg", COLOURS["green"],
                    size=32, seed=500 + index)
    assert _rows_removing_a_moved_out_folder(larger, per_colour=20) == small

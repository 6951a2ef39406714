"""`scan` end to end with the fake embedder: plumbing, reuse, renames, names, bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from photocluster import library
from photocluster.config import load_config
from photocluster.store import Store
from tests.support.consistency import linked
from tests.support.fakes import FakeEmbedder
from tests.support.photos import COLOURS, tree_snapshot, write_photo


def _scan(config_file: Path, embedder: FakeEmbedder) -> None:
    config = load_config(config_file)
    with library.open_library(config, "scan", lambda _: embedder) as lib:
        library.scan(lib, show_bar=False)


def _linked(tmp_path: Path) -> dict[str, str]:
    """photo relative path -> cluster name, read from the browsable tree; fails on a double link."""
    return linked(tmp_path / "clusters", tmp_path / "photos")


def _all_photos(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.jpg")}


def test_scan_links_every_photo_once_by_colour_and_leaves_originals_alone(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    before = tree_snapshot(colour_library)
    _scan(config_file, fake_embedder)
    linked = _linked(tmp_path)
    assert set(linked) == _all_photos(colour_library)
    by_colour = {name: {linked[p] for p in linked if p.startswith(name)} for name in COLOURS}
    assert all(len(clusters) == 1 for clusters in by_colour.values())
    assert len(set.union(*by_colour.values())) == 3
    for link in (tmp_path / "clusters").glob("cluster-*/*.jpg"):
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve().is_relative_to(colour_library.resolve())
    assert tree_snapshot(colour_library) == before


def test_second_scan_embeds_nothing_and_writes_no_new_generation(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    _scan(config_file, fake_embedder)
    live = os.readlink(tmp_path / "clusters")
    fake_embedder.embedded = 0
    _scan(config_file, fake_embedder)
    assert fake_embedder.embedded == 0
    assert os.readlink(tmp_path / "clusters") == live


def test_renamed_photos_and_copies_reuse_their_vectors_and_a_copy_is_linked_once(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    _scan(config_file, fake_embedder)
    cluster = _linked(tmp_path)["red/red_0.jpg"]
    (colour_library / "red" / "red_0.jpg").rename(colour_library / "red" / "renamed.jpg")
    shutil.copy(colour_library / "red" / "red_1.jpg", colour_library / "copy_of_red_1.jpg")
    fake_embedder.embedded = 0
    _scan(config_file, fake_embedder)
    assert fake_embedder.embedded == 0
    linked = _linked(tmp_path)
    assert "red/red_0.jpg" not in linked
    assert linked["red/renamed.jpg"] == cluster
    assert "copy_of_red_1.jpg" not in linked  # the shorter path stands for both copies
    assert linked["red/red_1.jpg"] == cluster
    assert set(linked) == _all_photos(colour_library) - {"copy_of_red_1.jpg"}
    with Store(tmp_path / "state") as store:
        copy, original = store.file("copy_of_red_1.jpg"), store.file("red/red_1.jpg")
        assert copy is not None and original is not None
        assert copy.content == original.content and not copy.canonical and original.canonical


def test_cluster_names_survive_reclustering_unchanged_data(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    config = load_config(config_file)
    with library.open_library(config, "scan", lambda _: fake_embedder) as lib:
        library.scan(lib, show_bar=False)
        first = _linked(tmp_path)
        library.recluster_now(lib, force=True)
    assert _linked(tmp_path) == first


def test_recluster_after_adding_photos_keeps_names_of_clusters_that_kept_their_members(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    _scan(config_file, fake_embedder)
    first = _linked(tmp_path)
    for index in range(6):
        write_photo(colour_library / "yellow" / f"yellow_{index}.jpg", (230, 220, 30), seed=index)
        write_photo(colour_library / "red" / f"more_red_{index}.jpg", (220, 30, 30), seed=9 + index)
    config = load_config(config_file)
    with library.open_library(config, "scan", lambda _: fake_embedder) as lib:
        library.scan(lib, show_bar=False)
        library.recluster_now(lib, force=True)
    after = _linked(tmp_path)
    assert all(after[photo] == name for photo, name in first.items())
    assert len({after[p] for p in after if p.startswith("yellow")} - set(first.values())) == 1


BAD_FILES: dict[str, bytes] = {
    "zero.jpg": b"",
    "random.jpg": os.urandom(3000),
    "text.png": b"this is not a picture\n" * 20,
}


def test_bad_files_are_skipped_recorded_and_retried_when_they_change(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    for name, data in BAD_FILES.items():
        (colour_library / name).write_bytes(data)
    good = (colour_library / "red" / "red_0.jpg").read_bytes()
    (colour_library / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (colour_library / "notes.json").write_text("{}")  # a Takeout sidecar: not a photo at all
    _scan(config_file, fake_embedder)
    store = Store.open_readonly(tmp_path / "state")
    failures = {r.path: r.error for r in store.files() if r.error is not None}
    store.close()
    assert set(failures) == {*BAD_FILES, "truncated.jpg"}
    assert all(failures.values())
    assert set(_linked(tmp_path)) == _all_photos(colour_library) - {
        "random.jpg",
        "zero.jpg",
        "truncated.jpg",
    }
    write_photo(colour_library / "truncated.jpg", COLOURS["red"], seed=99)  # its own content
    _scan(config_file, fake_embedder)
    assert "truncated.jpg" in _linked(tmp_path)


def test_deleted_photo_loses_its_link(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    _scan(config_file, fake_embedder)
    (colour_library / "blue" / "blue_2.jpg").unlink()
    _scan(config_file, fake_embedder)
    assert "blue/blue_2.jpg" not in _linked(tmp_path)
    assert not [p for p in (tmp_path / "clusters").glob("*/*") if not p.exists()]


def test_scan_refuses_to_run_beside_another_writer(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    from photocluster.errors import LockedError

    config = load_config(config_file)
    with (
        library.open_library(config, "run", lambda _: fake_embedder),
        pytest.raises(LockedError, match="in use by pid"),
    ):
        _scan(config_file, fake_embedder)


def test_a_new_model_fingerprint_re_embeds_the_library(
    tmp_path: Path, colour_library: Path, config_file: Path, fake_embedder: FakeEmbedder
) -> None:
    _scan(config_file, fake_embedder)
    other = FakeEmbedder()
    other.fingerprint = "fake-embedder-2"  # e.g. other weights or preprocessing
    _scan(config_file, other)
    assert other.embedded == 18
    store = Store.open_readonly(tmp_path / "state")
    assert {r.fingerprint for r in store.files()} == {"fake-embedder-2"}
    store.close()
    assert set(_linked(tmp_path)) == _all_photos(colour_library)

"""The folder tree as a two-way interface: renaming a cluster folder names the cluster, moving
a photo's link pins it, deleting a link keeps it out of that cluster; nothing a user puts into
the tree is lost to a regrouping."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from photocluster import cli, corrections, library, status
from photocluster.config import load_config
from photocluster.library import Library
from photocluster.progress import Progress, Stopping, no_pulse
from photocluster.tree import ClusterTree
from photocluster.watch import Change
from tests.support.config import write_config
from tests.support.consistency import assert_consistent, linked
from tests.support.fakes import FakeEmbedder
from tests.support.photos import COLOURS, write_photo


def _library(base: Path, per_colour: int = 6) -> Path:
    for name in COLOURS:
        _grow(base, name, 0, per_colour)
    return write_config(base)


def _grow(base: Path, colour: str, first: int, count: int) -> None:
    for index in range(first, first + count):
        write_photo(base / "photos" / colour / f"{colour}_{index}.jpg", COLOURS[colour],
                    size=32, seed=index)


@contextmanager
def _opened(base: Path) -> Iterator[Library]:
    config = load_config(base / "config.toml")
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        yield lib


@contextmanager
def _running(base: Path) -> Iterator[Library]:
    """The library as a started daemon holds it: the tree read and mended, then watched."""
    with _opened(base) as lib:
        library.mend(lib)
        yield lib


def _progress(total: int) -> Progress:
    return Progress(total, "embedding", bar=False)


def _scanned(base: Path) -> None:
    _library(base)
    with _opened(base) as lib:
        library.scan(lib, show_bar=False)


def _tree(base: Path) -> dict[str, str]:
    """photo -> the folder its link is in."""
    return linked(base / "clusters", base / "photos")


def _link(base: Path, photo: str) -> Path:
    """The link to `photo` in the live tree."""
    plan = ClusterTree(base / "clusters", base / "photos").read_plan()
    return next(base / "clusters" / folder / name for folder, links in plan.items()
                for name, target in links.items() if target == photo)


def _move_link(base: Path, photo: str, folder: str) -> None:
    """The user moves `photo`'s link into `folder` of the live tree."""
    link = _link(base, photo)
    os.rename(link, base / "clusters" / folder / link.name)


def _content(lib: Library, photo: str) -> int:
    record = lib.store.file(photo)
    assert record is not None and record.content is not None
    return record.content


def _colour_folders(base: Path) -> dict[str, str]:
    tree = _tree(base)
    return {colour: tree[f"{colour}/{colour}_0.jpg"] for colour in COLOURS}


def test_a_renamed_cluster_folder_names_the_cluster_through_two_regroupings_with_growth(
    tmp_path: Path,
) -> None:
    _scanned(tmp_path)
    red = _colour_folders(tmp_path)["red"]
    with _running(tmp_path) as lib:
        os.rename(tmp_path / "clusters" / red, tmp_path / "clusters" / "Beach")
        for first in (6, 9):
            _grow(tmp_path, "red", first, 3)
            library.sync(lib, show_bar=False)  # linked live, under the new name at once
            assert _tree(tmp_path)[f"red/red_{first}.jpg"] == "Beach"
            assert library.recluster_now(lib, force=True) == []
            tree = _tree(tmp_path)
            assert {tree[f"red/red_{i}.jpg"] for i in range(first + 3)} == {"Beach"}
            assert not (tmp_path / "clusters" / red).exists()
        assert lib.store.labels() == {red: "Beach"}
    report = status.collect(tmp_path / "state")
    assert report["labels"] == {red: "Beach"}
    assert f"  Beach ({red}): 12" in status.render(report)
    assert (tmp_path / "clusters" / "_overview" / "Beach.jpg").is_file()
    assert_consistent(tmp_path)


def test_a_link_moved_into_another_cluster_folder_pins_the_photo_through_regroupings(
    tmp_path: Path,
) -> None:
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    link = _link(tmp_path, "red/red_0.jpg")
    with _running(tmp_path) as lib:
        os.rename(link, tmp_path / "clusters" / folders["blue"] / link.name)
        library.tend(lib)
        assert lib.store.pins() == {_content(lib, "red/red_0.jpg"): folders["blue"]}
        for first in (6, 9):
            _grow(tmp_path, "red", first, 3)
            library.sync(lib, show_bar=False)
            assert library.recluster_now(lib, force=True) == []
            tree = _tree(tmp_path)
            assert tree["red/red_0.jpg"] == folders["blue"]
            assert {tree[f"red/red_{i}.jpg"] for i in range(1, first + 3)} == {folders["red"]}
    report = status.collect(tmp_path / "state")
    assert report["pins"] == [{"path": "red/red_0.jpg", "cluster": folders["blue"],
                               "folder": folders["blue"]}]
    assert f"  red/red_0.jpg -> {folders['blue']}" in status.render(report)
    assert_consistent(tmp_path)


def _next_nearest(lib: Library, content: int, refused: str) -> str:
    names, centroids = lib.store.centroids()
    scores = centroids @ lib.store.vectors_of(np.asarray([content], np.int64))[0]  # (k,)
    return max((name for name in names if name != refused), key=lambda n: scores[names.index(n)])


def test_a_deleted_link_sends_the_photo_to_its_next_nearest_cluster_now_and_at_regroupings(
    tmp_path: Path,
) -> None:
    _scanned(tmp_path)
    red = _colour_folders(tmp_path)["red"]
    with _running(tmp_path) as lib:
        _link(tmp_path, "red/red_0.jpg").unlink()
        library.tend(lib)
        content = _content(lib, "red/red_0.jpg")
        expected = _next_nearest(lib, content, red)
        assert _tree(tmp_path)["red/red_0.jpg"] == expected
        for _ in range(2):
            assert library.recluster_now(lib, force=True) == []
            tree = _tree(tmp_path)
            assert tree["red/red_0.jpg"] not in (red, None)
            assert {tree[f"red/red_{i}.jpg"] for i in range(1, 6)} == {red}
    assert_consistent(tmp_path)


@pytest.fixture
def folders_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders each check reads, in order."""
    read: list[str] = []
    entries = ClusterTree.folder_entries

    def counted(tree: ClusterTree, generation: Path, folder: str) -> object:
        read.append(folder)
        return entries(tree, generation, folder)

    monkeypatch.setattr(ClusterTree, "folder_entries", counted)
    return read


def test_a_check_reads_only_the_folders_whose_mtime_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders_read: list[str]
) -> None:
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    with _running(tmp_path) as lib:
        folders_read.clear()
        lib.reader.check(full=False)
        assert folders_read == []
        _move_link(tmp_path, "red/red_0.jpg", folders["blue"])
        lib.reader.check(full=False)
        assert sorted(folders_read) == sorted([folders["red"], folders["blue"]])


def test_the_sweep_reads_one_unchanged_folder_a_check_and_every_folder_in_a_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders_read: list[str]
) -> None:
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)
    _scanned(tmp_path)
    folders = sorted(_colour_folders(tmp_path).values())
    with _running(tmp_path) as lib:
        lib.reader.check(full=False)
        folders_read.clear()
        for _ in range(2 * len(folders)):
            lib.reader.check(full=False, sweep=True)
        assert folders_read == folders + folders  # one at a time, then a new round


def test_idle_checks_pace_the_sweep_instead_of_reading_every_folder_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders_read: list[str]
) -> None:
    """At 1M photos reading every folder took the worker 17 s; the sweep spreads it out."""
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)
    _scanned(tmp_path)
    folders = sorted(_colour_folders(tmp_path).values())
    now = [1000.0]
    with _running(tmp_path) as lib:
        reader = corrections.TreeReader(lib.store, lib.tree, clock=lambda: now[0])
        reader.trusted = True
        reader.check(full=True)
        folders_read.clear()
        pace = corrections.SWEEP_SECONDS / len(folders)
        for _ in range(10):  # the changed folders are looked at every second; none changed
            reader.tend()
            now[0] += corrections.CHECK_SECONDS
        assert folders_read == []  # every folder was just read
        now[0] += pace
        reader.tend()  # the first folder of a round of three
        assert folders_read == folders[:1]
        lib.reader = reader  # new photos keep landing in a folder the sweep just read:
        colour = next(c for c, f in _colour_folders(tmp_path).items() if f == folders[0])
        _grow(tmp_path, colour, 50, 1)
        library.apply_changes(lib, [Change("upsert", f"{colour}/{colour}_50.jpg")], _progress,
                              lambda: False)
        now[0] += pace - 1.0
        reader.tend()
        assert folders_read == folders[:1]
        now[0] += 1.0
        reader.tend()
        assert folders_read == folders[:2]  # the round goes on: the sweep is not held back


def test_a_stop_between_two_folders_of_a_full_check_records_nothing_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full check took 17 s at 1M photos: a stop must not wait for it."""
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    calls: list[int] = []

    def stop_at_the_second_folder() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise Stopping("stop requested")

    with _running(tmp_path) as lib:
        _move_link(tmp_path, "blue/blue_0.jpg", folders["red"])
        with pytest.raises(Stopping):
            lib.reader.check(full=True, between=stop_at_the_second_folder)
        assert lib.store.pins() == {}
        lib.reader.check(full=True)
        assert lib.store.pins() == {_content(lib, "blue/blue_0.jpg"): folders["red"]}


def test_the_daemons_own_links_do_not_make_the_next_check_read_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders_read: list[str]
) -> None:
    """At 1M photos a folder took a second to read back after every new photo's link."""
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)
    _scanned(tmp_path)
    red = _colour_folders(tmp_path)["red"]
    with _running(tmp_path) as lib:
        lib.reader.check(full=False)  # every stamp remembered
        monkeypatch.setattr(corrections, "RACY_SECONDS", 3600.0)  # our change is a recent one
        _grow(tmp_path, "red", 50, 1)
        library.apply_changes(lib, [Change("upsert", "red/red_50.jpg")], _progress, lambda: False)
        assert _tree(tmp_path)["red/red_50.jpg"] == red
        folders_read.clear()
        lib.reader.check(full=False)
        lib.reader.check(full=False)
        assert folders_read == []


def test_a_start_that_was_not_trusted_does_not_read_every_folder_again_after_its_repair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders_read: list[str]
) -> None:
    """The repair compared the whole tree with the catalog: at 1M photos the first check then
    read all of it once more (17 s), and a stop waited for it."""
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)  # the tree was built moments ago
    _scanned(tmp_path)
    with _opened(tmp_path) as lib:
        lib.store.set_meta(corrections.TRUSTED, "")  # as after a crash
    with _opened(tmp_path) as lib:
        library.mend(lib)
        folders_read.clear()
        lib.reader.check(full=False)
        assert folders_read == []


def test_a_users_edit_before_the_daemons_link_into_that_folder_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders_read: list[str]
) -> None:
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    with _running(tmp_path) as lib:
        lib.reader.check(full=False)
        _move_link(tmp_path, "blue/blue_0.jpg", folders["red"])  # the user's move
        _grow(tmp_path, "red", 50, 1)
        library.apply_changes(lib, [Change("upsert", "red/red_50.jpg")], _progress, lambda: False)
        folders_read.clear()
        lib.reader.check(full=False)
        assert sorted(folders_read) == sorted([folders["red"], folders["blue"]])
        assert lib.store.pinned_paths(10) == [("blue/blue_0.jpg", folders["red"])]


def test_a_folder_changed_moments_ago_is_read_again_in_case_its_mtime_did_not_move(
    tmp_path: Path, folders_read: list[str]
) -> None:
    _scanned(tmp_path)
    with _running(tmp_path) as lib:
        folders_read.clear()
        lib.reader.check(full=False)  # the tree was just built: every folder is too fresh
        lib.reader.check(full=False)
        assert len(folders_read) == 2 * len(_colour_folders(tmp_path))


def test_the_look_before_linking_does_not_take_the_trees_lag_for_a_deleted_link(
    tmp_path: Path,
) -> None:
    _library(tmp_path)
    photos = tmp_path / "photos"
    shutil.copy(photos / "red" / "red_0.jpg", photos / "red" / "red_0 copy.jpg")
    with _opened(tmp_path) as lib:
        library.scan(lib, show_bar=False)
        linked_copy = "red/red_0 copy.jpg" if "red/red_0 copy.jpg" in _tree(tmp_path) else \
            "red/red_0.jpg"
        (tmp_path / "clusters" / "My picks").mkdir()  # the top of the tree changed: a look
        (photos / linked_copy).unlink()  # the catalog moves the link before the tree does
        library.apply_changes(lib, [Change("delete", linked_copy)], _progress, lambda: False)
        assert lib.store.mark_counts() == {"pinned": 0, "rejections": 0}
    tree = _tree(tmp_path)
    assert linked_copy not in tree and tree.keys() & {"red/red_0.jpg", "red/red_0 copy.jpg"}


def test_edits_made_while_a_new_generation_is_built_reach_the_catalog_and_the_new_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    clusters = tmp_path / "clusters"
    moved, deleted = _link(tmp_path, "green/green_0.jpg"), _link(tmp_path, "blue/blue_1.jpg")
    build = ClusterTree.build

    def build_then_edit(tree: ClusterTree, plan: dict[str, dict[str, str]],
                        pulse: object = no_pulse) -> Path:
        generation = build(tree, plan)
        # the user, in the live tree, while the new generation waits to be swapped in
        os.rename(clusters / folders["red"], clusters / "Beach")
        os.rename(moved, clusters / folders["blue"] / moved.name)
        deleted.unlink()
        return generation

    with _running(tmp_path) as lib:
        monkeypatch.setattr(ClusterTree, "build", build_then_edit)
        assert library.recluster_now(lib, force=True) == []
        monkeypatch.undo()
        assert lib.store.labels() == {folders["red"]: "Beach"}
        assert lib.store.pins() == {_content(lib, "green/green_0.jpg"): folders["blue"]}
    tree = _tree(tmp_path)
    assert tree["red/red_1.jpg"] == "Beach" and tree["green/green_0.jpg"] == folders["blue"]
    assert tree["blue/blue_1.jpg"] != folders["blue"]
    assert_consistent(tmp_path)


def test_after_a_swap_only_the_folders_changed_during_the_build_are_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders_read: list[str]
) -> None:
    """At 1M photos reading the whole old generation back took 17 s, which a stop waited for;
    what the user left in a folder that was not read back is still carried over."""
    monkeypatch.setattr(corrections, "RACY_SECONDS", 0.0)
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    clusters = tmp_path / "clusters"
    (clusters / folders["green"] / "notes.txt").write_text("mine")
    moved = _link(tmp_path, "blue/blue_0.jpg")
    build = ClusterTree.build

    def build_then_edit(tree: ClusterTree, plan: dict[str, dict[str, str]],
                        pulse: object = no_pulse) -> Path:
        generation = build(tree, plan)
        folders_read.clear()
        os.rename(moved, clusters / folders["red"] / moved.name)  # the user, meanwhile
        return generation

    with _running(tmp_path) as lib:
        monkeypatch.setattr(ClusterTree, "build", build_then_edit)
        assert library.recluster_now(lib, force=True) == []
        assert sorted(folders_read) == sorted([folders["red"], folders["blue"]])
        assert lib.store.pins() == {_content(lib, "blue/blue_0.jpg"): folders["red"]}
    assert (clusters / folders["green"] / "notes.txt").read_text() == "mine"
    assert _tree(tmp_path)["blue/blue_0.jpg"] == folders["red"]
    assert_consistent(tmp_path)


def test_things_a_user_drops_into_the_tree_are_kept_through_every_regrouping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _scanned(tmp_path)
    red = _colour_folders(tmp_path)["red"]
    clusters = tmp_path / "clusters"
    blue_link = _link(tmp_path, "blue/blue_0.jpg")
    caplog.set_level(logging.WARNING, "photocluster.corrections")
    with _running(tmp_path) as lib:
        (clusters / red / "notes.txt").write_text("mine")
        (clusters / "todo.txt").write_text("also mine")
        (clusters / "My picks").mkdir()
        os.symlink(os.readlink(blue_link), clusters / "My picks" / "pick.jpg")  # a copied link
        library.tend(lib)
        assert "'My picks' in the cluster tree is not photocluster's" in caplog.text
        assert lib.store.pins() == {} and lib.store.mark_counts()["rejections"] == 0
        for _ in range(2):  # two swaps: the generation the user wrote into is deleted
            assert library.recluster_now(lib, force=True) == []
    assert (clusters / red / "notes.txt").read_text() == "mine"
    assert (clusters / "_unsorted" / "todo.txt").read_text() == "also mine"
    pick = clusters / "_unsorted" / "My picks" / "pick.jpg"
    assert pick.resolve() == (tmp_path / "photos" / "blue" / "blue_0.jpg").resolve()
    assert _tree(tmp_path)["blue/blue_0.jpg"] == _colour_folders(tmp_path)["blue"]
    assert_consistent(tmp_path)


def test_after_a_crash_only_renamed_folders_are_read_and_the_tree_is_mended(
    tmp_path: Path,
) -> None:
    _library(tmp_path)
    with pytest.raises(RuntimeError), _opened(tmp_path) as lib:  # stops without closing
        library.scan(lib, show_bar=False)
        raise RuntimeError("killed")
    folders = _colour_folders(tmp_path)
    os.rename(tmp_path / "clusters" / folders["red"], tmp_path / "clusters" / "Beach")
    _link(tmp_path, "blue/blue_0.jpg").unlink()  # could be a link the crash kept from being made
    with _opened(tmp_path) as lib:
        library.scan(lib, show_bar=False)
        assert lib.store.labels() == {folders["red"]: "Beach"}
        assert lib.store.mark_counts() == {"pinned": 0, "rejections": 0}
    assert _tree(tmp_path)["blue/blue_0.jpg"] == folders["blue"]
    assert_consistent(tmp_path)


def test_after_a_clean_stop_every_edit_made_meanwhile_is_read_at_the_next_start(
    tmp_path: Path,
) -> None:
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    _link(tmp_path, "blue/blue_0.jpg").unlink()
    moved = _link(tmp_path, "red/red_0.jpg")
    os.rename(moved, tmp_path / "clusters" / folders["green"] / moved.name)
    with _opened(tmp_path) as lib:
        library.scan(lib, show_bar=False)
        assert lib.store.mark_counts() == {"pinned": 1, "rejections": 1}
    tree = _tree(tmp_path)
    assert tree["red/red_0.jpg"] == folders["green"]
    assert tree["blue/blue_0.jpg"] != folders["blue"]
    assert_consistent(tmp_path)


def test_a_folder_renamed_to_a_name_that_cannot_be_a_clusters_is_renamed_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    with _running(tmp_path) as lib:
        os.rename(tmp_path / "clusters" / folders["red"], tmp_path / "clusters" / "_Beach")
        os.rename(tmp_path / "clusters" / folders["green"], tmp_path / "clusters" / "cluster-999")
        library.tend(lib)
        assert lib.store.labels() == {}
    assert "names starting with '.' or '_' mark folders that are not clusters" in caplog.text
    assert "names like cluster-012 are the daemon's own" in caplog.text
    assert _colour_folders(tmp_path) == folders
    assert_consistent(tmp_path)


def test_a_named_cluster_that_dissolves_retires_its_name_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _scanned(tmp_path)
    red = _colour_folders(tmp_path)["red"]
    caplog.set_level(logging.INFO, "photocluster.corrections")
    with _running(tmp_path) as lib:
        os.rename(tmp_path / "clusters" / red, tmp_path / "clusters" / "Beach")
        library.tend(lib)
        for index in range(6):
            (tmp_path / "photos" / "red" / f"red_{index}.jpg").unlink()
        library.sync(lib, show_bar=False)
        assert library.recluster_now(lib, force=True) == []
        assert lib.store.labels() == {}
    assert f"cluster 'Beach' (was {red}) dissolved; its name is retired" in caplog.text
    assert "Beach" not in os.listdir(tmp_path / "clusters")
    assert_consistent(tmp_path)


def test_deleting_a_cluster_folder_retires_the_cluster_and_rehomes_its_photos(
    tmp_path: Path,
) -> None:
    _scanned(tmp_path)
    folders = _colour_folders(tmp_path)
    with _running(tmp_path) as lib:
        for link in (tmp_path / "clusters" / folders["red"]).iterdir():
            link.unlink()
        (tmp_path / "clusters" / folders["red"]).rmdir()
        library.tend(lib)
        assert folders["red"] not in lib.store.folder_names()
    tree = _tree(tmp_path)
    assert {tree[f"red/red_{i}.jpg"] for i in range(6)} <= {folders["green"], folders["blue"]}
    assert_consistent(tmp_path)


# ---- the command line, without a daemon (tests/test_daemon.py asks a running one)


def _cli(config: Path, *args: str) -> int:
    return cli.main(["-c", str(config), *args])


def test_name_pin_and_unpin_from_the_command_line_without_a_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _scanned(tmp_path)
    config, clusters = tmp_path / "config.toml", tmp_path / "clusters"
    folders = _colour_folders(tmp_path)
    assert _cli(config, "name", folders["red"], "Beach") == 0
    assert f"{folders['red']} is now called 'Beach'" in capsys.readouterr().out
    assert (clusters / "Beach").is_dir() and not (clusters / folders["red"]).exists()
    link = _link(tmp_path, "red/red_1.jpg")
    assert _cli(config, "pin", str(clusters / "Beach" / link.name), folders["blue"]) == 0
    assert _tree(tmp_path)["red/red_1.jpg"] == folders["blue"]
    capsys.readouterr()
    assert _cli(config, "status", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == {folders["red"]: "Beach"}
    assert [pin["path"] for pin in report["pins"]] == ["red/red_1.jpg"]
    assert _cli(config, "unpin", str(tmp_path / "photos" / "red" / "red_1.jpg")) == 0
    assert _cli(config, "name", "Beach", folders["red"]) == 0  # its identity clears the name
    with _opened(tmp_path) as lib:
        assert lib.store.pins() == {} and lib.store.labels() == {}
    assert_consistent(tmp_path)


@pytest.mark.parametrize("bad", ["_Beach", ".Beach", "a/b", "..", "tab\there", "x" * 256,
                                 "cluster-050", "   "])
def test_a_name_that_cannot_be_a_folder_name_is_refused_with_exit_2(
    tmp_path: Path, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    _scanned(tmp_path)
    red = _colour_folders(tmp_path)["red"]
    assert _cli(tmp_path / "config.toml", "name", red, bad) == 2
    assert f"cannot name {red}" in caplog.text
    assert (tmp_path / "clusters" / red).is_dir()


def test_two_clusters_cannot_share_a_name_even_one_differing_only_in_case(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _scanned(tmp_path)
    config, folders = tmp_path / "config.toml", _colour_folders(tmp_path)
    assert _cli(config, "name", folders["red"], "Beach") == 0
    assert _cli(config, "name", folders["blue"], "Beach") == 2
    assert _cli(config, "name", folders["blue"], "beach") == 2
    assert "the same but for case" in caplog.text
    assert _cli(config, "name", "no-such-cluster", "Sea") == 2
    assert _cli(config, "pin", "red/nowhere.jpg", "Beach") == 2
    assert _cli(config, "pin", "/elsewhere/x.jpg", "Beach") == 2

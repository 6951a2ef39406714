"""A vanished folder is not a deletion (photocluster.vanish): an emptied nested mount and a mass
vanish over the share wait for a confirmation; a re-download of deleted photos reuses their
vectors while they are kept."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest

from photocluster import cli, library, status, vanish
from photocluster.config import load_config
from photocluster.progress import Progress
from photocluster.watch import Change
from tests.support.config import write_config
from tests.support.consistency import assert_consistent, linked
from tests.support.fakes import FakeEmbedder
from tests.support.photos import COLOURS, write_photo

# ---- the rules, pure


def test_paths_below_an_empty_mount_are_held_under_it_and_the_rest_deleted() -> None:
    now, held = vanish.split(["nas/a.jpg", "nas/deep/b.jpg", "local/c.jpg"], {"nas"}, 1000,
                             0.25, confirmed=[])
    assert now == ["local/c.jpg"]
    assert held == [vanish.Hold("nas", 2)]


def test_a_removal_over_the_share_and_the_floor_is_held_under_its_common_folder() -> None:
    missing = [f"2023/trip/{i}.jpg" for i in range(vanish.FLOOR + 1)]
    assert vanish.split(missing, set(), 400, 0.25, []) == ([], [vanish.Hold("2023/trip", 101)])
    assert vanish.split(missing, set(), 4000, 0.25, [])[0] == missing  # under the share
    few = missing[:60]  # over the share of a small library, under the floor
    assert vanish.split(few, set(), 100, 0.25, [])[0] == few


def test_confirmed_folders_are_deleted_whatever_the_rules_say() -> None:
    missing = [f"nas/{i}.jpg" for i in range(300)]
    assert vanish.split(missing, {"nas"}, 300, 0.25, confirmed=["nas"]) == (missing, [])


def test_a_reconciliation_replaces_the_holds_in_its_scope_only() -> None:
    held = {"nas": 5, "other/mount": 7}
    assert vanish.updated_holds(held, "nas", []) == {"other/mount": 7}
    assert vanish.updated_holds(held, None, []) == held  # the watcher's deletes clear nothing
    assert vanish.updated_holds(held, "", [vanish.Hold("x", 1)]) == {"x": 1}


# ---- the library


def _progress(total: int) -> Progress:
    return Progress(total, "embedding", bar=False)


def _library(base: Path, folders: dict[str, int], extra: str = "") -> Path:
    for folder, count in folders.items():
        colour = list(COLOURS.values())[len(folder) % 3]
        for index in range(count):
            write_photo(base / "photos" / folder / f"p{index:03d}.jpg", colour, size=16,
                        seed=zlib.crc32(folder.encode()) % 10_000 + index)
    return write_config(base, extra)


def test_a_vanished_nested_mount_deletes_nothing_and_its_return_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(_library(tmp_path, {"nas": 6, "local": 6}))
    root, embedder = tmp_path / "photos", FakeEmbedder()
    mounted = {"nas"}
    monkeypatch.setattr(vanish, "mounts_below", lambda _: set(mounted))
    with library.open_library(config, "scan", lambda _: embedder) as lib:
        library.scan(lib, show_bar=False)
        before = linked(tmp_path / "clusters", root)
        shutil.move(root / "nas", tmp_path / "away")  # unmounted: a bare, empty mount point
        (root / "nas").mkdir()
        mounted.clear()
        library.rescan(lib, "")
        assert lib.store.count() == 12
        assert status.held_deletions(lib.store) == [{"folder": "nas", "photos": 6}]
        (root / "nas").rmdir()
        shutil.move(tmp_path / "away", root / "nas")  # mounted again
        mounted.add("nas")
        library.rescan(lib, "")
        assert status.held_deletions(lib.store) == []
    assert linked(tmp_path / "clusters", root) == before
    assert embedder.embedded == 12
    assert_consistent(tmp_path)


def test_a_mass_vanish_over_the_share_pauses_is_reported_and_goes_once_confirmed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = _library(tmp_path, {"keep": 60, "trip/a": 70, "trip/b": 70})
    config = load_config(config_path)
    root = tmp_path / "photos"
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        shutil.rmtree(root / "trip")  # 140 of 200 files, over the 100-file floor and 25 %
        library.rescan(lib, "")
        assert lib.store.count() == 200
    capsys.readouterr()
    assert cli.main(["-c", str(config_path), "status"]) == 0
    assert ("140 photos under 'trip' look deleted; confirm with `photocluster "
            "confirm-deletions` or they come back when the folder does") in capsys.readouterr().out
    assert cli.main(["-c", str(config_path), "confirm-deletions"]) == 0
    assert "confirmed: 140 photos under 'trip'" in capsys.readouterr().out
    with library.open_library(config, "run", lambda _: FakeEmbedder()) as lib:
        library.apply_confirmed(lib)
        assert lib.store.count() == 60
        assert status.held_deletions(lib.store) == []
    assert not (config.paths.state / vanish.CONFIRM).exists()
    assert sorted(linked(tmp_path / "clusters", root)) == [f"keep/p{i:03d}.jpg" for i in range(60)]
    assert_consistent(tmp_path)


def test_watcher_deletes_of_a_whole_folder_are_one_removal_and_held_over_the_share(
        tmp_path: Path) -> None:
    config = load_config(_library(tmp_path, {"keep": 20, "gone": 120}))
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        shutil.rmtree(tmp_path / "photos" / "gone")
        changes = [Change("delete", f"gone/p{i:03d}.jpg") for i in range(120)]
        library.apply_changes(lib, changes, _progress, lambda: False)
        assert lib.store.count() == 140
        assert status.held_deletions(lib.store) == [{"folder": "gone", "photos": 120}]


@pytest.mark.parametrize(("days", "embedded"), [(7, 0), (0, 3)], ids=["kept", "forgotten"])
def test_a_re_download_of_deleted_photos_reuses_their_vectors_while_they_are_kept(
        tmp_path: Path, days: int, embedded: int) -> None:
    config = load_config(_library(tmp_path, {"album": 3, "other": 3},
                                  f"keep_vectors_days = {days}\n"))
    root, embedder = tmp_path / "photos", FakeEmbedder()
    with library.open_library(config, "scan", lambda _: embedder) as lib:
        library.scan(lib, show_bar=False)
        shutil.move(root / "album", tmp_path / "downloaded")  # the sync client deletes it
        library.rescan(lib, "")
        assert lib.store.count() == 3
        shutil.move(tmp_path / "downloaded", root / "album")  # and downloads it again
        embedder.embedded = 0
        library.rescan(lib, "")
    assert embedder.embedded == embedded
    assert sorted(linked(tmp_path / "clusters", root)) == sorted(
        f"{folder}/p{i:03d}.jpg" for folder in ("album", "other") for i in range(3))
    assert_consistent(tmp_path)

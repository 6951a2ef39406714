"""Exclusions: NAS, recycle-bin and sync clutter is never walked, watched, listed or changed."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import DirCreatedEvent, FileCreatedEvent, FileMovedEvent

from photocluster.config import load_config
from photocluster.errors import ConfigError
from photocluster.photos import DEFAULT_EXCLUDES, Excluder, is_media, walk
from photocluster.photos.exclude import pattern_problem
from photocluster.watch import Change, ChangeFeed
from photocluster.watch import observers as observers_module
from photocluster.watch.settle import Settler
from tests.support.takeout_tree import rclone_tree, takeout_tree

REPO = Path(__file__).resolve().parents[1]
REAL_SETTLE = 0.2


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [thread for thread in threading.enumerate() if thread not in before]
    assert leaked == [], f"threads left running: {leaked}"


# ---------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("@eaDir", "@eaDir", True),
        ("@eaDir", "a/b/@eaDir", True),
        ("@eaDir", "a/@eaDir/IMG_1.jpg/SYNOPHOTO_THUMB_XL.jpg", True),
        ("@eaDir", "a/x@eaDir/b.jpg", False),
        ("@eaDir", "a/@eadir/b.jpg", False),  # case-sensitive, as the file system is
        ("SYNOFILE_THUMB_*", "a/SYNOFILE_THUMB_XL.jpg", True),
        ("SYNOFILE_THUMB_*", "a/IMG_SYNOFILE_THUMB_XL.jpg", False),
        ("Lightroom Catalog*", "Lightroom Catalog Previews.lrdata/0/1.jpg", True),
        ("$RECYCLE.BIN", "d/$RECYCLE.BIN/x.jpg", True),
        ("$RECYCLE.BIN", "d/$RECYCLExBIN/x.jpg", False),  # "." is no wildcard
        ("#recycle", "share/#recycle/x.jpg", True),
        ("IMG_?.jpg", "a/IMG_1.jpg", True),
        ("IMG_?.jpg", "a/IMG_12.jpg", False),
        ("IMG_[0-4].jpg", "IMG_3.jpg", True),
        ("IMG_[!0-4].jpg", "IMG_3.jpg", False),
        ("IMG_[!0-4].jpg", "IMG_7.jpg", True),
        ("[abc", "[abc", True),  # an unclosed "[" is a literal, as in fnmatch
        ("Trash", "Takeout/Google Photos/Trash/IMG_1.jpg", True),
        ("/Trash", "Trash/IMG_1.jpg", True),
        ("/Trash", "Takeout/Trash/IMG_1.jpg", False),
        ("Takeout/Google Photos/Trash", "Takeout/Google Photos/Trash/IMG_1.jpg", True),
        ("Takeout/Google Photos/Trash", "Takeout/Google Photos/Trash", True),
        ("Takeout/Google Photos/Trash", "Other/Takeout/Google Photos/Trash/x.jpg", False),
        ("media/by-*", "media/by-year/2023/IMG_1.jpg", True),
        ("media/by-*", "media/all/IMG_1.jpg", False),
        ("media/*", "media/all/by-year/x.jpg", True),
        ("a/*/c", "a/b/c/d.jpg", True),
        ("a/*/c", "a/b/x/c/d.jpg", False),  # "*" never crosses "/"
        ("**/Screenshots", "Screenshots/x.png", True),
        ("**/Screenshots", "a/b/Screenshots/x.png", True),
        ("a/**/c", "a/c/x.jpg", True),
        ("a/**/c", "a/b1/b2/c/x.jpg", True),
        ("a/**", "a/b/x.jpg", True),
        ("a/**", "ab/x.jpg", False),
        ("Trash/", "x/Trash/y.jpg", True),  # a trailing "/" is ignored
        ("new\nline", "a/new\nline/b.jpg", True),
    ],
)
def test_a_pattern_matches_a_path_or_one_of_its_folders(
    pattern: str, path: str, expected: bool
) -> None:
    assert Excluder([pattern]).excludes(path) is expected


def test_the_root_itself_is_never_excluded() -> None:
    assert Excluder(["*x", "a/**"]).excludes("") is False


def test_an_excluder_below_a_folder_takes_paths_relative_to_it() -> None:
    excluder = Excluder(["/Trash", "a/b", "@eaDir"])
    assert excluder.below("a").excludes("b/x.jpg")
    assert excluder.below("a/").excludes("@eaDir")
    assert excluder.below("a/@eaDir").excludes("x.jpg")
    assert not excluder.below("a").excludes("Trash/x.jpg")  # /Trash is the root's only
    assert excluder.below("a").below("b").excludes("x.jpg")
    assert excluder.below("").excludes("Trash") and not excluder.below("x").excludes("")


@pytest.mark.parametrize(
    "path",
    [
        "Photos/@eaDir/IMG_1.jpg/SYNOPHOTO_THUMB_XL.jpg",
        "Photos/@__thumb/a.jpg",
        "Photos/.@__thumb/a.jpg",
        "#recycle/a.jpg",
        "#snapshot/GMT+01_2024-01-01/a.jpg",
        "$RECYCLE.BIN/S-1-5-21/a.jpg",
        "$Recycle.Bin/a.jpg",
        "Photos/SYNOFILE_THUMB_XL.jpg",
        "Photos/Thumbs.db",
        "Photos/.thumbnails/normal/a.png",
        "DCIM/.trashed-1700000000-IMG_1.jpg",
        "Lightroom/Lightroom Catalog Previews.lrdata/A/a.jpg",
        "Takeout/Google Photos/Trash/a.jpg",
        "Takeout/Google Photos/Bin/a.jpg",
        "Takeout/Google Fotos/Papierkorb/a.jpg",
        "Takeout/Google Photos/Corbeille/a.jpg",
        "Takeout/Google Fotos/Papelera/a.jpg",
    ],
)
def test_the_defaults_cover_nas_recycle_bins_thumbnails_and_the_takeout_trash(path: str) -> None:
    assert Excluder(DEFAULT_EXCLUDES).excludes(path)


@pytest.mark.parametrize(
    "path",
    ["Photos/IMG_1.jpg", "Takeout/Google Photos/Photos from 2022/IMG_1.jpg", "Binder/a.jpg",
     "Trash can.jpg", "Albums/Bin day/a.jpg", "media/by-year/2023/a.jpg"],
)  # fmt: skip
def test_the_defaults_leave_photos_alone(path: str) -> None:
    assert not Excluder(DEFAULT_EXCLUDES).excludes(path)


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("", "non-empty"),
        ("a\0b", "NUL"),
        ("/", "no empty path components"),
        ("a//b", "no empty path components"),
        ("../photos", "'..'"),
        ("a/./b", "'.'"),
        ("*", "whole photo folder"),
        ("**", "whole photo folder"),
        ("**/*", "whole photo folder"),
    ],
)
def test_unusable_patterns_are_named_with_the_reason(pattern: str, says: str) -> None:
    problem = pattern_problem(pattern)
    assert problem is not None and says in problem
    with pytest.raises(ValueError, match="exclude pattern"):
        Excluder([pattern])


@pytest.mark.parametrize("pattern", ["@eaDir", "/Trash", "a/**/b", "Trash/", "*.jpg", "[!a]"])
def test_usable_patterns_have_no_problem(pattern: str) -> None:
    assert pattern_problem(pattern) is None


# ---------------------------------------------------------------------------- walk


def make(root: Path, relative: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_walk_never_lists_an_excluded_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for relative in ("a/IMG_1.jpg", "a/@eaDir/IMG_1.jpg/THUMB.jpg", "a/b/@eaDir/x.jpg"):
        make(tmp_path, relative)
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        if "@eaDir" in path:
            raise AssertionError(f"listed an excluded folder: {path}")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = [relative for relative, _ in walk(tmp_path, Excluder(["@eaDir"]))]
    assert found == ["a/IMG_1.jpg"]


def test_walk_lists_what_an_empty_excluder_or_none_lets_through(tmp_path: Path) -> None:
    for relative in ("a/IMG_1.jpg", "a/@eaDir/IMG_1.jpg/THUMB.jpg"):
        make(tmp_path, relative)
    expected = ["a/@eaDir/IMG_1.jpg/THUMB.jpg", "a/IMG_1.jpg"]
    assert [relative for relative, _ in walk(tmp_path)] == expected
    assert [relative for relative, _ in walk(tmp_path, Excluder([]))] == expected


def test_a_walk_of_a_subtree_applies_patterns_from_the_photo_root(tmp_path: Path) -> None:
    for relative in ("a/b/IMG_1.jpg", "a/c/IMG_2.jpg", "b/IMG_3.jpg"):
        make(tmp_path, relative)
    excluder = Excluder(["a/b", "/c"])
    found = [relative for relative, _ in walk(tmp_path / "a", excluder.below("a"))]
    assert found == ["c/IMG_2.jpg"]


def test_walk_never_yields_an_excluded_file(tmp_path: Path) -> None:
    for relative in ("IMG_1.jpg", "SYNOFILE_THUMB_M.jpg", "a/SYNOFILE_THUMB_XL.jpg"):
        make(tmp_path, relative)
    found = [relative for relative, _ in walk(tmp_path, Excluder(DEFAULT_EXCLUDES))]
    assert found == ["IMG_1.jpg"]


def test_walk_of_a_takeout_tree_yields_its_media_and_nothing_excluded(tmp_path: Path) -> None:
    facts = takeout_tree(tmp_path)
    found = dict(walk(tmp_path, Excluder(DEFAULT_EXCLUDES), wanted=is_media))
    assert set(found) == set(facts.contents)
    assert not set(found) & facts.excluded
    everything = {relative for relative, _ in walk(tmp_path, wanted=is_media)}
    assert facts.excluded <= everything  # the builder really made them


def test_walk_of_a_takeout_tree_by_default_yields_photos_only(tmp_path: Path) -> None:
    facts = takeout_tree(tmp_path)
    found = {relative for relative, _ in walk(tmp_path, Excluder(DEFAULT_EXCLUDES))}
    assert found == set(facts.contents) - facts.videos


def test_walk_of_an_rclone_tree_yields_every_copy(tmp_path: Path) -> None:
    facts = rclone_tree(tmp_path)
    found = {relative for relative, _ in walk(tmp_path, Excluder(DEFAULT_EXCLUDES), is_media)}
    assert found == set(facts.contents)
    assert facts.distinct_contents == 4 and len(found) == 18
    only_all = Excluder([*DEFAULT_EXCLUDES, "media/by-*"])
    assert {relative for relative, _ in walk(tmp_path, only_all, is_media)} == {
        relative for relative in facts.contents if not relative.startswith("media/by-")
    }


# ---------------------------------------------------------------------------- config


def write_config(tmp_path: Path, paths: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[paths]\nphotos = "p"\nclusters = "c"\nstate = "s"\n{paths}\n')
    return path


def test_the_shipped_config_lists_the_default_excludes() -> None:
    config = load_config(REPO / "config.toml")
    assert config.paths.exclude == DEFAULT_EXCLUDES
    assert config.paths.exclude_extra == ()


def test_exclude_extra_adds_to_the_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 'exclude_extra = ["media/by-*", "@eaDir"]'))
    assert config.paths.exclude == DEFAULT_EXCLUDES
    assert config.paths.exclude_patterns == (*DEFAULT_EXCLUDES, "media/by-*")


def test_exclude_replaces_the_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 'exclude = ["@eaDir"]\nexclude_extra = ["x"]'))
    assert config.paths.exclude_patterns == ("@eaDir", "x")
    assert load_config(write_config(tmp_path, "exclude = []")).paths.exclude_patterns == ()


def test_every_bad_exclude_is_reported_at_once_with_its_key_and_index(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'exclude = ["@eaDir", "", 5, "../up"]\nexclude_extra = "Trash"\n'
        '[watch]\nmode = "magic"',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert [problem.split(":")[0] for problem in problems] == [
        "paths.exclude[1]",
        "paths.exclude[2]",
        "paths.exclude_extra",
        "watch.mode",
    ]
    assert "must be a list of strings" in problems[2]


def test_patterns_that_parse_but_cannot_work_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'exclude = ["@eaDir", "../up", "**"]\nexclude_extra = ["a//b"]')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    keys = [problem.split(":")[0] for problem in caught.value.problems]
    assert keys == ["paths.exclude[1]", "paths.exclude[2]", "paths.exclude_extra[0]"]


# ---------------------------------------------------------------------------- the watcher


def is_photo(name: str) -> bool:
    return name.endswith(".jpg") and not name.startswith(".")


def test_the_settler_ignores_events_at_or_below_an_excluded_folder(tmp_path: Path) -> None:
    settler = Settler(str(tmp_path), is_photo, 1.0, Excluder(["@eaDir"]).excludes)
    for relative in ("a/@eaDir/IMG_1.jpg/T.jpg", "a/IMG_1.jpg"):
        make(tmp_path, relative)
    root = str(tmp_path)
    settler.add(DirCreatedEvent(f"{root}/a/@eaDir"), 0.0)
    settler.add(FileCreatedEvent(f"{root}/a/@eaDir/IMG_1.jpg/T.jpg"), 0.0)
    settler.add(FileCreatedEvent(f"{root}/a/IMG_1.jpg"), 0.0)
    settler.take(0.0)
    assert settler.take(1.0) == [Change("upsert", "a/IMG_1.jpg")]


def test_the_settler_reads_a_move_out_of_or_into_an_excluded_folder_as_new_or_gone(
    tmp_path: Path,
) -> None:
    settler = Settler(str(tmp_path), is_photo, 1.0, Excluder(["#recycle"]).excludes)
    make(tmp_path, "a/restored.jpg")
    root = str(tmp_path)
    settler.add(FileMovedEvent(f"{root}/#recycle/restored.jpg", f"{root}/a/restored.jpg"), 0.0)
    settler.add(FileMovedEvent(f"{root}/a/binned.jpg", f"{root}/#recycle/binned.jpg"), 0.0)
    assert settler.take(0.0) == [Change("delete", "a/binned.jpg")]
    assert settler.take(1.0) == [Change("upsert", "a/restored.jpg")]


def watched_inodes() -> set[int]:
    """Inodes every inotify instance of this process watches, from /proc/self/fdinfo."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
                lines = info.read().splitlines()
        except OSError:  # closed meanwhile
            continue
        for line in lines:
            if line.startswith("inotify wd:"):
                field = next(part for part in line.split() if part.startswith("ino:"))
                inodes.add(int(field[4:], 16))
    return inodes


def collect(feed: ChangeFeed, until: Callable[[list[Change]], bool]) -> list[Change]:
    changes: list[Change] = []
    deadline = time.monotonic() + 5.0
    while not until(changes) and time.monotonic() < deadline:
        changes += feed.get_batch(0.1)
    return changes + feed.get_batch(2 * REAL_SETTLE)


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 5.0
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def inode(path: Path) -> int:
    return os.stat(path).st_ino


def test_an_excluded_folder_costs_no_inotify_watch_and_makes_no_change(tmp_path: Path) -> None:
    for relative in ("album/IMG_1.jpg", "album/@eaDir/IMG_1.jpg/THUMB.jpg"):
        make(tmp_path, relative)
    excluded = Excluder(DEFAULT_EXCLUDES).excludes
    with ChangeFeed(tmp_path, "inotify", REAL_SETTLE, 0.1, is_photo, excluded=excluded) as feed:
        watched = watched_inodes()
        assert {inode(tmp_path), inode(tmp_path / "album")} <= watched
        assert not watched & {
            inode(tmp_path / "album/@eaDir"), inode(tmp_path / "album/@eaDir/IMG_1.jpg")
        }
        # Created later, an excluded folder is not watched either; a new album is.
        (tmp_path / "new" / "@eaDir" / "IMG_2.jpg").mkdir(parents=True)
        (tmp_path / "new" / "#recycle").mkdir()
        assert wait_for(lambda: inode(tmp_path / "new") in watched_inodes())
        make(tmp_path, "new/@eaDir/IMG_2.jpg/THUMB.jpg")
        make(tmp_path, "album/@eaDir/IMG_1.jpg/OTHER.jpg")
        make(tmp_path, "new/#recycle/gone.jpg")
        make(tmp_path, "new/IMG_2.jpg")
        changes = collect(feed, lambda found: Change("upsert", "new/IMG_2.jpg") in found)
        watched = watched_inodes()
    assert not watched & {
        inode(tmp_path / "new/@eaDir"),
        inode(tmp_path / "new/@eaDir/IMG_2.jpg"),
        inode(tmp_path / "new/#recycle"),
    }
    assert sorted(changes, key=str) == [Change("rescan", "new"), Change("upsert", "new/IMG_2.jpg")]


def test_without_exclusions_the_same_folders_are_watched(tmp_path: Path) -> None:
    make(tmp_path, "album/@eaDir/IMG_1.jpg/THUMB.jpg")
    with ChangeFeed(tmp_path, "inotify", REAL_SETTLE, 0.1, is_photo):
        assert inode(tmp_path / "album/@eaDir/IMG_1.jpg") in watched_inodes()


def test_polling_never_lists_an_excluded_folder_nor_reports_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(tmp_path, "album/@eaDir/IMG_1.jpg/THUMB.jpg")
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        listed.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(observers_module.os, "scandir", scandir)
    excluded = Excluder(["@eaDir"]).excludes
    with ChangeFeed(tmp_path, "polling", REAL_SETTLE, 0.1, is_photo, excluded=excluded) as feed:
        make(tmp_path, "album/@eaDir/IMG_1.jpg/NEW.jpg")
        make(tmp_path, "album/IMG_1.jpg")
        changes = collect(feed, bool)
    assert changes == [Change("upsert", "album/IMG_1.jpg")]
    assert any(path.endswith("/album") for path in listed)
    assert not [path for path in listed if "@eaDir" in path]


"""What a synced Google Photos folder really holds, sorted as a user expects: one link per
photo however many copies it has, videos with the photos, motion parts beside their stills,
taken times from EXIF, Takeout sidecars or mtimes, and NAS clutter never read."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from photocluster import library, photos
from photocluster.config import load_config
from photocluster.records import Taken
from photocluster.tree.names import dated_name
from tests.support.config import write_config
from tests.support.consistency import assert_consistent, linked
from tests.support.fakes import FakeEmbedder
from tests.support.takeout_tree import TreeFacts, rclone_tree, takeout_tree

RANK = {"exif": 0, "sidecar": 1, "mtime": 2}


def scan(base: Path, build: Callable[[Path], TreeFacts], extra: str = "") -> TreeFacts:
    facts = build(base / "photos")
    config = load_config(write_config(base, extra))
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
    return facts


def contents_taken(state: Path) -> dict[str, tuple[float, str]]:
    """content hash -> (taken_at, taken_source) as the catalog holds them."""
    conn = sqlite3.connect(f"file:{state / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT hash, taken_at, taken_source FROM contents").fetchall()
    finally:
        conn.close()
    return {row[0]: (row[1], row[2]) for row in rows}


def clustered(facts: TreeFacts) -> dict[str, set[str]]:
    """content hash -> the paths holding it, for every photo or video clustered on its own."""
    groups: dict[str, set[str]] = {}
    for path, digest in facts.contents.items():
        if path not in facts.companions:
            groups.setdefault(digest, set()).add(path)
    return groups


@pytest.mark.parametrize("build", [takeout_tree, rclone_tree], ids=["takeout", "rclone"])
def test_each_distinct_photo_and_video_is_linked_once_through_one_of_its_copies(
    tmp_path: Path, build: Callable[[Path], TreeFacts]
) -> None:
    facts = scan(tmp_path, build)
    tree = linked(tmp_path / "clusters", tmp_path / "photos")
    groups = clustered(facts)
    assert all(len(set(tree) & copies) == 1 for copies in groups.values())
    assert set(tree) <= set(facts.contents)  # nothing else: no sidecar, no clutter
    assert len(tree) == len(groups) + len(facts.companions)
    assert facts.videos & set(tree)  # videos are clustered with the photos
    assert_consistent(tmp_path)


def test_a_takeout_copy_in_a_year_folder_stands_for_its_album_copies(tmp_path: Path) -> None:
    facts = scan(tmp_path, takeout_tree)
    tree = linked(tmp_path / "clusters", tmp_path / "photos")
    albums = [p for p in tree if "/Photos from " not in p and p.count("/") > 1]
    year_copies = {facts.contents[p] for p in facts.contents if "/Photos from " in p}
    assert not [p for p in albums if facts.contents[p] in year_copies]


def test_names_with_a_counter_are_different_photos_and_each_is_linked(tmp_path: Path) -> None:
    facts = scan(tmp_path, takeout_tree)
    tree = linked(tmp_path / "clusters", tmp_path / "photos")
    counted = [p for p in facts.contents if "(1)" in p and "/Photos from " in p]
    assert counted
    for path in counted:
        plain = path.replace("(1)", "")
        assert facts.contents[path] != facts.contents[plain]
        assert path in tree and plain in tree


def test_excluded_folders_are_never_listed_or_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    for name in ("scandir", "listdir", "open", "lstat", "stat"):
        real: Any = getattr(os, name)

        def spy(path: Any = ".", *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            seen.append(os.fsdecode(path) if isinstance(path, str | bytes) else str(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, spy)
    facts = takeout_tree(tmp_path / "photos")
    seen.clear()  # the tree was built with these; from here on only the scan counts
    config = load_config(write_config(tmp_path))
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
    monkeypatch.undo()
    folders = {_excluded_folder(path) for path in facts.excluded}
    assert folders and not [p for p in seen if folders & set(p.split("/"))]
    assert not set(linked(tmp_path / "clusters", tmp_path / "photos")) & facts.excluded


@pytest.mark.parametrize("build", [takeout_tree, rclone_tree], ids=["takeout", "rclone"])
def test_taken_times_come_from_exif_then_a_sidecar_then_the_mtime(
    tmp_path: Path, build: Callable[[Path], TreeFacts]
) -> None:
    facts = scan(tmp_path, build)
    stored = contents_taken(tmp_path / "state")
    best: dict[str, tuple[float, str]] = {}  # a content takes the best its copies offer
    for path, (at, source) in facts.taken.items():
        digest = facts.contents[path]
        if digest not in best or RANK[source] < RANK[best[digest][1]]:
            best[digest] = (at, source)
    for digest, (at, source) in best.items():
        if digest in stored:
            assert stored[digest][1] == source, digest
            assert stored[digest][0] == pytest.approx(at, abs=1.0)
    assert {source for _, source in best.values()} == set(RANK) or build is rclone_tree


def test_link_names_start_with_the_date_taken(tmp_path: Path) -> None:
    facts = scan(tmp_path, takeout_tree)
    plan_names = _names(tmp_path)
    stored = contents_taken(tmp_path / "state")
    for name, path in plan_names.items():
        at, source = stored[facts.contents[path]] if path not in facts.companions else (0, "")
        if path in facts.companions:
            continue
        expected = dated_name(Taken(at, None, source), path.rpartition("/")[2])  # type: ignore[arg-type]
        assert name[:10] == expected[:10] and name.endswith(path.rpartition("/")[2])


def test_original_names_are_kept_when_asked(tmp_path: Path) -> None:
    scan(tmp_path, takeout_tree, "[tree]\ndated_names = false\n")
    assert all(name == path.rpartition("/")[2] for name, path in _names(tmp_path).items())


def test_a_motion_or_live_photo_video_sits_beside_its_still(tmp_path: Path) -> None:
    facts = scan(tmp_path, takeout_tree)
    tree = linked(tmp_path / "clusters", tmp_path / "photos")
    assert facts.companions
    for motion, still in facts.companions.items():
        assert tree[motion] == tree[still]
    counts = Counter(facts.contents[p] for p in tree if p not in facts.companions)
    assert all(count == 1 for count in counts.values())


def test_excluding_a_catalogued_folder_takes_its_photos_out_at_the_next_scan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    facts = scan(tmp_path, takeout_tree)
    album = "Summer trip"
    path = write_config(tmp_path)
    excluding = f'[paths]\nexclude_extra = ["{album}"]\n'
    path.write_text(path.read_text().replace("[paths]\n", excluding))
    config = load_config(path)
    caplog.set_level(logging.INFO, logger="photocluster")
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
    tree = linked(tmp_path / "clusters", tmp_path / "photos")
    assert not [path for path in tree if f"/{album}/" in path]
    assert "in excluded folders (paths.exclude) leave the clusters" in caplog.text
    assert len(tree) >= len(clustered(facts)) - 1  # its photos had year-folder copies


def _excluded_folder(path: str) -> str:
    """The folder of `path` that the default patterns exclude."""
    excluder = photos.Excluder(photos.DEFAULT_EXCLUDES)
    parts = path.split("/")
    return next(parts[i] for i in range(len(parts)) if excluder.excludes("/".join(parts[: i + 1])))


def _names(base: Path) -> dict[str, str]:
    from photocluster.tree import ClusterTree

    plan = ClusterTree(base / "clusters", base / "photos").read_plan()
    return {name: path for links in plan.values() for name, path in links.items()}

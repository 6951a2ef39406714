"""The pure parts of corrections: which names a folder may have, how pins and rejections steer
placement and name matching, and how a read tree is told apart from the catalog's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photocluster import steering
from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.steering import Fate
from photocluster.store import Marks, NewFile, Store
from photocluster.tree.edits import Edits, Entry, Folder, diff
from photocluster.tree.labels import check_label

OTHERS = {"cluster-001": "cluster-001", "cluster-002": "Beach"}


@pytest.mark.parametrize("good", ["Sea", "Zürich 2019", "猫", "👨‍👩‍👧 family", "a.b", "x" * 255])
def test_a_plain_folder_name_is_a_good_label(good: str) -> None:
    check_label(good, "cluster-003", OTHERS)


@pytest.mark.parametrize(("bad", "reason"), [
    ("", "visible character"), (" ", "visible character"), ("a/b", "'/'"), ("a\0b", "NUL"),
    (".", "'.' and '..'"), ("..", "'.' and '..'"), ("_x", "not clusters"), (".x", "not clusters"),
    ("é" * 128, "255 bytes"), ("a\nb", "control character"), ("a\u2028b", "line break"),
    ("caf\udce9", "not UTF-8"), ("Cluster-004", "daemon's own"), ("Beach", "called that"),
    ("BEACH", "same but for case"),
])
def test_a_name_that_cannot_be_a_folder_or_is_taken_is_refused_saying_why(
    bad: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        check_label(bad, "cluster-003", OTHERS)


def test_a_cluster_may_take_back_its_identity_or_change_the_case_of_its_own_name() -> None:
    check_label("cluster-002", "cluster-002", OTHERS)
    check_label("beach", "cluster-002", OTHERS)


def test_pinned_photos_keep_the_name_of_the_folder_they_were_put_in() -> None:
    # "A": 2 photos of its own and 8 a user moved in; k-means puts those 8 with "B"'s photos.
    previous = {**{p: "A" for p in range(1, 11)}, **{p: "B" for p in range(11, 21)}}
    labels = {1: 0, 2: 0, **{p: 1 for p in range(3, 21)}}
    pins = {p: "A" for p in range(3, 11)}
    assert steering.name_labels(previous, labels, {}, set(), 0.5)[0] != "A"  # without pins
    names = steering.name_labels(previous, labels, pins, set(), 0.5)
    assert names == {0: "A", 1: "B"}


def test_a_label_holding_only_pinned_photos_still_gets_a_name() -> None:
    previous = {1: "A", 2: "A", 3: "B"}
    names = steering.name_labels(previous, {1: 0, 2: 0, 3: 1}, {3: "A"}, {"cluster-007"}, 0.3)
    assert names[0] == "A" and names[1] == "cluster-008"


def test_a_retired_cluster_is_merged_split_or_dissolved() -> None:
    previous = {1: "A", 2: "A", 3: "A", 4: "B", 5: "B", 6: "B", 7: "C"}
    assignment = {1: "X", 2: "X", 3: "Y", 4: "X", 5: "Y", 6: "Z"}
    fates = steering.fates(previous, assignment, {"A", "B", "C"})
    assert fates["A"] == Fate("X", 2 / 3) and fates["A"].describe() == "merged into X"
    assert fates["B"].describe("Sea") == "split (the most of it, 33%, into X ('Sea'))"
    assert fates["C"] == Fate(None, 0.0) and fates["C"].describe() == "dissolved"


def test_placement_follows_a_pin_and_skips_a_refused_centroid() -> None:
    centroids = np.eye(3, 4, dtype=np.float32)  # (3, 4)
    vectors = np.array([[1, 0.5, 0, 0], [1, 0.5, 0, 0], [1, 0.5, 0, 0]], np.float32)
    chosen = steering.choose(vectors, [1, 2, 3], ["a", "b", "c"], centroids,
                             {2: "c"}, {3: {"a"}})
    assert chosen == {1: "a", 2: "c", 3: "b"}


# ---- reading the tree


def _listing(*names: str) -> dict[str, Entry]:
    return {name: Entry(True, (index, 0)) for index, name in enumerate(names)}


FOLDERS = {"cluster-001": "cluster-001", "cluster-002": "cluster-002"}
HOME: dict[str, str | None] = {"a1": "cluster-001", "a2": "cluster-001", "a3": "cluster-001",
                               "b1": "cluster-002", "b2": "cluster-002"}
MEMBERS = {"cluster-001": {"a1", "a2", "a3"}, "cluster-002": {"b1", "b2"}}


def _folder(*photos: str) -> Folder:
    return Folder({photo + ".jpg": photo for photo in photos})


def test_a_folder_holding_a_missing_clusters_photos_is_that_cluster_renamed() -> None:
    read = {"Beach": _folder("a1", "a2", "a3"), "cluster-002": _folder("b1", "b2")}
    edits = diff(FOLDERS, _listing("Beach", "cluster-002"), read, HOME, MEMBERS)
    assert edits == Edits(renames={"cluster-001": "Beach"})


def test_a_rename_wins_over_a_folder_made_again_under_the_old_name_before_it_was_noticed(
) -> None:
    read = {"Beach": _folder("a1", "a2"), "cluster-001": _folder("a3")}
    edits = diff(FOLDERS, _listing("Beach", "cluster-001", "cluster-002"), read, HOME, MEMBERS)
    assert edits.renames == {"cluster-001": "Beach"} and not edits.removals


def test_moved_and_deleted_links_are_pins_and_removals_but_a_users_own_folder_is_neither(
) -> None:
    read = {"cluster-001": _folder("a1", "b1"), "cluster-002": _folder(),
            "My picks": _folder("b2", "a2")}
    listing = {**_listing("cluster-001", "cluster-002", "My picks"), "x.txt": Entry(False, (9, 0))}
    edits = diff(FOLDERS, listing, read, HOME, MEMBERS)
    assert edits.pins == {"b1": "cluster-001"}
    assert edits.removals == {"a3": "cluster-001"}
    assert edits.foreign == ["x.txt", "My picks"] and not edits.renames


def test_a_cluster_folder_gone_without_a_successor_has_vanished() -> None:
    read = {"cluster-002": _folder("b1", "b2", "a1")}
    edits = diff(FOLDERS, _listing("cluster-002"), read, HOME, MEMBERS)
    assert edits.vanished == {"cluster-001"} and edits.pins == {"a1": "cluster-002"}
    assert not edits.removals


# ---- the catalog's side


def test_a_pin_to_a_dissolved_cluster_follows_its_heir_and_a_refused_cluster_loses_its_photo(
    tmp_path: Path,
) -> None:
    dim, vectors = 4, np.eye(4, dtype=np.float32)
    with Store(tmp_path / "state", dim=dim) as store:
        store.put_files([NewFile(f"p{i}.jpg", 1, 1, f"h{i}", vectors[i]) for i in range(4)], "fp")
        ids = [store.file(f"p{i}.jpg").content for i in range(4)]  # type: ignore[union-attr]
        info = ReclusterInfo(0.0, 4, 0, ElbowCurve((2,), (0.0,), 2, False))
        centres = {"A": vectors[0], "B": vectors[1], "C": vectors[2]}
        store.commit_recluster(zip(ids, [1] * 4, ["A", "B", "C", "C"], strict=True),
                               centres, info, 0)
        store.correct(Marks(pins={ids[0]: "A", ids[1]: "B"}, rejections={ids[3]: "C"}))
        moves = store.commit_recluster(((i, 1, "C") for i in ids), {"C": vectors[2]}, info, 0,
                                       heirs={"A": "C"})
        assert moves.moved == {ids[0]: ("A", "C")} and moves.dropped == {ids[1]: "B"}
        assert store.pins() == {ids[0]: "C"}
        assert store.without_cluster(ids) == {ids[3]}  # refused C: placed anew by the caller

"""The cluster tree: link planning, build + swap of generations, live links, overview images."""

from __future__ import annotations

import hashlib
import os
import posixpath
import random
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from photocluster.errors import StateError
from photocluster.records import ElbowCurve
from photocluster.tree import ClusterTree, LinkPlan, describe_changes, plan_tree
from photocluster.tree.overview import write_overview

NON_UTF8 = os.fsdecode(b"caf\xe9 \xff.jpg")  # not decodable: surrogate escapes
PHOTOS = [
    "2024/IMG_1.jpg",
    "2024/IMG_2.jpg",
    "2023/IMG_1.jpg",
    "trip/with space.jpg",
    "odd/new\nline.jpg",
    f"odd/{NON_UTF8}",
]
MEMBERS = {
    "cluster-001": ["2024/IMG_1.jpg", "2023/IMG_1.jpg", "odd/new\nline.jpg"],
    "cluster-002": ["2024/IMG_2.jpg", "trip/with space.jpg", f"odd/{NON_UTF8}"],
}


def tagged(photo: str, length: int = 8) -> str:
    """The disambiguated link name the contract prescribes."""
    stem, suffix = posixpath.splitext(posixpath.basename(photo))
    return f"{stem}~{hashlib.sha1(os.fsencode(photo)).hexdigest()[:length]}{suffix}"


def write_photos(root: Path, photos: Iterable[str]) -> None:
    for photo in photos:
        path = root / photo
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"photo:" + os.fsencode(photo))


def links_of(generation: Path) -> dict[str, dict[str, str]]:
    """{cluster: {link name: link target}} of every cluster directory of a generation."""
    return {
        cluster.name: {link.name: os.readlink(link) for link in cluster.iterdir()}
        for cluster in generation.iterdir()
        if not cluster.name.startswith("_")
    }


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every entry under root (root included): mode, mtime and the bytes of regular files."""
    entries = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(directory, name))
            info = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(info.st_mode) else None
            entries[os.path.relpath(path, root)] = (info.st_mode, info.st_mtime_ns, data)
    return entries


@pytest.fixture
def photo_root(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    write_photos(root, PHOTOS)
    return root


@pytest.fixture
def tree(tmp_path: Path, photo_root: Path) -> ClusterTree:
    return ClusterTree(tmp_path / "pictures" / "clusters", photo_root)


def build_and_swap(tree: ClusterTree, plan: LinkPlan) -> Path:
    generation = tree.build(plan)
    tree.swap(generation)
    return generation


def generation_names(tree: ClusterTree) -> set[str]:
    return set(os.listdir(tree.generations))


# plan_tree


def test_plan_tree_names_links_after_their_photos() -> None:
    plan = plan_tree({"cluster-001": ["2024/IMG_2.jpg", "trip/with space.jpg"]})
    assert plan == {
        "cluster-001": {"IMG_2.jpg": "2024/IMG_2.jpg", "with space.jpg": "trip/with space.jpg"}
    }


def test_plan_tree_gives_the_first_sorted_path_the_plain_name_and_hashes_the_others() -> None:
    plan = plan_tree({"c": ["c/IMG_1.jpg", "a/IMG_1.jpg", "b/IMG_1.jpg", "d/IMG_2.jpg"]})
    assert plan == {
        "c": {
            "IMG_1.jpg": "a/IMG_1.jpg",
            tagged("b/IMG_1.jpg"): "b/IMG_1.jpg",
            tagged("c/IMG_1.jpg"): "c/IMG_1.jpg",
            "IMG_2.jpg": "d/IMG_2.jpg",
        }
    }


def test_plan_tree_names_do_not_depend_on_order_or_other_members() -> None:
    photos = ["a/IMG_1.jpg", "b/IMG_1.jpg", "c/IMG_1.jpg", f"x/{NON_UTF8}", f"y/{NON_UTF8}"]
    expected = plan_tree({"c": photos})
    for seed in range(5):
        shuffled = random.Random(seed).sample(photos, len(photos))
        assert plan_tree({"c": shuffled}) == expected
    grown = plan_tree({"c": [*photos, "0/IMG_1.jpg"]})["c"]
    assert grown[tagged("b/IMG_1.jpg")] == "b/IMG_1.jpg"  # a newcomer renames only "a"
    assert grown["IMG_1.jpg"] == "0/IMG_1.jpg"


def test_plan_tree_handles_undecodable_names() -> None:
    links = plan_tree({"c": [f"x/{NON_UTF8}", f"y/{NON_UTF8}"]})["c"]
    assert links == {NON_UTF8: f"x/{NON_UTF8}", tagged(f"y/{NON_UTF8}"): f"y/{NON_UTF8}"}
    assert os.fsencode(tagged(f"y/{NON_UTF8}")).startswith(b"caf\xe9 \xff~")  # the raw bytes


def test_plan_tree_uses_a_longer_hash_when_a_real_file_holds_the_short_name() -> None:
    impostor = f"z/{tagged('b/IMG_1.jpg')}"
    links = plan_tree({"c": ["a/IMG_1.jpg", "b/IMG_1.jpg", impostor]})["c"]
    assert links[tagged("b/IMG_1.jpg")] == impostor
    assert links[tagged("b/IMG_1.jpg", 16)] == "b/IMG_1.jpg"


def test_plan_tree_keeps_disambiguated_long_names_within_name_max() -> None:
    long_name = "é" * 125 + ".jpg"  # 254 bytes
    links = plan_tree({"c": [f"a/{long_name}", f"b/{long_name}"]})["c"]
    assert all(len(os.fsencode(name)) <= 255 for name in links)
    assert all(name.endswith(".jpg") for name in links)


@pytest.mark.parametrize(
    "members",
    [
        {"_overview": ["a.jpg"]},
        {".hidden": ["a.jpg"]},
        {"a/b": ["a.jpg"]},
        {"": ["a.jpg"]},
        {"c": ["/etc/passwd"]},
        {"c": ["../outside.jpg"]},
        {"c": ["a//b.jpg"]},
        {"c": ["a.jpg"], "d": ["a.jpg"]},
    ],
)
def test_plan_tree_rejects_bad_names_and_a_photo_in_two_clusters(
    members: dict[str, list[str]],
) -> None:
    with pytest.raises(ValueError):
        plan_tree(members)


# build + swap


def test_links_are_relative_and_resolve_to_the_originals_through_cluster_root(
    tree: ClusterTree, photo_root: Path
) -> None:
    plan = plan_tree(MEMBERS)
    build_and_swap(tree, plan)
    assert os.readlink(tree.cluster_root) == ".clusters.generations/gen-000001"
    for cluster, links in plan.items():
        for name, photo in links.items():
            link = tree.cluster_root / cluster / name
            assert not os.path.isabs(os.readlink(link))
            assert os.path.realpath(link) == os.path.realpath(photo_root / photo)
            assert link.read_bytes() == b"photo:" + os.fsencode(photo)


def test_build_writes_the_plan_as_a_tree(tree: ClusterTree) -> None:
    plan = plan_tree({**MEMBERS, "cluster-003": []})
    generation = tree.build(plan)
    prefix = "../../../../photos/"
    assert links_of(generation) == {
        cluster: {name: prefix + photo for name, photo in links.items()}
        for cluster, links in plan.items()
    }


def test_read_plan_round_trips_build(tree: ClusterTree) -> None:
    plan = plan_tree({**MEMBERS, "cluster-003": []})
    build_and_swap(tree, plan)
    assert tree.read_plan() == plan


def test_read_plan_without_a_tree_is_empty(tree: ClusterTree) -> None:
    assert tree.live() is None
    assert tree.read_plan() == {}


def test_read_plan_ignores_overview_temp_names_and_foreign_files(tree: ClusterTree) -> None:
    plan = plan_tree(MEMBERS)
    generation = build_and_swap(tree, plan)
    (generation / "_overview").mkdir()
    (generation / "_overview" / "cluster-001.jpg").write_bytes(b"jpeg")
    os.symlink("../../../../photos/2024/IMG_2.jpg", generation / "cluster-001" / ".tmp-abc")
    os.symlink("/etc/hostname", generation / "cluster-001" / "foreign.jpg")
    os.symlink("../../../../photos/../../x.jpg", generation / "cluster-001" / "escape.jpg")
    (generation / "cluster-002" / "notes.txt").write_text("mine")
    assert tree.read_plan() == plan


def test_swap_keeps_exactly_the_previous_generation(tree: ClusterTree) -> None:
    plan = plan_tree(MEMBERS)
    build_and_swap(tree, plan)
    build_and_swap(tree, plan)
    assert generation_names(tree) == {"gen-000001", "gen-000002"}
    build_and_swap(tree, {})
    assert generation_names(tree) == {"gen-000002", "gen-000003"}
    assert os.readlink(tree.cluster_root) == ".clusters.generations/gen-000003"
    assert tree.read_plan() == {}


def test_swap_to_the_live_generation_deletes_nothing(tree: ClusterTree) -> None:
    build_and_swap(tree, {})
    live = build_and_swap(tree, {})
    tree.swap(live)
    assert generation_names(tree) == {"gen-000001", "gen-000002"}


def test_swap_removes_leftovers_of_crashed_builds_and_swaps(tree: ClusterTree) -> None:
    build_and_swap(tree, {})
    crashed = tree.generations / ".tmp-gen-000002-dead"
    (crashed / "cluster-001").mkdir(parents=True)
    os.symlink("../../../../photos/2024/IMG_1.jpg", crashed / "cluster-001" / "IMG_1.jpg")
    os.symlink(".clusters.generations/gen-000001", tree.cluster_root.parent / ".clusters.tmp-dead")
    build_and_swap(tree, plan_tree(MEMBERS))
    assert generation_names(tree) == {"gen-000001", "gen-000002"}
    assert not os.path.lexists(tree.cluster_root.parent / ".clusters.tmp-dead")


def test_a_failed_build_leaves_no_generation_behind(
    tree: ClusterTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_and_swap(tree, {})
    real_symlink, calls = os.symlink, []

    def failing_symlink(source: str, destination: str, **kwargs: Any) -> None:
        calls.append(destination)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_symlink(source, destination, **kwargs)

    monkeypatch.setattr(os, "symlink", failing_symlink)
    with pytest.raises(OSError):
        tree.build(plan_tree(MEMBERS))
    assert generation_names(tree) == {"gen-000001"}


def test_a_rebuild_carries_unchanged_links_over_as_hard_links(tree: ClusterTree) -> None:
    first = build_and_swap(tree, plan_tree(MEMBERS))
    moved = {"cluster-001": MEMBERS["cluster-001"][1:],
             "cluster-002": [*MEMBERS["cluster-002"], MEMBERS["cluster-001"][0]]}
    plan = plan_tree(moved)
    second = build_and_swap(tree, plan)
    assert tree.read_plan() == plan
    moved_link = second / "cluster-002" / "IMG_1.jpg"  # 2024/IMG_1.jpg, a new name there
    assert os.lstat(moved_link).st_nlink == 1
    for cluster, links in plan.items():
        for name in links:
            if second / cluster / name != moved_link:
                old, new = os.lstat(first / cluster / name), os.lstat(second / cluster / name)
                assert os.path.samestat(old, new) and new.st_nlink == 2, (cluster, name)


def test_a_build_without_carry_over_makes_every_link_new(tree: ClusterTree) -> None:
    plan = plan_tree(MEMBERS)
    build_and_swap(tree, plan)
    second = tree.build(plan, carry_over=False)  # the bench's reference: no hard links
    tree.swap(second)
    assert tree.read_plan() == plan
    assert all(os.lstat(link).st_nlink == 1 for link in second.glob("*/*"))


def test_a_carried_over_link_survives_the_deletion_of_its_generation(tree: ClusterTree) -> None:
    plan = plan_tree(MEMBERS)
    for _ in range(3):
        build_and_swap(tree, plan)
    assert generation_names(tree) == {"gen-000002", "gen-000003"}
    assert tree.read_plan() == plan
    assert all(os.path.exists(link) for link in (tree.cluster_root / "cluster-002").iterdir())


def test_a_live_name_pointing_elsewhere_is_not_carried_over(
    tree: ClusterTree, photo_root: Path
) -> None:
    generation = build_and_swap(tree, plan_tree(MEMBERS))
    prefix = "../../../../photos/"
    (generation / "cluster-001" / "IMG_1.jpg").unlink()
    os.symlink(prefix + "2024/IMG_2.jpg", generation / "cluster-001" / "IMG_1.jpg")
    (generation / "cluster-002" / "with space.jpg").unlink()
    (generation / "cluster-002" / "with space.jpg").write_text("the user's own file")
    plan = plan_tree(MEMBERS)
    second = tree.build(plan)
    assert links_of(second) == {
        cluster: {name: prefix + photo for name, photo in links.items()}
        for cluster, links in plan.items()
    }
    assert (generation / "cluster-002" / "with space.jpg").read_text() == "the user's own file"


def test_a_cluster_folder_replaced_by_a_symlink_is_not_followed_for_carry_over(
    tree: ClusterTree, tmp_path: Path
) -> None:
    generation = build_and_swap(tree, plan_tree(MEMBERS))
    elsewhere = tmp_path / "elsewhere"
    os.rename(generation / "cluster-001", elsewhere)  # same names and targets, another folder
    os.symlink(elsewhere, generation / "cluster-001")
    second = tree.build(plan_tree(MEMBERS))
    assert links_of(second) == links_of(generation)
    assert {os.lstat(link).st_nlink for link in elsewhere.iterdir()} == {1}


def test_a_build_creates_every_link_where_hard_links_are_refused(
    tree: ClusterTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_and_swap(tree, plan_tree(MEMBERS))
    calls = []

    def refused(source: str, destination: str, **kwargs: object) -> None:
        calls.append(source)
        raise PermissionError(1, "Operation not permitted")  # fs.protected_hardlinks, FAT

    monkeypatch.setattr(os, "link", refused)
    second = build_and_swap(tree, plan_tree(MEMBERS))
    assert len(calls) == 1  # no second try after a refusal
    assert tree.read_plan() == plan_tree(MEMBERS)
    link = Path("cluster-001") / "IMG_1.jpg"
    assert not os.path.samestat(os.lstat(first / link), os.lstat(second / link))


def test_swap_and_cleanup_never_touch_the_originals(tree: ClusterTree, photo_root: Path) -> None:
    before = snapshot(photo_root)
    first = build_and_swap(tree, plan_tree(MEMBERS))
    # traps for a cleanup that would follow links: a directory link inside an old generation,
    # a generation-named link and a crashed build, all pointing into the photo root
    os.symlink(photo_root, first / "cluster-001" / "all-photos")
    os.symlink(photo_root / "2024", tree.generations / "gen-000000")
    crashed = tree.generations / ".tmp-gen-000009-dead"
    crashed.mkdir()
    os.symlink(photo_root, crashed / "photos")
    for _ in range(3):
        build_and_swap(tree, plan_tree(MEMBERS))
    assert generation_names(tree) == {"gen-000003", "gen-000004"}
    assert snapshot(photo_root) == before


def test_links_follow_a_symlinked_photo_root(tmp_path: Path, photo_root: Path) -> None:
    os.symlink(photo_root, tmp_path / "mounted")
    tree = ClusterTree(tmp_path / "pictures" / "clusters", tmp_path / "mounted")
    build_and_swap(tree, plan_tree(MEMBERS))
    link = tree.cluster_root / "cluster-001" / "IMG_1.jpg"
    assert os.readlink(link) == "../../../../mounted/2023/IMG_1.jpg"
    assert os.path.realpath(link) == os.path.realpath(photo_root / "2023/IMG_1.jpg")
    assert tree.read_plan() == plan_tree(MEMBERS)


def test_refuses_a_real_directory_at_cluster_root(tree: ClusterTree) -> None:
    tree.cluster_root.mkdir(parents=True)
    (tree.cluster_root / "keep.txt").write_text("the user's")
    generation = tree.build(plan_tree(MEMBERS))
    with pytest.raises(StateError, match="not a symlink"):
        tree.swap(generation)
    with pytest.raises(StateError):
        tree.add_link("cluster-001", "2024/IMG_1.jpg")
    with pytest.raises(StateError):
        tree.read_plan()
    assert (tree.cluster_root / "keep.txt").read_text() == "the user's"


def test_refuses_a_foreign_symlink_at_cluster_root(tree: ClusterTree, tmp_path: Path) -> None:
    tree.cluster_root.parent.mkdir(parents=True)
    os.symlink(tmp_path, tree.cluster_root)
    with pytest.raises(StateError, match="not to a generation"):
        tree.read_plan()


def test_refuses_a_cluster_tree_inside_the_photo_root(photo_root: Path) -> None:
    with pytest.raises(StateError, match="outside each other"):
        ClusterTree(photo_root / "clusters", photo_root)


# live links


def test_add_link_starts_a_generation_when_none_is_live(tree: ClusterTree) -> None:
    assert tree.add_link("cluster-001", "2024/IMG_1.jpg") == "IMG_1.jpg"
    assert tree.live() == tree.generations / "gen-000001"
    assert tree.read_plan() == {"cluster-001": {"IMG_1.jpg": "2024/IMG_1.jpg"}}


def test_add_link_moves_a_photo_from_its_old_cluster(tree: ClusterTree) -> None:
    build_and_swap(tree, plan_tree(MEMBERS))
    assert tree.add_link("cluster-002", "2024/IMG_1.jpg") == "IMG_1.jpg"
    plan = tree.read_plan()
    assert "2024/IMG_1.jpg" not in plan["cluster-001"].values()
    assert plan["cluster-002"]["IMG_1.jpg"] == "2024/IMG_1.jpg"


def test_add_link_into_a_new_cluster_creates_its_folder(tree: ClusterTree) -> None:
    build_and_swap(tree, plan_tree(MEMBERS))
    tree.add_link("cluster-009", "trip/with space.jpg")
    plan = tree.read_plan()
    assert plan["cluster-009"] == {"with space.jpg": "trip/with space.jpg"}
    assert "with space.jpg" not in plan["cluster-002"]


def test_add_link_is_idempotent(tree: ClusterTree) -> None:
    plan = plan_tree(MEMBERS)
    generation = build_and_swap(tree, plan)
    disambiguated = tagged("2024/IMG_1.jpg")
    assert tree.add_link("cluster-001", "2024/IMG_1.jpg") == disambiguated
    assert tree.add_link("cluster-001", "2024/IMG_1.jpg") == disambiguated
    assert tree.read_plan() == plan
    assert sorted(os.listdir(generation / "cluster-001")) == sorted(plan["cluster-001"])


def test_add_link_disambiguates_when_another_photo_holds_the_name(
    tree: ClusterTree, photo_root: Path
) -> None:
    build_and_swap(tree, plan_tree({"cluster-001": ["2024/IMG_1.jpg"]}))
    name = tree.add_link("cluster-001", "2023/IMG_1.jpg")
    assert name == tagged("2023/IMG_1.jpg")
    link = tree.cluster_root / "cluster-001" / name
    assert os.path.realpath(link) == os.path.realpath(photo_root / "2023/IMG_1.jpg")
    assert tree.read_plan()["cluster-001"]["IMG_1.jpg"] == "2024/IMG_1.jpg"


def test_add_link_handles_undecodable_names(tree: ClusterTree, photo_root: Path) -> None:
    photo = f"odd/{NON_UTF8}"
    assert tree.add_link("cluster-001", photo) == NON_UTF8
    link = tree.cluster_root / "cluster-001" / NON_UTF8
    assert link.read_bytes() == b"photo:" + os.fsencode(photo)


@pytest.mark.parametrize("extra", [0, 40], ids=["small batch", "large batch"])
def test_remove_links_removes_every_link_to_those_photos(
    tree: ClusterTree, photo_root: Path, extra: int
) -> None:
    padding = [f"pad/{index}.jpg" for index in range(extra)]
    write_photos(photo_root, padding)
    plan = plan_tree({**MEMBERS, "cluster-003": padding})
    generation = build_and_swap(tree, plan)
    os.symlink("../../../../photos/2024/IMG_2.jpg", generation / "cluster-001" / "IMG_2.jpg")
    gone = {"2024/IMG_1.jpg", "2024/IMG_2.jpg", f"odd/{NON_UTF8}", *padding[:35]}
    tree.remove_links(gone)
    expected = {
        cluster: {name: photo for name, photo in links.items() if photo not in gone}
        for cluster, links in plan.items()
    }
    assert tree.read_plan() == expected


def test_remove_links_without_a_tree_does_nothing(tree: ClusterTree) -> None:
    tree.remove_links(["2024/IMG_1.jpg"])
    assert tree.live() is None


def test_live_operations_never_touch_the_originals(tree: ClusterTree, photo_root: Path) -> None:
    before = snapshot(photo_root)
    for photo in PHOTOS:
        tree.add_link("cluster-001", photo)
        tree.add_link("cluster-002", photo)
    tree.remove_links(PHOTOS)
    assert snapshot(photo_root) == before


# describe_changes


def test_describe_changes_lists_added_removed_and_changed_clusters() -> None:
    old = plan_tree({"cluster-001": ["a.jpg", "b.jpg", "c.jpg"], "cluster-002": ["d.jpg"]})
    new = plan_tree({"cluster-001": ["a.jpg", "b.jpg", "e.jpg"], "cluster-003": ["c.jpg", "d.jpg"]})
    assert describe_changes(old, new) == [
        "~ cluster-001: +1 -1 photos",
        "- cluster-002 (1 photos)",
        "+ cluster-003 (2 photos)",
        "2 photos change folder, 1 new, 0 no longer linked; 5 photos in 2 clusters",
    ]


def test_describe_changes_of_an_unchanged_plan_is_only_the_summary() -> None:
    plan = plan_tree(MEMBERS)
    assert describe_changes(plan, plan) == [
        "0 photos change folder, 0 new, 0 no longer linked; 6 photos in 2 clusters"
    ]


# write_overview

def read_image(path: Path) -> npt.NDArray[np.uint8]:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return np.asarray(image, np.uint8)


COLOURS = {"red.png": (255, 0, 0), "green.png": (0, 255, 0), "blue.png": (0, 0, 255)}


def test_write_overview_writes_a_contact_sheet_per_cluster_and_the_elbow_plot(
    tree: ClusterTree, photo_root: Path
) -> None:
    for name, rgb in COLOURS.items():
        size = 160 if name != "blue.png" else 90  # a thumbnail of another size is resized
        image = np.full((size, size, 3), rgb[::-1], np.uint8)  # BGR for cv2
        assert cv2.imwrite(str(photo_root / name), image)
    plan = plan_tree({"cluster-001": [*COLOURS, "missing.png"], "cluster-002": []})
    generation = tree.build(plan)

    def thumbnail(photo: str) -> npt.NDArray[np.uint8] | None:
        image = cv2.imread(str(photo_root / photo))
        return None if image is None else np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB

    curve = ElbowCurve((2, 3, 4, 5), (10.0, 6.0, 5.0, 4.5), 3, True)
    write_overview(generation, plan, thumbnail, curve)
    overview = generation / "_overview"
    assert sorted(os.listdir(overview)) == ["cluster-001.jpg", "cluster-002.jpg", "elbow.png"]
    sheet = read_image(overview / "cluster-001.jpg")
    assert sheet.shape == (40 + 160, 4 * 160, 3)  # 3 thumbnails (missing skipped), 4 columns
    # sorted photos: blue, green, red; a cell's centre keeps its colour (BGR, JPEG-lossy)
    assert np.allclose(sheet[120, 80], (255, 0, 0), atol=40)
    assert np.allclose(sheet[120, 240], (0, 255, 0), atol=40)
    assert np.allclose(sheet[120, 400], (0, 0, 255), atol=40)
    assert read_image(overview / "cluster-002.jpg").shape == (40, 640, 3)
    assert read_image(overview / "elbow.png").shape[0] > 100
    tree.swap(generation)
    assert tree.read_plan() == plan  # _overview is not a cluster


def test_write_overview_letterboxes_a_thumbnail_that_is_not_square(tmp_path: Path) -> None:
    plan = plan_tree({"cluster-001": ["wide.jpg", "tall.jpg"]})
    shapes = {"wide.jpg": (240, 320, 3), "tall.jpg": (320, 240, 3)}  # as thumbs.Thumbnails keeps

    def thumbnail(photo: str) -> npt.NDArray[np.uint8] | None:
        return np.full(shapes[photo], 255, np.uint8)

    write_overview(tmp_path, plan, thumbnail, None)
    sheet = read_image(tmp_path / "_overview" / "cluster-001.jpg")  # tall first: sorted
    tall, wide = sheet[40:200, 0:160], sheet[40:200, 160:320]
    assert tall[:, :15].max() < 40 and tall[:, 145:].max() < 40  # black bars left and right
    assert tall[:, 25:135].min() > 215
    assert wide[:15].max() < 40 and wide[145:].max() < 40  # black bars above and below
    assert wide[25:135].min() > 215


def test_write_overview_caps_a_sheet_at_48_thumbnails(tmp_path: Path) -> None:
    photos = [f"p/{index:03d}.jpg" for index in range(100)]
    plan = plan_tree({"cluster-001": photos})
    asked: list[str] = []

    def thumbnail(photo: str) -> npt.NDArray[np.uint8] | None:
        asked.append(photo)
        return np.zeros((160, 160, 3), np.uint8)

    write_overview(tmp_path, plan, thumbnail, None)
    assert len(asked) == 48 and asked[0] == photos[0] and asked[-1] > photos[90]
    sheet = read_image(tmp_path / "_overview" / "cluster-001.jpg")
    assert sheet.shape == (40 + 6 * 160, 8 * 160, 3)
    assert not (tmp_path / "_overview" / "elbow.png").exists()

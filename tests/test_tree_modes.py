"""The cluster tree is private whatever the umask: folders 0700, overview files 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from photocluster.records import ElbowCurve
from photocluster.tree import ClusterTree, plan_tree
from photocluster.tree.overview import write_overview
from tests.support.modes import mode_of


@pytest.fixture
def tree(tmp_path: Path) -> ClusterTree:
    root = tmp_path / "photos"
    (root / "2024").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "2024/c.jpg"):
        (root / name).write_bytes(b"photo")
    (tmp_path / "pictures").mkdir()
    return ClusterTree(tmp_path / "pictures" / "clusters", root)


def grey(photo: str) -> npt.NDArray[np.uint8]:
    return np.full((120, 160, 3), 128, np.uint8)


@pytest.mark.usefixtures("permissive_umask")
def test_generations_clusters_and_overview_are_private(tree: ClusterTree) -> None:
    plan = plan_tree({"cluster-001": ["a.jpg", "2024/c.jpg"], "cluster-002": ["b.jpg"]})
    generation = tree.build(plan)
    write_overview(generation, plan, grey, ElbowCurve((2, 3, 4), (9.0, 5.0, 4.0), 3, True))
    tree.swap(generation)
    overview = generation / "_overview"
    assert mode_of(tree.generations) == mode_of(generation) == 0o700
    assert {name: mode_of(generation / name) for name in ("cluster-001", "cluster-002")} == {
        "cluster-001": 0o700, "cluster-002": 0o700}
    assert mode_of(overview) == 0o700
    files = sorted(os.listdir(overview))
    assert files == ["cluster-001.jpg", "cluster-002.jpg", "elbow.png"]
    assert {name: mode_of(overview / name) for name in files} == dict.fromkeys(files, 0o600)
    assert stat.S_ISLNK(os.lstat(tree.cluster_root).st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_a_cluster_folder_added_to_the_live_tree_is_private(tree: ClusterTree) -> None:
    tree.swap(tree.build(plan_tree({"cluster-001": ["a.jpg"]})))
    tree.add_link("cluster-009", "b.jpg")
    live = tree.live()
    assert live is not None and mode_of(live / "cluster-009") == 0o700
    assert os.readlink(live / "cluster-009" / "b.jpg").endswith("/photos/b.jpg")


@pytest.mark.usefixtures("permissive_umask")
def test_a_world_readable_generations_folder_is_made_private_at_the_next_build(
    tree: ClusterTree,
) -> None:
    tree.generations.mkdir(mode=0o755)
    os.chmod(tree.generations, 0o755)
    tree.build(plan_tree({"cluster-001": ["a.jpg"]}))
    assert mode_of(tree.generations) == 0o700

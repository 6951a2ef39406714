"""Checks that disk, catalog, index and cluster tree agree, while the daemon runs or after."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from photocluster import fsutil, photos
from photocluster.store import Store
from photocluster.tree import ClusterTree
from tests.support.daemon import wait_until


def catalog_paths(state: Path) -> dict[str, str | None]:
    """photo path -> cluster, for photos with a vector (read-only, safe while running)."""
    if not (state / "catalog.sqlite").exists():
        return {}
    store = Store.open_readonly(state)
    try:
        return {r.path: r.cluster for r in store.files() if r.error is None}
    finally:
        store.close()


def linked(clusters: Path, photo_root: Path) -> dict[str, str]:
    """photo path -> cluster from the tree; raises on a photo linked twice."""
    plan = ClusterTree(clusters, photo_root).read_plan()
    result: dict[str, str] = {}
    for cluster, links in plan.items():
        for photo in links.values():
            assert photo not in result, f"{photo} is linked twice"
            result[photo] = cluster
    return result


def contents_on_disk(root: Path) -> dict[str, set[str]]:
    """content hash -> the paths holding it: identical copies are one photo (photos and videos
    outside the default excluded folders, as the daemon with a default config sees them)."""
    groups: dict[str, set[str]] = {}
    for rel, _ in photos.walk(root, photos.Excluder(photos.DEFAULT_EXCLUDES), photos.is_media):
        try:
            digest = hashlib.blake2b((root / rel).read_bytes(), digest_size=16).hexdigest()
        except OSError:  # vanished meanwhile
            continue
        groups.setdefault(digest, set()).add(rel)
    return groups


def all_linked(base: Path) -> bool:
    """Every distinct photo on disk is linked exactly once, through one of its copies."""
    try:
        tree = set(linked(base / "clusters", base / "photos"))
    except (OSError, AssertionError):
        return False
    groups = contents_on_disk(base / "photos").values()
    on_disk = set().union(*groups)
    return tree <= on_disk and all(len(tree & copies) == 1 for copies in groups)


def assert_consistent(base: Path) -> None:
    """With the daemon stopped: disk, catalog, index and tree agree; no dangling links."""
    on_disk = set().union(*contents_on_disk(base / "photos").values())
    with Store(base / "state") as store:
        records = [r for r in store.files() if r.error is None]
        members = [r for r in records if r.still is None]  # companions are not clustered
        fingerprint = members[0].fingerprint if members else ""
        ids, _ = store.vectors(fingerprint or "")
        assert {r.path for r in records} == on_disk
        assert sorted(int(i) for i in ids) == sorted({r.content for r in members if r.content})
        assert all(r.cluster is not None for r in members)
        assert sorted(store.index_ids().tolist()) == sorted(int(i) for i in ids)
        tree = linked(base / "clusters", base / "photos")
        labels = store.labels()  # a cluster a user named has its folder called by the name
        homes = {r.path: labels.get(r.cluster, r.cluster) for r in members if r.cluster}
        companions = {r.path: homes.get(r.still) for r in records if r.still is not None}
        canonical = {r.path: homes[r.path] for r in members if r.canonical}
        assert tree == {**canonical, **{p: c for p, c in companions.items() if c is not None}}
        assert len(canonical) == len({r.content for r in members})  # one link per content
    for link in (base / "clusters").glob("*/*"):
        if not link.parent.name.startswith("_"):
            assert link.exists(), f"dangling link {link}"
            assert not photos.is_candidate(link.name) or link.resolve().is_file()


def photos_on_disk(base: Path) -> set[str]:
    return {rel for rel, _ in photos.walk(base / "photos")}


def assert_tree_safe(base: Path) -> None:
    """No temp names in the live tree or beside it; every link is relative, resolves to a
    regular file inside the photo root, and is not itself inside the photo root."""
    root = os.path.realpath(base / "photos")
    live = ClusterTree(base / "clusters", base / "photos").live()
    assert live is not None, "no live cluster tree"
    generations = live.parent
    assert not [e for e in os.listdir(generations) if e.startswith(fsutil.TEMP_PREFIX)]
    assert not [e for e in os.listdir(base) if fsutil.TEMP_PREFIX in e]
    for cluster in os.scandir(live):
        if cluster.name.startswith("_"):
            continue
        for link in os.scandir(cluster.path):
            assert not link.name.startswith(fsutil.TEMP_PREFIX), f"temp name {link.path}"
            target = os.readlink(link.path)
            assert not os.path.isabs(target), f"absolute link {link.path}"
            resolved = os.path.realpath(link.path)
            assert resolved.startswith(root + "/"), f"{link.path} leaves the photo root"
            assert os.path.isfile(resolved) and not os.path.islink(resolved)


def wait_settled(base: Path, timeout: float = 60) -> None:
    """Every photo on disk is linked exactly once (the tree is derived from the catalog)."""
    wait_until(lambda: all_linked(base), timeout, "every photo on disk to be linked once")

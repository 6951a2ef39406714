"""Near-duplicate groups in the daemon: grouped by a recluster, joined as photos are placed,
shown best first in `_duplicates/`, counted by `status`; `photocluster similar`; the overview
pages of a scanned library.

Photos are 4 x 4 grids of random colours: to the fake model (tests.support.fakes.FakeEmbedder, the
colour layout) two grids are far apart, while a grid's resized or re-compressed copy (OpenCV)
keeps its layout and lands next to it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from photocluster import cli, config, library, locking, neardup, pages, status
from photocluster.config import load_config
from photocluster.library import Library
from photocluster.progress import Progress
from photocluster.store import Store
from photocluster.tree import ranked
from photocluster.tree.names import NAME_MAX
from photocluster.watch import Change
from tests.support import chromium, page_example
from tests.support.chromium import COLLECT, path_of
from tests.support.config import write_config
from tests.support.consistency import assert_consistent
from tests.support.fakes import FakeEmbedder
from tests.support.photos import tree_snapshot
from tests.support.reads import counting

UNDATED = "[tree]\ndated_names = false\n"
Folders = dict[str, dict[str, str]]  # group folder -> {link name -> photo path}


def pattern(seed: int, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 BGR: a 4 x 4 grid of random colours."""
    cells = np.random.default_rng(seed).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    return np.asarray(cv2.resize(cells, (size, size), interpolation=cv2.INTER_NEAREST))


def write_jpeg(path: Path, image: np.ndarray, quality: int = 90, year: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(encoded.tobytes())
    if year is not None:  # no EXIF: the mtime is its taken time
        stamp = (year - 1970) * 365.25 * 86_400
        os.utime(path, (stamp, stamp))
    return path


def smaller(image: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA))


def make_library(base: Path, count: int, extra: str = UNDATED) -> Path:
    """photos/f<i % 3>/p<i>.jpg of `count` distinct grids, taken in 2020; returns the config."""
    for index in range(count):
        write_jpeg(base / "photos" / f"f{index % 3}" / f"p{index:02d}.jpg", pattern(index),
                   year=2020)
    return write_config(base, extra)


def with_copies_of_p03(base: Path) -> None:
    """p03 (f0) gets a re-compressed copy of its size taken later, and a smaller one taken
    earlier: best first is p03, then the re-compression (as many pixels, newer), then the small
    one (fewer pixels, though the oldest)."""
    root = base / "photos"
    write_jpeg(root / "f1" / "p03 q30.jpg", pattern(3), quality=30, year=2021)
    write_jpeg(root / "f2" / "p03 small.jpg", smaller(pattern(3)), year=2019)


def group_folders(base: Path) -> Folders:
    """What `_duplicates/` of the live generation shows: folder -> {link -> photo path}."""
    folder = base / "clusters" / ranked.DUPLICATES
    root = os.path.realpath(base / "photos")
    return {group.name: {link.name: os.path.relpath(os.path.realpath(link), root)
                         for link in group.iterdir()}
            for group in sorted(folder.iterdir())} if folder.is_dir() else {}


def without_keys(folders: Folders) -> dict[str, dict[str, str]]:
    """The folders by name without their group key (" ~<key>")."""
    return {name.rpartition(" ~")[0]: links for name, links in folders.items()}


def scanned(base: Path, count: int = 12, extra: str = UNDATED) -> Path:
    path = make_library(base, count, extra)
    with_copies_of_p03(base)
    assert cli.main(["-c", str(path), "scan"]) == 0
    return path


def apply(lib: Library, *changes: Change) -> None:
    library.apply_changes(lib, list(changes), lambda n: Progress(n, "embedding", bar=False),
                          lambda: False)


P03_GROUP = {"p03": {"01 p03.jpg": "f0/p03.jpg", "02 p03 q30.jpg": "f1/p03 q30.jpg",
                     "03 p03 small.jpg": "f2/p03 small.jpg"}}


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeEmbedder:
    embedder = FakeEmbedder()
    monkeypatch.setattr(library, "vgg16_embedder", lambda config: embedder)
    return embedder


# ---- grouped by a recluster, shown, counted


def test_a_photo_and_its_resized_and_recompressed_copies_are_one_group_best_first(
    tmp_path: Path, fake_model: FakeEmbedder
) -> None:
    originals = make_library(tmp_path, 12).parent / "photos"
    with_copies_of_p03(tmp_path)
    before = tree_snapshot(originals)
    assert cli.main(["-c", str(tmp_path / "config.toml"), "scan"]) == 0

    assert without_keys(group_folders(tmp_path)) == P03_GROUP
    report = status.collect(tmp_path / "state")
    assert report["duplicates"] == {"groups": 1, "photos": 3}
    assert "near-duplicates: 1 group of 3 photos" in status.render(report)
    assert tree_snapshot(originals) == before  # nothing in the photo folder was touched
    for folder in [tmp_path / "clusters" / ranked.DUPLICATES,
                   *(tmp_path / "clusters" / ranked.DUPLICATES).iterdir()]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert_consistent(tmp_path)


def test_groups_are_off_at_threshold_zero(tmp_path: Path, fake_model: FakeEmbedder) -> None:
    scanned(tmp_path, extra=UNDATED + "[duplicates]\nthreshold = 0\n")
    assert group_folders(tmp_path) == {}
    assert status.collect(tmp_path / "state")["duplicates"] == {"groups": 0, "photos": 0}


def test_the_config_default_is_the_calibrated_threshold() -> None:
    assert config.DuplicatesConfig().threshold == neardup.SHIPPED_THRESHOLD


# ---- joined as photos are placed


def test_a_new_copy_joins_or_forms_its_group_when_placed_without_a_recluster(
    tmp_path: Path, fake_model: FakeEmbedder
) -> None:
    path = scanned(tmp_path)
    root = tmp_path / "photos"
    with library.open_library(load_config(path), "scan", lambda _: fake_model) as lib:
        last = lib.store.last_recluster()
        write_jpeg(root / "f2" / "p03 again.jpg", pattern(3), quality=50, year=2022)
        write_jpeg(root / "f0" / "p05 copy.jpg", pattern(5), quality=40, year=2022)
        apply(lib, Change("upsert", "f2/p03 again.jpg"), Change("upsert", "f0/p05 copy.jpg"))
        assert lib.store.last_recluster() == last  # no full pass ran

    assert without_keys(group_folders(tmp_path)) == {
        "p03": {"01 p03.jpg": "f0/p03.jpg", "02 p03 q30.jpg": "f1/p03 q30.jpg",
                "03 p03 again.jpg": "f2/p03 again.jpg", "04 p03 small.jpg": "f2/p03 small.jpg"},
        "p05": {"01 p05.jpg": "f2/p05.jpg", "02 p05 copy.jpg": "f0/p05 copy.jpg"},
    }
    assert status.collect(tmp_path / "state")["duplicates"] == {"groups": 2, "photos": 6}
    assert_consistent(tmp_path)


def test_a_full_pass_finds_the_groups_the_joins_made(
    tmp_path: Path, fake_model: FakeEmbedder
) -> None:
    path = scanned(tmp_path)
    root = tmp_path / "photos"
    with library.open_library(load_config(path), "scan", lambda _: fake_model) as lib:
        write_jpeg(root / "f0" / "p07 copy.jpg", smaller(pattern(7)), year=2022)
        write_jpeg(root / "f1" / "p03 again.jpg", pattern(3), quality=50, year=2022)
        apply(lib, Change("upsert", "f0/p07 copy.jpg"), Change("upsert", "f1/p03 again.jpg"))
        joined = group_folders(tmp_path)
        assert library.recluster_now(lib, force=True) == []
    assert len(joined) == 2 and group_folders(tmp_path) == joined  # keys included


def test_deleting_members_rewrites_their_group_and_a_pair_left_alone_loses_its_folder(
    tmp_path: Path, fake_model: FakeEmbedder
) -> None:
    path = scanned(tmp_path)
    root = tmp_path / "photos"
    with library.open_library(load_config(path), "scan", lambda _: fake_model) as lib:
        write_jpeg(root / "f0" / "p05 copy.jpg", pattern(5), quality=40, year=2022)
        apply(lib, Change("upsert", "f0/p05 copy.jpg"))
        assert len(group_folders(tmp_path)) == 2
        (root / "f2" / "p03 small.jpg").unlink()
        (root / "f0" / "p05 copy.jpg").unlink()
        apply(lib, Change("delete", "f2/p03 small.jpg"), Change("delete", "f0/p05 copy.jpg"))

    assert without_keys(group_folders(tmp_path)) == {
        "p03": {"01 p03.jpg": "f0/p03.jpg", "02 p03 q30.jpg": "f1/p03 q30.jpg"}}
    assert status.collect(tmp_path / "state")["duplicates"] == {"groups": 1, "photos": 2}


def _reads_joining_one_copy(base: Path, count: int) -> tuple[int, int]:
    path = make_library(base, count)
    path.write_text(path.read_text().replace("k_max = 6", "k_max = 2"))  # K reads K rows
    with library.open_library(load_config(path), "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        write_jpeg(base / "photos" / "f1" / "p00 copy.jpg", pattern(0), quality=40)
        with counting(lib.store._conn) as reads:
            apply(lib, Change("upsert", "f1/p00 copy.jpg"))
    assert len(group_folders(base)) == 1
    return reads.rows, reads.steps


def test_joining_a_new_photo_reads_the_same_at_any_library_size(tmp_path: Path) -> None:
    small_rows, small_steps = _reads_joining_one_copy(tmp_path / "small", 30)
    large_rows, large_steps = _reads_joining_one_copy(tmp_path / "large", 180)  # 6x the photos
    assert large_rows == small_rows
    assert large_steps <= small_steps + 5  # B-tree depth only


# ---- photocluster similar


def similar_json(config_file: Path, photo: Path, count: int,
                 capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert cli.main(["-c", str(config_file), "similar", str(photo), "-n", str(count),
                     "--json"]) == 0
    answer: dict[str, object] = json.loads(capsys.readouterr().out)
    return answer


def test_similar_ranks_a_library_photos_look_alikes_and_links_them_without_the_model(
    tmp_path: Path, fake_model: FakeEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scanned(tmp_path)
    embedded = fake_model.embedded
    with locking.hold(tmp_path / "state" / locking.STATE_LOCK, "run"):  # as while the daemon runs
        answer = similar_json(path, tmp_path / "photos" / "f0" / "p03.jpg", 3, capsys)

    found = answer["similar"]
    assert isinstance(found, list) and len(found) == 3
    assert {m["relative"] for m in found[:2]} == {"f1/p03 q30.jpg", "f2/p03 small.jpg"}
    assert [m["similarity"] for m in found] == sorted((m["similarity"] for m in found),
                                                       reverse=True)
    assert found[0]["path"] == str(tmp_path / "photos" / found[0]["relative"])
    assert answer["in_library"] == "f0/p03.jpg" and fake_model.embedded == embedded
    folder = Path(str(answer["folder"]))
    assert folder == tmp_path / "clusters" / ranked.SIMILAR / "p03.jpg"
    links = sorted(folder.iterdir())
    assert [link.name.split(" ", 1)[0] for link in links] == ["01", "02", "03"]
    assert [os.path.realpath(link) for link in links] == [
        os.path.realpath(tmp_path / "photos" / m["relative"]) for m in found]


def test_similar_embeds_a_photo_from_outside_and_knows_a_copy_by_its_bytes(
    tmp_path: Path, fake_model: FakeEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scanned(tmp_path)
    outside = write_jpeg(tmp_path / "elsewhere" / "p05 sent.jpg", pattern(5), quality=35)
    embedded = fake_model.embedded
    answer = similar_json(path, outside, 1, capsys)
    assert [m["relative"] for m in answer["similar"]] == ["f2/p05.jpg"]  # type: ignore[attr-defined]
    assert answer["in_library"] is None and fake_model.embedded == embedded + 1

    copy = tmp_path / "elsewhere" / "p03 copy.jpg"
    copy.write_bytes((tmp_path / "photos" / "f0" / "p03.jpg").read_bytes())
    answer = similar_json(path, copy, 2, capsys)
    assert {m["relative"] for m in answer["similar"]} == {  # type: ignore[attr-defined]
        "f1/p03 q30.jpg", "f2/p03 small.jpg"}  # the photo it copies is itself: left out
    assert fake_model.embedded == embedded + 1  # known by its hash: no model


def test_a_readers_search_agrees_with_the_writers_index_and_leaves_gone_photos_out(
    tmp_path: Path, fake_model: FakeEmbedder
) -> None:
    path = scanned(tmp_path)
    with library.open_library(load_config(path), "scan", lambda _: fake_model) as lib:
        (tmp_path / "photos" / "f1" / "p03 q30.jpg").unlink()
        apply(lib, Change("delete", "f1/p03 q30.jpg"))
        ids, vectors = lib.store.vectors(fake_model.fingerprint)  # (13, 512): the live ones
        written = lib.store.search(vectors, 20)
    with Store.open_readonly(tmp_path / "state") as reader:
        read = reader.search(vectors, 20)
    # the writer's index and the catalog hold the same float32 vectors; sums may round apart
    assert np.array_equal(read[1], written[1])
    assert np.allclose(read[0], written[0], atol=1e-3)
    assert sorted(set(read[1][read[1] >= 0].tolist())) == sorted(ids.tolist())
    assert (read[1][:, 13:] == -1).all()


def test_similar_prints_similarity_and_path_and_refuses_bad_input(
    tmp_path: Path, fake_model: FakeEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scanned(tmp_path)
    capsys.readouterr()
    assert cli.main(["-c", str(path), "similar", str(tmp_path / "photos/f0/p03.jpg"),
                     "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("linked into ")
    assert all(line.split("  ", 1)[1].startswith(str(tmp_path / "photos")) for line in lines[:2])
    with pytest.raises(SystemExit) as usage:
        cli.main(["-c", str(path), "similar", str(tmp_path / "photos/f0/p03.jpg"), "-n", "0"])
    assert usage.value.code == 2
    assert cli.main(["-c", str(path), "similar", str(tmp_path / "missing.jpg")]) == 1
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_bytes(b"hello")
    assert cli.main(["-c", str(path), "similar", str(not_a_photo)]) == 1


def test_the_next_generation_drops_similar_and_a_crashed_write_leaves_nothing_behind(
    tmp_path: Path, fake_model: FakeEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scanned(tmp_path)
    similar_json(path, tmp_path / "photos" / "f0" / "p03.jpg", 2, capsys)
    live = tmp_path / "clusters"
    (live / ranked.DUPLICATES / ".tmp-0123abcd").mkdir()  # a write cut short by a crash
    (live / ranked.DUPLICATES / ".tmp-0123abcd" / "01 p03.jpg").symlink_to("../../x")
    with library.open_library(load_config(path), "scan", lambda _: fake_model) as lib:
        lib.tree.remove_leftovers()
        assert sorted(os.listdir(live / ranked.DUPLICATES)) == sorted(group_folders(tmp_path))
        assert (live / ranked.SIMILAR / "p03.jpg").is_dir()
        assert library.recluster_now(lib, force=True) == []
    assert not (live / ranked.SIMILAR).exists()
    assert without_keys(group_folders(tmp_path)) == P03_GROUP


# ---- ranked folders


def test_a_ranked_folder_is_replaced_whole(tmp_path: Path) -> None:
    ranked.write_folder(tmp_path, "group", [("01 a.jpg", "../a.jpg"), ("02 b.jpg", "../b.jpg")])
    ranked.write_folder(tmp_path, "group", [("01 c.jpg", "../c.jpg")])
    assert {p.name: os.readlink(p) for p in (tmp_path / "group").iterdir()} == {
        "01 c.jpg": "../c.jpg"}
    assert os.listdir(tmp_path) == ["group"]  # no temp folder left behind
    with pytest.raises(ValueError):
        ranked.write_folder(tmp_path, "../escape", [])


def test_ranked_names_sort_in_rank_order_and_fit_a_file_name() -> None:
    names = ranked.ranked_names([f"x{i}.jpg" for i in range(120)])
    assert names[0] == "001 x0.jpg" and sorted(names) == names
    long = ranked.ranked_names(["é" * 200 + ".jpg"])[0]
    assert len(os.fsencode(long)) <= NAME_MAX and long.startswith("01 ") and long.endswith(".jpg")
    assert ranked.folder_name(".hidden.jpg", " ~7") == "_.hidden ~7"


# ---- the overview pages


def test_representatives_are_their_clusters_members_nearest_the_centroid(
    tmp_path: Path, fake_model: FakeEmbedder
) -> None:
    path = scanned(tmp_path)
    with library.open_library(load_config(path), "scan", lambda _: fake_model) as lib:
        names, centroids = lib.store.centroids()
        model = pages.page_model(lib.store, lib.tree.read_plan())
        ids, vectors = lib.store.vectors(fake_model.fingerprint)
        hashes = {r.content: r.content_hash for r in lib.store.files() if r.canonical}
        by_hash = {hashes[int(i)]: v for i, v in zip(ids, vectors, strict=True)}
    assert [c.folder for c in model.clusters] == names
    for cluster, centroid in zip(model.clusters, centroids, strict=True):
        members = {m.content for m in cluster.members}
        assert cluster.representatives and set(cluster.representatives) <= members
        nearest = max(members, key=lambda content: float(by_hash[content] @ centroid))
        assert cluster.representatives[0] == nearest
    assert len(model.duplicates) == 1 and len(model.duplicates[0]) == 3


@pytest.mark.slow
def test_a_scanned_librarys_overview_page_loads_with_every_thumbnail(
    tmp_path: Path, fake_model: FakeEmbedder
) -> None:
    if chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    scanned(tmp_path, count=12, extra="")  # dated link names, as shipped
    overview = tmp_path / "clusters" / "_overview"
    (tmp_path / "profile").mkdir()
    with chromium.Chromium(tmp_path / "profile") as browser:
        session = browser.open(page_example.file_url(overview / "index.html"))
        index = browser.evaluate(session, COLLECT)
        clusters = status.collect(tmp_path / "state")["clusters"]
        assert len(index["tiles"]) == len(clusters)
        assert index["images"] and all(image["loaded"] for image in index["images"]), index
        seen = 0
        for tile in index["tiles"]:
            browser.navigate(session, tile)
            page = browser.evaluate(session, COLLECT)
            assert all(image["loaded"] for image in page["images"]), page
            assert all(os.path.exists(path_of(link)) for link in page["links"])
            seen += len(page["images"])
        assert seen == 14  # every photo, each with its thumbnail
        browser.navigate(session, page_example.file_url(overview / "_duplicates.html"))
        page = browser.evaluate(session, COLLECT)
        assert len(page["images"]) == 3 and all(image["loaded"] for image in page["images"])

"""The overview pages: static HTML written into a generation, checked as parsed HTML and in a
real headless Chromium (skipped when Debian's `chromium` is not installed)."""

from __future__ import annotations

import errno
import os
import stat
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote_to_bytes

import cv2
import numpy as np
import pytest

from photocluster.progress import Stopping
from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.tree import OVERVIEW
from photocluster.tree.page import (
    DUPLICATES,
    INDEX,
    ClusterModel,
    Copy,
    Member,
    PageModel,
    Totals,
    page_name,
    write_pages,
)
from tests.support import chromium, page_example
from tests.support.chromium import COLLECT, path_of
from tests.support.page_example import Photo

HASHES = [f"{n:02x}" + "ab" * 31 for n in range(256)]  # 64 hex digits, like sha256
ODD_CLUSTER = '<i>Beach & "2019" #1?'
ODD_LINKS = ['say "cheese"\n#2?.jpg', os.fsdecode(b"caf\xe9 100%.jpg"), "plain.jpg"]
CURVE = ElbowCurve((2, 3, 4, 5), (9.0, 5.0, 4.0, 3.5), chosen_k=3, knee_found=True)
RECLUSTER = ReclusterInfo(at=1_700_000_000.0, photos=6, changed=2, elbow=CURVE)


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text of its <h1>."""

    def __init__(self, page: Path) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.heading = ""
        self._in_heading = False
        self.feed(page.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_heading = self._in_heading or tag == "h1"

    def handle_endtag(self, tag: str) -> None:
        self._in_heading = self._in_heading and tag != "h1"

    def handle_data(self, data: str) -> None:
        self.heading += data if self._in_heading else ""

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def hrefs(self) -> list[str]:
        return [str(attrs["href"]) for attrs in self.all("a")]


def model(clusters: dict[str, list[str]], duplicates: tuple[tuple[Copy, ...], ...] = (),
          recluster: ReclusterInfo | None = None) -> PageModel:
    """Clusters of link names; contents are numbered through HASHES in order."""
    numbers = iter(range(len(HASHES)))
    built = []
    for folder, links in clusters.items():
        members = tuple(Member(link, HASHES[next(numbers)], 1_600_000_000.0 + i * 86_400)
                        for i, link in enumerate(links))
        built.append(ClusterModel(folder, tuple(m.content for m in members[:6]), members))
    return PageModel(tuple(built), duplicates, recluster, 1_700_000_100.0, Totals(9, 1, 0))


@pytest.fixture
def thumbnails(tmp_path: Path) -> dict[str, Path]:
    """The daemon's thumbnails: a tiny file per content hash, in a state folder."""
    folder = tmp_path / "state" / "thumbs"
    folder.mkdir(parents=True)
    files = {}
    for content in HASHES:
        files[content] = folder / f"{content}.webp"
        files[content].write_bytes(content.encode())
    return files


def test_names_are_escaped_as_text_and_percent_encoded_from_their_bytes_in_links(
    tmp_path: Path, thumbnails: dict[str, Path]
) -> None:
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({ODD_CLUSTER: ODD_LINKS}), thumbnails.get)

    index = Tags(overview / INDEX)
    tile = next(href for href in index.hrefs() if href != DUPLICATES)
    assert unquote_to_bytes(tile) == os.fsencode(page_name(ODD_CLUSTER))
    page = Tags(overview / page_name(ODD_CLUSTER))
    assert page.heading == ODD_CLUSTER  # shown as text, not as an <i> tag
    assert not page.all("i")
    photos = [unquote_to_bytes(href) for href in page.hrefs() if href.startswith("../")]
    assert sorted(photos) == sorted(b"../" + os.fsencode(ODD_CLUSTER) + b"/" + os.fsencode(link)
                                    for link in ODD_LINKS)
    assert all(char not in href for href in page.hrefs() for char in '"#?\n ')


def test_photo_links_reach_the_originals_through_the_cluster_folder(tmp_path: Path) -> None:
    cluster_root = page_example.build(tmp_path, odd_library(), [], RECLUSTER)
    overview = cluster_root / OVERVIEW
    for cluster, photos in odd_library().items():
        page = Tags(overview / page_name(cluster))
        reached = {os.path.realpath(bytes(overview) + b"/" + unquote_to_bytes(href))
                   for href in page.hrefs() if href.startswith("../")}
        assert reached == {bytes(tmp_path / "photos") + b"/" + os.fsencode(photo.path)
                           for photo in photos}


def test_a_stop_while_pages_are_written_leaves_no_index_linking_to_missing_pages(
    tmp_path: Path, thumbnails: dict[str, Path]
) -> None:
    """At 1M photos the pages took 42 s: they pulse, and a stop ends them."""
    overview = tmp_path / "gen" / OVERVIEW
    pulses: list[int] = []

    def stop_at_the_first_page() -> None:
        pulses.append(1)
        raise Stopping("stop requested")

    with pytest.raises(Stopping):
        write_pages(overview, model({"cats": ["a.jpg"], "dogs": ["b.jpg"]}), thumbnails.get,
                    stop_at_the_first_page)
    assert pulses == [1]
    assert sorted(path.name for path in overview.glob("*.html")) == ["cats.html"]


def test_thumbnails_are_hard_links_to_the_daemons_files(
    tmp_path: Path, thumbnails: dict[str, Path]
) -> None:
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({"cats": ["a.jpg", "b.jpg"]}), thumbnails.get)

    for content in HASHES[:2]:
        placed = overview / "thumbs" / content[:2] / f"{content}.webp"
        assert placed.stat().st_ino == thumbnails[content].stat().st_ino


def test_thumbnails_are_private_copies_once_a_hard_link_is_refused(
    tmp_path: Path, thumbnails: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = []

    def refuse(source: Path, target: Path) -> None:
        attempts.append(source)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({"cats": ["a.jpg", "b.jpg", "c.jpg"]}), thumbnails.get)

    assert len(attempts) == 1  # the first refusal stands for the whole file system
    for content in HASHES[:3]:
        placed = overview / "thumbs" / content[:2] / f"{content}.webp"
        assert placed.read_bytes() == thumbnails[content].read_bytes()
        assert placed.stat().st_ino != thumbnails[content].stat().st_ino
        assert stat.S_IMODE(placed.stat().st_mode) == 0o600


def test_pages_and_their_folders_are_private(tmp_path: Path, thumbnails: dict[str, Path]) -> None:
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({"cats": ["a.jpg"], "dogs": ["b.jpg"]}), thumbnails.get)

    for path in [overview, *overview.rglob("*")]:
        wanted = 0o700 if path.is_dir() else 0o600
        if path.suffix != ".webp":  # a hard link keeps the daemon's own file's mode
            assert stat.S_IMODE(path.stat().st_mode) == wanted, path


def test_a_photo_without_a_thumbnail_is_a_placeholder_that_still_links_to_it(
    tmp_path: Path, thumbnails: dict[str, Path]
) -> None:
    missing = HASHES[1]
    thumbnails[HASHES[2]].unlink()  # vanished between the lookup and the link
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({"cats": ["a.jpg", "b.jpg", "c.jpg"]}),
                lambda content: None if content == missing else thumbnails[content])

    page = Tags(overview / "cats.html")
    assert [attrs["src"] for attrs in page.all("img")] == [f"thumbs/00/{HASHES[0]}.webp"]
    assert sorted(page.hrefs()) == ["../cats/a.jpg", "../cats/b.jpg", "../cats/c.jpg", INDEX]
    assert sorted(p.name for p in (overview / "thumbs").rglob("*.webp")) == [f"{HASHES[0]}.webp"]


def test_a_cluster_named_index_or_too_long_for_a_page_name_gets_a_page_of_its_own(
    tmp_path: Path, thumbnails: dict[str, Path]
) -> None:
    long_name = "x" * 254  # a valid folder name; with ".html" it exceeds NAME_MAX
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({"Index": ["a.jpg"], long_name: ["b.jpg"], "cats": ["c.jpg"]}),
                thumbnails.get)

    tiles = [unquote_to_bytes(h).decode() for h in Tags(overview / INDEX).hrefs()
             if h != DUPLICATES]
    assert len(set(tiles)) == 3 and "cats.html" in tiles
    assert all((overview / tile).exists() and tile != INDEX for tile in tiles)
    assert Tags(overview / page_name("Index")).heading == "Index"
    assert Tags(overview / page_name(long_name)).heading == long_name


def test_images_are_lazy_with_their_size_set_and_nothing_comes_from_elsewhere(
    tmp_path: Path, thumbnails: dict[str, Path]
) -> None:
    duplicates = ((Copy("cats", "b.jpg", HASHES[1]), Copy("dogs", "c.jpg", HASHES[2])),)
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({"cats": ["a.jpg", "b.jpg"], "dogs": ["c.jpg"]}, duplicates,
                                RECLUSTER), thumbnails.get)

    for page in overview.glob("*.html"):
        tags = Tags(page)
        assert tags.all("img"), page
        for image in tags.all("img"):
            assert image["loading"] == "lazy" and image["width"] and image["height"]
        assert not tags.all("script") and not tags.all("link") and not tags.all("iframe")
        for url in [str(a.get("src")) for a in tags.all("img")] + tags.hrefs():
            assert "://" not in url and not url.startswith("/"), url


def test_the_chosen_k_and_when_it_was_chosen_are_shown_beside_the_elbow_plot(
    tmp_path: Path, thumbnails: dict[str, Path]
) -> None:
    overview = tmp_path / "gen" / OVERVIEW
    write_pages(overview, model({"cats": ["a.jpg"]}, recluster=RECLUSTER), thumbnails.get)
    text = (overview / INDEX).read_text(encoding="utf-8")
    assert 'src="elbow.png"' in text and "K = 3" in text and "from k = 2 to 5" in text

    write_pages(overview, model({"cats": ["a.jpg"]}), thumbnails.get)
    assert "elbow.png" not in (overview / INDEX).read_text(encoding="utf-8")


@pytest.mark.parametrize("link", ["", ".", "..", "a/b.jpg", "a\0.jpg"])
def test_a_link_name_that_would_leave_its_cluster_folder_is_refused(link: str) -> None:
    with pytest.raises(ValueError, match="invalid link name"):
        Member(link, HASHES[0], None)


@pytest.mark.parametrize("content", ["", "../../etc", "ABCDEF0123", "abc"])
def test_a_content_hash_that_is_not_lower_case_hex_is_refused(content: str) -> None:
    with pytest.raises(ValueError, match="invalid content hash"):
        Member("a.jpg", content, None)


# ---- in a real browser

def odd_library() -> dict[str, list[Photo]]:
    """Three clusters whose folder and file names need escaping, one named "index"."""
    names = {
        ODD_CLUSTER: ["beach/sea #1?.jpg", 'beach/say "cheese"\n.jpg', "beach/100%.jpg"],
        os.fsdecode(b"caf\xe9 & co"): [os.fsdecode(b"caf\xe9/cr\xe8me.jpg"), "a/IMG_0001.jpg",
                                       "b/IMG_0001.jpg"],
        "index": ["misc/<script>alert(1)</script>.jpg", "misc/plain.jpg"],
    }
    colours = iter(range(0, 255, 255 // 8))
    return {cluster: [Photo(path, solid_jpeg(next(colours)), 1_600_000_000.0 + i * 86_400)
                      for i, path in enumerate(paths)] for cluster, paths in names.items()}


def solid_jpeg(level: int) -> bytes:
    image = np.full((48, 64, 3), (level, 255 - level, 128), np.uint8)  # (h, w, 3) BGR
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return bytes(encoded.tobytes())


@pytest.mark.slow
def test_pages_open_in_chromium_with_every_thumbnail_loaded_and_links_to_the_originals(
    tmp_path: Path,
) -> None:
    if chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    library = odd_library()
    duplicates = [[photos[0].path for photos in library.values()]]
    cluster_root = page_example.build(tmp_path / "library", library, duplicates, RECLUSTER)
    originals = {cluster: {bytes(tmp_path / "library" / "photos") + b"/" +
                           os.fsencode(photo.path) for photo in photos}
                 for cluster, photos in library.items()}
    (tmp_path / "profile").mkdir()
    with chromium.Chromium(tmp_path / "profile") as browser:
        session = browser.open(page_example.file_url(cluster_root / OVERVIEW / INDEX))
        index = browser.evaluate(session, COLLECT)
        assert len(index["tiles"]) == len(library)
        assert index["images"] and all(image["loaded"] for image in index["images"]), index
        for tile in index["tiles"]:  # each tile opens its cluster's page
            browser.navigate(session, tile)
            page = browser.evaluate(session, COLLECT)
            opened = os.fsdecode(path_of(tile).rsplit(b"/", 1)[1])
            cluster = next(name for name in library if page_name(name) == opened)
            assert all(image["loaded"] for image in page["images"]), page
            assert len(page["images"]) == len(library[cluster])
            reached = {os.path.realpath(path_of(link)) for link in page["links"]}
            assert reached == originals[cluster]
        browser.navigate(session, page_example.file_url(cluster_root / OVERVIEW / DUPLICATES))
        page = browser.evaluate(session, COLLECT)
        assert len(page["images"]) == 3 and all(image["loaded"] for image in page["images"])
        assert {os.path.realpath(path_of(link)) for link in page["links"]} == {
            bytes(tmp_path / "library" / "photos") + b"/" + os.fsencode(path)
            for path in duplicates[0]}

"""A small library with a live generation and its overview pages, for the browser test and
the screenshot in docs/: `python -m tests.support.page_example docs/overview.png` (setA photos).

Photos are written under <root>/photos, 320-px WebP thumbnails (as the daemon keeps them)
under <root>/state/thumbs, and a generation with its pages under <root>/clusters.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from photocluster.records import ElbowCurve, ReclusterInfo
from photocluster.tree import OVERVIEW, ClusterTree, plan_tree
from photocluster.tree.overview import write_overview
from photocluster.tree.page import ClusterModel, Copy, Member, PageModel, Totals, write_pages
from tests.support.chromium import Chromium

THUMB_EDGE = 320  # the daemon's thumbnails: longest edge
DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


@dataclass(frozen=True)
class Photo:
    path: str  # relative to the photo root
    data: bytes  # the encoded file
    taken: float | None


def build(root: Path, clusters: Mapping[str, Sequence[Photo]],
          duplicates: Sequence[Sequence[str]], recluster: ReclusterInfo | None) -> Path:
    """Write the library and a live generation with its pages; returns the cluster root.
    `duplicates`: groups of photo paths, best first."""
    photos = {photo.path: photo for members in clusters.values() for photo in members}
    contents = {path: _store(root, photo) for path, photo in photos.items()}
    plan = plan_tree({name: [photo.path for photo in members]
                      for name, members in clusters.items()})
    tree = ClusterTree(root / "clusters", root / "photos")
    generation = tree.build(plan)
    # only elbow.png: the contact sheets' cv2.putText crashes on a name that is not UTF-8
    write_overview(generation, {}, lambda path: None, recluster.elbow if recluster else None)
    model = _model(plan, photos, contents, duplicates, recluster)
    write_pages(generation / OVERVIEW, model, lambda content: _thumbnail(root, content))
    tree.swap(generation)
    return tree.cluster_root


def file_url(path: Path) -> str:
    return "file://" + quote(bytes(path))


def _store(root: Path, photo: Photo) -> str:
    """Write the photo and its thumbnail; returns its content hash."""
    target = root / "photos" / photo.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(photo.data)
    content = hashlib.sha256(photo.data).hexdigest()
    image = cv2.imdecode(np.frombuffer(photo.data, np.uint8), cv2.IMREAD_COLOR)  # (h, w, 3) BGR
    assert image is not None, f"{photo.path!r} is not a picture"
    scale = THUMB_EDGE / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    thumbnail = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".webp", thumbnail, [cv2.IMWRITE_WEBP_QUALITY, 80])
    assert ok, "WebP encoding failed"
    (root / "state" / "thumbs").mkdir(parents=True, exist_ok=True)
    _thumbnail(root, content).write_bytes(encoded.tobytes())
    return content


def _thumbnail(root: Path, content: str) -> Path:
    return root / "state" / "thumbs" / f"{content}.webp"


def _model(plan: Mapping[str, Mapping[str, str]], photos: Mapping[str, Photo],
           contents: Mapping[str, str], duplicates: Sequence[Sequence[str]],
           recluster: ReclusterInfo | None) -> PageModel:
    home = {path: (cluster, link) for cluster, links in plan.items()
            for link, path in links.items()}
    clusters = tuple(
        ClusterModel(cluster, tuple(contents[path] for path in list(links.values())[:6]),
                     tuple(Member(link, contents[path], photos[path].taken)
                           for link, path in links.items()))
        for cluster, links in plan.items()
    )
    groups = tuple(tuple(Copy(*home[path], contents[path]) for path in group)
                   for group in duplicates)
    totals = Totals(photos=len(photos), failed=2, unclustered=1)
    return PageModel(clusters, groups, recluster, time.time(), totals)


def _setA_library() -> tuple[dict[str, list[Photo]], list[list[str]], ReclusterInfo]:
    """Six categories of setA as renamed cluster folders, a few photos each."""
    names = {"airplane": "Airport 2019", "cat": "Cats", "dog": "Dogs in the park",
             "flower": "Garden", "fruit": "Market", "motorbike": "Bikes"}
    start = time.mktime((2019, 4, 1, 12, 0, 0, 0, 0, -1))
    clusters: dict[str, list[Photo]] = {}
    for index, (category, cluster) in enumerate(names.items()):
        files = sorted((DATASETS / "setA" / category).glob("*.jpg"))[:9 + index * 3]
        clusters[cluster] = [Photo(f"{category}/{file.name}", file.read_bytes(),
                                   start + (index * 40 + number) * 86_400)
                             for number, file in enumerate(files)]
    duplicates = [[photo.path for photo in clusters["Cats"][:3]],
                  [photo.path for photo in clusters["Garden"][2:4]]]
    ks = tuple(range(2, 13))
    inertias = tuple(100.0 / k + (4.0 if k < 6 else 0.0) for k in ks)
    curve = ElbowCurve(ks, inertias, chosen_k=6, knee_found=True)
    return clusters, duplicates, ReclusterInfo(time.time() - 3_600, 60, 4, curve)


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "docs/overview.png").resolve()
    if not (DATASETS / "setA").is_dir():
        print(f"{DATASETS / 'setA'} is missing")
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        clusters, duplicates, recluster = _setA_library()
        cluster_root = build(root / "library", clusters, duplicates, recluster)
        (root / "profile").mkdir()
        with Chromium(root / "profile") as browser:
            session = browser.open(file_url(cluster_root / OVERVIEW / "index.html"), 1000, 760)
            browser.evaluate(session, "Promise.all([...document.images].map(i => "
                             "(i.loading = 'eager', i.decode().catch(() => null))))")
            target.write_bytes(browser.screenshot(session))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

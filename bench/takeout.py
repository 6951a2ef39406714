"""A synced Google Photos folder: how much smaller its cluster folders are with copies merged,
and what videos beside photos cost to take in.

Copies: a Takeout-shaped tree (year folders, albums holding copies of year-folder photos, as an
export holds them) is sorted by `photocluster scan` with a fake embedder (the count of links
does not depend on the model); links are counted against files and against distinct photos.

Mixed library: the same camera photos alone, then with 1080p clips among them, taken in by
`scan` with the real model, wall time per run, median of several runs; the extra cost of a
video is given in photos (its frames' decode and three embeddings against one photo's).
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import cv2
import numpy as np

from bench.common import OUT, Section, machine, table, timed
from bench.throughput import WEIGHTS_CACHE, camera_photos
from photocluster import library
from photocluster.config import load_config
from photocluster.embedder import Embedder
from photocluster.tree import ClusterTree

COMMAND = ".venv/bin/python -m bench takeout"
SCRATCH = OUT / "takeout"
YEARS = (2019, 2020, 2021, 2022, 2023)
ALBUM_SHARE = 0.3  # of the photos are in albums too (some in two)


class Flat:
    """Vectors from 8x8 colour layout: enough to make clusters; the link count is the point."""

    fingerprint, input_size, dim, batch_size = "bench-flat", 32, 512, 32
    pad_rgb = (124, 116, 104)

    def embed(self, images: np.ndarray) -> np.ndarray:
        count = len(images)
        grid = images.reshape(count, 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(count, -1)
        features = np.zeros((len(images), self.dim), np.float32)
        features[:, : grid.shape[1]] = grid / 255.0 - 0.5
        features[:, -1] = 0.05
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return np.asarray(features / norms, np.float32)


def takeout_tree(root: Path, photos_per_year: int, seed: int = 0) -> int:
    """Year folders and albums as Takeout exports them; returns the number of distinct photos."""
    rng = np.random.default_rng(seed)
    year_files: list[Path] = []
    for year in YEARS:
        for index in range(photos_per_year):
            colour = rng.integers(0, 256, 3)
            noise = rng.normal(0, 8, (48, 64, 3))
            image = np.clip(colour + noise, 0, 255).astype(np.uint8)
            folder = root / "Takeout" / "Google Photos" / f"Photos from {year}"
            path = folder / f"IMG_{index:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image)
            year_files.append(path)
    albums = [root / "Takeout" / "Google Photos" / name for name in ("Trip", "Family", "Best of")]
    for path in year_files:
        if rng.random() < ALBUM_SHARE:
            for pick in rng.choice(len(albums), size=rng.integers(1, 3), replace=False):
                albums[pick].mkdir(parents=True, exist_ok=True)
                shutil.copy(path, albums[pick] / path.name)
    return len(year_files)


def sorted_counts(base: Path, embedder: Embedder) -> tuple[int, int]:
    """(files, links) after a scan of base/photos."""
    config_path = base / "config.toml"
    config_path.write_text('[paths]\nphotos = "photos"\nclusters = "clusters"\nstate = "state"\n'
                           "[clustering]\nk_max = 12\n", encoding="utf-8")
    config = load_config(config_path)
    with library.open_library(config, "scan", lambda _: embedder) as lib:
        library.scan(lib, show_bar=False)
        files = lib.store.count()
    plan = ClusterTree(base / "clusters", base / "photos").read_plan()
    return files, sum(len(links) for links in plan.values())


def copies_rows(quick: bool) -> tuple[list[list[object]], dict[str, float | str]]:
    per_year = 40 if quick else 400
    base = _fresh("copies")
    distinct = takeout_tree(base / "photos", per_year)
    files, links = sorted_counts(base, Flat())
    saved = 1 - links / files
    rows: list[list[object]] = [[files, distinct, files, links, f"{saved:.0%}"]]
    return rows, {"takeout_links_saved_share": round(saved, 3)}


def mixed_rows(quick: bool) -> tuple[list[list[object]], dict[str, float | str]]:
    from bench.media import clip  # the suite that makes the test clips

    photo_count, videos, runs = (8, 2, 1) if quick else (24, 4, 3)
    cameras = camera_photos(photo_count, 0)
    one_clip = clip("1080p, 10 s", cameras[0])
    alone, mixed = [], []
    for _ in range(runs):
        alone.append(_timed_scan(cameras, []))
        mixed.append(_timed_scan(cameras, [one_clip] * videos))
    per_photo = statistics.median(alone) / photo_count
    per_video = (statistics.median(mixed) - statistics.median(alone)) / videos
    rows: list[list[object]] = [[f"{photo_count} photos", f"{statistics.median(alone):.1f} s", "-"],
            [f"{photo_count} photos + {videos} 1080p clips", f"{statistics.median(mixed):.1f} s",
             f"{per_video / per_photo:.1f} photos a video"]]
    return rows, {"video_cost_in_photos": round(per_video / per_photo, 1)}


def _timed_scan(cameras: list[Path], clips: list[Path]) -> float:
    from photocluster.embedder import Vgg16Embedder
    from photocluster.weights import resolve

    base = _fresh("mixed")
    for path in cameras:
        shutil.copy(path, base / "photos" / path.name)
    for index, clip_path in enumerate(clips):
        shutil.copy(clip_path, base / "photos" / f"clip_{index}.mp4")
        with open(base / "photos" / f"clip_{index}.mp4", "ab") as extra:
            extra.write(bytes([index]))  # each its own content
    embedder = Vgg16Embedder(resolve("auto", "auto", WEIGHTS_CACHE), "float32", 16)
    return timed(lambda: sorted_counts(base, embedder))


def _fresh(name: str) -> Path:
    base = SCRATCH / name
    shutil.rmtree(base, ignore_errors=True)
    (base / "photos").mkdir(parents=True)
    return base


def run(quick: bool) -> Section:
    copies, figures = copies_rows(quick)
    mixed, more = mixed_rows(quick)
    figures.update(more)
    body = f"""A Takeout-shaped tree ({len(YEARS)} year folders; {ALBUM_SHARE:.0%} of the photos
also in one or two of three album folders, as an export holds them), sorted by `scan`:

{table(["files", "distinct photos", "links if every copy were linked", "links", "fewer links"],
       copies)}

Videos among photos, taken in by `scan` with the real model (float32), camera photos and
10-second 1080p clips, wall time, median of the runs; a video costs its three frames' seeks and
decodes plus three embeddings:

{table(["library", "scan", "a video costs"], mixed)}

Machine: {machine()}.
"""
    return Section("A synced Google Photos folder: copies and videos", COMMAND, body, figures)

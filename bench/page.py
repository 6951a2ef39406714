"""Page: writing a generation's overview pages for 100 000 photos in 20 clusters.

The model is synthetic: 20 clusters of 5 000 photos (6 representatives each), 2 000 groups of
near-duplicates, one name in 50 with characters to escape. The daemon's thumbnails are 64-byte
files in a scratch state folder on the same file system, so they are hard-linked as in the
daemon. References, measured in the same run: writing as many 64-byte files (what copying the
thumbnails would cost at the least) and hard-linking the thumbnails alone (the part no page
writer can skip). Scratch data in bench/out/page-<pid>/, deleted at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.common import OUT, Section, machine, table, timed
from photocluster.records import ElbowCurve, ReclusterInfo
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

PHOTOS, CLUSTERS, GROUPS = 100_000, 20, 2_000

Row = list[object]


def run(quick: bool) -> Section:
    photos, repeats = (20_000, 1) if quick else (PHOTOS, 3)
    scratch = OUT / f"page-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        model = synthetic_model(photos)
        thumbnails = _thumbnails(scratch / "state", model)
        times = _rounds(scratch, model, thumbnails, repeats)
        sizes = _page_sizes(scratch / "round-0-pages" / "_overview", model)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # after every round: see NOTES
    return _section(photos, repeats, times, sizes, quick)


def synthetic_model(photos: int) -> PageModel:
    """`photos` photos in CLUSTERS clusters, GROUPS duplicate groups of 2-3 photos."""
    per_cluster = photos // CLUSTERS
    clusters = tuple(_cluster(index, per_cluster) for index in range(CLUSTERS))
    groups = tuple(
        tuple(Copy(clusters[(group + n) % CLUSTERS].folder,
                   clusters[(group + n) % CLUSTERS].members[group].link,
                   clusters[(group + n) % CLUSTERS].members[group].content)
              for n in range(2 + group % 2))
        for group in range(min(GROUPS, per_cluster))
    )
    curve = ElbowCurve(tuple(range(2, 25)), tuple(1.0 / k for k in range(2, 25)), 20, True)
    return PageModel(clusters, groups, ReclusterInfo(time.time(), photos, 50, curve),
                     time.time(), Totals(photos, 12, 3))


def _cluster(index: int, size: int) -> ClusterModel:
    members = tuple(
        Member(_link(index, n), _content(index * size + n), 1_500_000_000.0 + n * 3_600.0)
        for n in range(size)
    )
    return ClusterModel(f"cluster-{index + 1:03d}", tuple(m.content for m in members[:6]),
                        members)


def _link(cluster: int, number: int) -> str:
    if number % 50 == 0:
        return f'Strand "{cluster}" #{number}? caf\u00e9.jpg'
    return f"IMG_{number:05d}.jpg"


def _content(number: int) -> str:
    return hashlib.sha256(number.to_bytes(8, "little")).hexdigest()


def _thumbnails(state: Path, model: PageModel) -> dict[str, Path]:
    """A tiny file per content, as the daemon's state folder holds them."""
    state.mkdir(parents=True)
    files = {}
    for cluster in model.clusters:
        for member in cluster.members:
            files[member.content] = state / f"{member.content}.webp"
            files[member.content].write_bytes(member.content.encode())
    return files


def _rounds(scratch: Path, model: PageModel, thumbnails: dict[str, Path],
            repeats: int) -> dict[str, list[float]]:
    """Each measure `repeats` times, the order rotated between rounds. Nothing is deleted
    until every round is done."""
    measures: dict[str, Callable[[Path], object]] = {
        "pages": lambda folder: write_pages(folder / "_overview", model, thumbnails.get),
        "plain": lambda folder: _write_plain(folder, list(thumbnails)),
        "links": lambda folder: _link_only(folder, thumbnails),
        "no_thumbs": lambda folder: write_pages(folder / "_overview", model, lambda _: None),
    }
    times: dict[str, list[float]] = {name: [] for name in measures}
    names = list(measures)
    for round_number in range(repeats):
        for name in names[round_number % len(names):] + names[:round_number % len(names)]:
            folder = scratch / f"round-{round_number}-{name}"
            folder.mkdir(parents=True)
            times[name].append(timed(partial(measures[name], folder)))
    return times


def _write_plain(folder: Path, contents: list[str]) -> None:
    # in hash order with str paths, as write_pages goes: one fan-out folder at a time
    base = _fan_out(folder, contents)
    for content in sorted(contents):
        with open(f"{base}/{content[:2]}/{content}.webp", "wb") as file:
            file.write(content.encode())


def _link_only(folder: Path, thumbnails: dict[str, Path]) -> None:
    base = _fan_out(folder, list(thumbnails))
    for content in sorted(thumbnails):
        os.link(thumbnails[content], f"{base}/{content[:2]}/{content}.webp")


def _fan_out(folder: Path, contents: list[str]) -> str:
    for prefix in sorted({content[:2] for content in contents}):
        (folder / prefix).mkdir()
    return os.fspath(folder)


def _page_sizes(overview: Path, model: PageModel) -> dict[str, int]:
    biggest = max(model.clusters, key=lambda cluster: cluster.size)
    return {"index": (overview / INDEX).stat().st_size,
            "cluster": (overview / page_name(biggest.folder)).stat().st_size,
            "duplicates": (overview / DUPLICATES).stat().st_size}


def _section(photos: int, repeats: int, times: dict[str, list[float]],
             sizes: dict[str, int], quick: bool) -> Section:
    median = {name: statistics.median(values) for name, values in times.items()}
    pages, plain, links = median["pages"], median["plain"], median["links"]
    per_cluster = photos // CLUSTERS
    rows: list[Row] = [
        [f"write_pages: {photos:,} photos, {CLUSTERS} clusters, thumbnails hard-linked",
         f"**{pages:.2f} s**", f"{photos:,} plain 64-byte files: "
         f"{plain:.2f} s", f"{pages / plain:.2f}x"],
        ["", "", f"hard links alone: {links:.2f} s", f"{pages / links:.2f}x"],
        ["write_pages without thumbnails (pages only, placeholders)",
         f"{median['no_thumbs']:.2f} s", "", ""],
        [f"page sizes: index / a {per_cluster:,}-photo cluster / duplicates "
         f"({min(GROUPS, per_cluster):,} groups)",
         f"{sizes['index'] / 1024:.0f} KiB / {sizes['cluster'] / 1024:.0f} KiB / "
         f"{sizes['duplicates'] / 1024:.0f} KiB", "", ""],
    ]
    every = "; ".join(f"{name} " + ", ".join(f"{value:.2f}" for value in values)
                      for name, values in times.items())
    body = (table(["measure", "result", "reference (same run)", "ratio"], rows)
            + "\n\n" + NOTES.format(repeats=repeats, every=every, machine=machine()))
    figures: dict[str, float | str] = {"page_100k_s": round(pages, 2),
                                       "page_vs_plain_files": round(pages / plain, 2),
                                       "page_vs_links": round(pages / links, 2)}
    command = "python -m bench page" + (" (quick)" if quick else "")
    return Section("Overview pages (issue 12)", command, body, figures)


NOTES = """\
Medians of {repeats} rounds, the order rotated between rounds; every round's files are kept
until all rounds are done (on this ext4 a deletion makes later file creations slow, see the
scale section). The thumbnails are 64-byte stand-ins: a hard link costs the same whatever the
file's size, while the plain-file reference is the least a copy could cost (the daemon's
320-px WebP thumbnails are tens of KiB each). Pages are written with fsync (one per page);
the thumbnail links and copies are not fsynced. Every round, s: {every}. Machine at the end:
{machine}.
"""

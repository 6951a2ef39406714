"""The overview pages of a generation: static HTML to open straight from the cluster folder.

`write_pages` writes into a generation's `_overview/`, before the generation is swapped in:

    index.html                       one tile per cluster, the totals, the elbow and its K
    <cluster>.html                   every photo of one cluster, each linking to its link in
                                     the cluster folder (`../<cluster>/<link name>`)
    _duplicates.html                 groups of near-duplicates, best first
    thumbs/<hash[:2]>/<hash>.webp    the daemon's thumbnails, hard-linked (copied only across
                                     file systems), so a generation costs no thumbnail bytes

Static files only (a little inline CSS, no script, nothing fetched from elsewhere), so the pages
work from file://, a Samba share of the cluster folder, or any static web server; the markup is
tree/page_html.py's. Pages, copies and folders are private (0600 / 0700). Pure inputs: the
caller reads the catalog and fills a PageModel.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from photocluster import fsutil
from photocluster.progress import Pulse, no_pulse
from photocluster.records import ReclusterInfo
from photocluster.tree.page_html import (
    DUPLICATES,
    INDEX,
    THUMBS,
    cluster_html,
    duplicates_html,
    index_html,
)
from photocluster.tree.plan import check_cluster

logger = logging.getLogger(__name__)

__all__ = [
    "DUPLICATES", "INDEX", "THUMBS", "ClusterModel", "Copy", "Member", "PageModel",
    "ThumbnailFile", "Totals", "page_name", "place_thumbnails", "write_pages",
]

ThumbnailFile = Callable[[str], Path | None]  # content hash -> the daemon's thumbnail, if any

_CONTENT = re.compile(r"[0-9a-f]{8,128}")  # a content hash: also a safe file name
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
_NAME_MAX = 255  # bytes in one file name
PULSE_EVERY = 10_000  # thumbnails (or catalog rows) between two pulses: well under a second


@dataclass(frozen=True)
class Member:
    """One photo of a cluster: its link in the cluster folder and its content."""

    link: str  # the link's file name inside the cluster folder
    content: str  # content hash, lower-case hex: names its thumbnail
    taken: float | None  # epoch seconds; None when the photo does not say

    def __post_init__(self) -> None:
        _check_link(self.link)
        _check_content(self.content)


@dataclass(frozen=True)
class ClusterModel:
    """One cluster folder as its page shows it."""

    folder: str  # the folder's name now (a user may have renamed it)
    representatives: tuple[str, ...]  # content hashes, nearest the centroid first
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        check_cluster(self.folder)
        for content in self.representatives:
            _check_content(content)

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def taken_range(self) -> tuple[float, float] | None:
        """(earliest, latest) taken time of the members that have one; None if none has."""
        taken = [member.taken for member in self.members if member.taken is not None]
        return (min(taken), max(taken)) if taken else None


@dataclass(frozen=True)
class Copy:
    """One photo of a group of near-duplicates, found through its cluster folder."""

    cluster: str
    link: str
    content: str

    def __post_init__(self) -> None:
        check_cluster(self.cluster)
        _check_link(self.link)
        _check_content(self.content)


@dataclass(frozen=True)
class Totals:
    photos: int  # photos with a vector
    failed: int  # files that could not be read as photos
    unclustered: int  # photos waiting for their cluster


@dataclass(frozen=True)
class PageModel:
    """Everything the pages show; built by the caller from the catalog."""

    clusters: tuple[ClusterModel, ...]
    duplicates: tuple[tuple[Copy, ...], ...]  # each group best first
    recluster: ReclusterInfo | None  # the last recluster: its elbow, K and time
    generated_at: float  # epoch seconds
    totals: Totals


def write_pages(overview_dir: Path, model: PageModel, thumbnail_file: ThumbnailFile,
                pulse: Pulse = no_pulse) -> None:
    """Write the pages and the thumbnails they show into `overview_dir` (a generation's
    `_overview/`, created if missing; the elbow plot `elbow.png` is tree/overview.py's).
    `pulse` is called after each page and every PULSE_EVERY thumbnails (what it raises ends
    the writing; index.html is written last).

    `thumbnail_file(content_hash)` is the daemon's thumbnail of that content, or None; a photo
    without one is shown as a placeholder that still links to it. Files already there under
    the same names are replaced (index.html last, so it never links to a page not yet written).
    Raises OSError when a page or thumbnail cannot be written (the generation is then unusable).
    """
    fsutil.private_dir(overview_dir)
    shown = place_thumbnails(overview_dir / THUMBS, _contents(model), thumbnail_file, pulse)
    pages = {cluster.folder: page_name(cluster.folder) for cluster in model.clusters}
    for cluster in model.clusters:
        _write(overview_dir / pages[cluster.folder], cluster_html(cluster, shown))
        pulse()
    _write(overview_dir / DUPLICATES, duplicates_html(model.duplicates, shown))
    _write(overview_dir / INDEX, index_html(model, pages, shown))
    logger.info("wrote the overview pages of %d clusters (%d thumbnails) into %r",
                len(model.clusters), len(shown), str(overview_dir))


def page_name(folder: str) -> str:
    """The page file of a cluster: `<folder>.html`, or a name from the folder's hash when that
    would replace the index (also on a case-blind share) or exceed NAME_MAX."""
    name = f"{folder}.html"
    if folder.casefold() == "index" or len(os.fsencode(name)) > _NAME_MAX:
        digest = hashlib.sha1(os.fsencode(folder), usedforsecurity=False).hexdigest()
        return f"_cluster-{digest[:16]}.html"  # "_" names are never clusters: no clash
    return name


# ---- thumbnails


def place_thumbnails(
    thumbs_dir: Path, contents: Iterable[str], thumbnail_file: ThumbnailFile,
    pulse: Pulse = no_pulse,
) -> frozenset[str]:
    """Hard-link each content's thumbnail to thumbs_dir/<hash[:2]>/<hash>.webp; from the first
    refusal on (another file system, no hard links there) copy instead. Returns the contents
    placed; one whose thumbnail is missing or vanished is left out (logged at DEBUG)."""
    placed: set[str] = set()
    folders: set[str] = set()
    linking = True
    # str paths: at 100k photos, pathlib's joins cost as much as the links themselves
    base = os.fspath(fsutil.private_dir(thumbs_dir))
    for count, content in enumerate(sorted(set(contents)), 1):
        if count % PULSE_EVERY == 0:
            pulse()
        source = thumbnail_file(content)
        if source is None:
            continue
        folder = f"{base}/{content[:2]}"
        if content[:2] not in folders:
            fsutil.private_dir(Path(folder))
            folders.add(content[:2])
        try:
            linking = _link_or_copy(source, f"{folder}/{content}.webp", linking)
        except FileNotFoundError:
            logger.debug("thumbnail %r vanished before it was linked", str(source))
            continue
        placed.add(content)
    return frozenset(placed)


def _link_or_copy(source: Path, target: str, linking: bool) -> bool:
    """Place `source` at `target`; returns whether the next one should still be linked."""
    if linking:
        try:
            os.link(source, target)
            return True
        except FileExistsError:  # an earlier run placed it: same hash, same picture
            return True
        except OSError as error:
            if error.errno not in _NO_LINK:
                raise
            logger.info("overview thumbnails are copied, not hard-linked: %s", error)
    # a lost copy is cosmetic: no fsync for each of thousands
    fsutil.atomic_write(Path(target), source.read_bytes(), durable=False)
    return False


def _contents(model: PageModel) -> Iterable[str]:
    for cluster in model.clusters:
        yield from cluster.representatives
        yield from (member.content for member in cluster.members)
    for group in model.duplicates:
        yield from (copy.content for copy in group)


def _write(path: Path, page: str) -> None:
    fsutil.atomic_write(path, page.encode("utf-8"))


def _check_link(name: str) -> None:
    # one name inside the cluster folder: "../<cluster>/<name>" must not lead anywhere else
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"invalid link name {name!r}")


def _check_content(content: str) -> None:
    if not _CONTENT.fullmatch(content):
        raise ValueError(f"invalid content hash {content!r}")

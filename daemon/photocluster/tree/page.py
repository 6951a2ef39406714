"""The overview pages of a generation: static HTML to open straight from the cluster folder.

`write_pages` writes into a generation's `_overview/`, before the generation is swapped in:

    index.html                       one tile per cluster, the totals, the elbow and its K
    <cluster>.html                   every photo of one cluster, each linking to its link in
                                     the cluster folder (`../<cluster>/<link name>`)
    _duplicates.html                 groups of near-duplicates, best first
    thumbs/<hash[:2]>/<hash>.webp    the daemon's thumbnails, hard-linked (copied only across
                                     file systems), so a generation costs no thumbnail bytes

Static files only (a little inline CSS, no script, nothing fetched from elsewhere), so the pages
work from file://, a Samba share of the cluster folder, or any static web server. Every name is
shown HTML-escaped and put into URLs percent-encoded from its bytes (`os.fsencode`): names may
hold newlines, quotes, `#`, `?` and bytes that are not UTF-8. Pages, copies and folders are
private (0600 / 0700). Pure inputs: the caller reads the catalog and fills a PageModel.
"""

from __future__ import annotations

import errno
import hashlib
import html
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from photocluster import fsutil
from photocluster.records import ReclusterInfo
from photocluster.tree.plan import check_cluster

logger = logging.getLogger(__name__)

INDEX, DUPLICATES, THUMBS = "index.html", "_duplicates.html", "thumbs"
ThumbnailFile = Callable[[str], Path | None]  # content hash -> the daemon's thumbnail, if any

_CONTENT = re.compile(r"[0-9a-f]{8,128}")  # a content hash: also a safe file name
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
_NAME_MAX = 255  # bytes in one file name
_CELL = 160  # width and height attributes of a thumbnail <img>: CSS scales, layout is reserved
_ELBOW_SIZE = (600, 400)  # tree/overview.py's elbow.png: a 6 x 4 in figure at 100 dpi
_STRIP = 6  # representatives shown on a tile


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


def write_pages(overview_dir: Path, model: PageModel, thumbnail_file: ThumbnailFile) -> None:
    """Write the pages and the thumbnails they show into `overview_dir` (a generation's
    `_overview/`, created if missing; the elbow plot `elbow.png` is tree/overview.py's).

    `thumbnail_file(content_hash)` is the daemon's thumbnail of that content, or None; a photo
    without one is shown as a placeholder that still links to it. Files already there under
    the same names are replaced (index.html last, so it never links to a page not yet written).
    Raises OSError when a page or thumbnail cannot be written (the generation is then unusable).
    """
    fsutil.private_dir(overview_dir)
    shown = place_thumbnails(overview_dir / THUMBS, _contents(model), thumbnail_file)
    pages = {cluster.folder: page_name(cluster.folder) for cluster in model.clusters}
    for cluster in model.clusters:
        _write(overview_dir / pages[cluster.folder], _cluster_page(cluster, shown))
    _write(overview_dir / DUPLICATES, _duplicates_page(model.duplicates, shown))
    _write(overview_dir / INDEX, _index_page(model, pages, shown))
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
    thumbs_dir: Path, contents: Iterable[str], thumbnail_file: ThumbnailFile
) -> frozenset[str]:
    """Hard-link each content's thumbnail to thumbs_dir/<hash[:2]>/<hash>.webp; from the first
    refusal on (another file system, no hard links there) copy instead. Returns the contents
    placed; one whose thumbnail is missing or vanished is left out (logged at DEBUG)."""
    placed: set[str] = set()
    folders: set[str] = set()
    linking = True
    # str paths: at 100k photos, pathlib's joins cost as much as the links themselves
    base = os.fspath(fsutil.private_dir(thumbs_dir))
    for content in sorted(set(contents)):
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


# ---- pages


def _index_page(model: PageModel, pages: dict[str, str], shown: frozenset[str]) -> str:
    clusters = sorted(model.clusters, key=lambda cluster: (cluster.folder.casefold(),
                                                           cluster.folder))
    tiles = "".join(_tile(cluster, pages[cluster.folder], shown) for cluster in clusters)
    groups = len(model.duplicates)
    body = (
        f"<header><h1>Photo clusters</h1><p class=meta>{_summary(model)}</p>"
        f'<nav><a href="{DUPLICATES}">Near-duplicates: {groups} '
        f"group{'' if groups == 1 else 's'}</a></nav></header>"
        f"<main><div class=tiles>{tiles}</div>{_elbow(model.recluster)}</main>"
    )
    return _document("Photo clusters", body)


def _summary(model: PageModel) -> str:
    totals = model.totals
    parts = [f"{_count(totals.photos, 'photo')} in {_count(len(model.clusters), 'cluster')}"]
    if totals.unclustered:
        parts.append(f"{totals.unclustered} waiting for a cluster")
    if totals.failed:
        parts.append(f"{totals.failed} not readable")
    parts.append(f"made {_moment(model.generated_at)}")
    return " · ".join(parts)


def _tile(cluster: ClusterModel, page: str, shown: frozenset[str]) -> str:
    picked = cluster.representatives[:_STRIP]
    count = max(n for n in (1, 3, _STRIP) if n <= max(len(picked), 1))  # fills the mosaic
    images = "".join(_image(content, shown, "") for content in picked[:count])
    images = images or _image("", shown, "")  # a cluster without representatives
    return (
        f'<a class=tile href="{_url(page)}"><div class="strip n{count}">{images}</div>'
        f"<div class=label><b>{_text(cluster.folder)}</b>"
        f"<span>{_count(cluster.size, 'photo')}{_span(cluster.taken_range)}</span></div></a>"
    )


def _elbow(recluster: ReclusterInfo | None) -> str:
    if recluster is None:
        return ""
    curve = recluster.elbow
    how = "at the knee of the curve" if curve.knee_found else "no clear knee: the fallback"
    width, height = _ELBOW_SIZE
    return (
        f"<section class=elbow><h2>How many clusters</h2><p class=meta>K = {curve.chosen_k}, "
        f"chosen {_moment(recluster.at)} from k = {min(curve.ks)} to {max(curve.ks)} ({how}); "
        f"{_count(recluster.changed, 'photo')} changed cluster then.</p>"
        f'<img src="elbow.png" width={width} height={height} loading=lazy '
        f'alt="k-means inertia against k, K = {curve.chosen_k} marked"></section>'
    )


def _cluster_page(cluster: ClusterModel, shown: frozenset[str]) -> str:
    members = sorted(cluster.members, key=lambda member: (member.taken is None,
                                                          member.taken or 0.0, member.link))
    folder = _url(cluster.folder)
    cells = "".join(
        f'<a href="../{folder}/{_url(member.link)}" title="{_caption(member)}">'
        f"{_image(member.content, shown, member.link)}</a>"
        for member in members
    )
    body = (
        f'<header><nav><a href="{INDEX}">← All clusters</a></nav>'
        f"<h1>{_text(cluster.folder)}</h1>"
        f"<p class=meta>{_count(cluster.size, 'photo')}{_span(cluster.taken_range)}</p></header>"
        f"<main><div class=grid>{cells}</div></main>"
    )
    return _document(cluster.folder, body)


def _caption(member: Member) -> str:
    taken = "" if member.taken is None else f" · {_day(member.taken)}"
    return f"{_text(member.link)}{taken}"


def _duplicates_page(groups: tuple[tuple[Copy, ...], ...], shown: frozenset[str]) -> str:
    rows = "".join(f"<section class=group>{_group(group, shown)}</section>" for group in groups)
    body = (
        f'<header><nav><a href="{INDEX}">← All clusters</a></nav><h1>Near-duplicates</h1>'
        f"<p class=meta>{_count(len(groups), 'group')}, each best first</p></header>"
        f"<main>{rows or '<p>No near-duplicates.</p>'}</main>"
    )
    return _document("Near-duplicates", body)


def _group(group: tuple[Copy, ...], shown: frozenset[str]) -> str:
    return "".join(
        f'<figure{" class=best" if rank == 0 else ""}>'
        f'<a href="../{_url(copy.cluster)}/{_url(copy.link)}">'
        f"{_image(copy.content, shown, copy.link)}</a>"
        f"<figcaption>{_text(copy.cluster)}<br>{_text(copy.link)}</figcaption></figure>"
        for rank, copy in enumerate(group)
    )


def _image(content: str, shown: frozenset[str], name: str) -> str:
    """A lazy thumbnail with its size set, or a placeholder when the content has none."""
    if content not in shown:
        return f"<span class=missing>{_text(name) or 'no thumbnail'}</span>"
    return (f'<img src="{THUMBS}/{content[:2]}/{content}.webp" width={_CELL} height={_CELL} '
            f'loading=lazy decoding=async alt="{_text(name)}">')


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang=en><head><meta charset=utf-8>'
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def _write(path: Path, page: str) -> None:
    fsutil.atomic_write(path, page.encode("utf-8"))


# ---- text


def _text(name: str) -> str:
    """A name as HTML text: bytes that are not UTF-8 and control characters shown as U+FFFD."""
    readable = os.fsencode(name).decode("utf-8", "replace")
    return html.escape(_CONTROL.sub("\ufffd", readable))


def _url(name: str) -> str:
    """A file name as one percent-encoded URL path segment (of its bytes, so any name works)."""
    return quote(os.fsencode(name), safe="")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}".replace(",", "\u202f")


def _span(taken: tuple[float, float] | None) -> str:
    if taken is None:
        return ""
    first, last = _day(taken[0]), _day(taken[1])
    return f" · {first}" if first == last else f" · {first} – {last}"


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(epoch))


def _moment(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def _check_link(name: str) -> None:
    # one name inside the cluster folder: "../<cluster>/<name>" must not lead anywhere else
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"invalid link name {name!r}")


def _check_content(content: str) -> None:
    if not _CONTENT.fullmatch(content):
        raise ValueError(f"invalid content hash {content!r}")


_STYLE = """
:root{color-scheme:light dark;--bg:#f3f3f1;--card:#fff;--ink:#1c1c1e;--muted:#6b6b70;
--line:#e2e2df;--link:#1d5fd1}
@media (prefers-color-scheme:dark){:root{--bg:#161618;--card:#232326;--ink:#ececee;
--muted:#9d9da3;--line:#34343a;--link:#7fb0ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
a{color:var(--link);text-decoration:none}
header{padding:18px 20px 6px}main{padding:8px 20px 28px}
h1{font-size:24px;margin:2px 0;overflow-wrap:anywhere}h2{font-size:18px;margin:28px 0 4px}
.meta{color:var(--muted);font-size:13px;margin:2px 0 6px}nav{font-size:14px;margin:4px 0}
.tiles{display:grid;gap:16px;grid-template-columns:repeat(auto-fill,minmax(230px,1fr))}
.tile{display:block;background:var(--card);border:1px solid var(--line);border-radius:12px;
overflow:hidden;color:inherit;box-shadow:0 1px 3px rgba(0,0,0,.07)}
.tile:hover{box-shadow:0 3px 12px rgba(0,0,0,.16)}
.strip{display:grid;gap:2px;grid-template-columns:repeat(3,1fr);background:var(--line)}
.strip.n1{grid-template-columns:1fr}
.strip>:first-child{grid-column:span 2;grid-row:span 2}.strip.n1>:first-child{grid-column:auto}
.label{display:flex;flex-direction:column;padding:8px 12px 10px}
.label b{overflow-wrap:anywhere}.label span{color:var(--muted);font-size:13px}
img,.missing{display:block;width:100%;height:auto;aspect-ratio:1;object-fit:cover;
background:var(--line)}
.missing{display:flex;align-items:center;justify-content:center;padding:6px;font-size:11px;
color:var(--muted);overflow:hidden;overflow-wrap:anywhere;text-align:center}
.grid{display:grid;gap:4px;grid-template-columns:repeat(auto-fill,minmax(118px,1fr))}
.grid a{display:block;border-radius:4px;overflow:hidden}
.elbow img{max-width:600px;aspect-ratio:auto;background:#fff;border-radius:8px}
.group{display:flex;flex-wrap:wrap;gap:10px;padding:12px 0;border-bottom:1px solid var(--line)}
figure{margin:0;width:150px}figure img,figure .missing{border-radius:6px}
figcaption{font-size:12px;color:var(--muted);margin-top:4px;overflow-wrap:anywhere}
.best img,.best .missing{outline:3px solid var(--link);outline-offset:-3px}
.best figcaption::before{content:"best · ";color:var(--link);font-weight:600}
@media (max-width:520px){header{padding:12px 12px 4px}main{padding:6px 12px 20px}
.tiles{grid-template-columns:1fr 1fr;gap:10px}.grid{grid-template-columns:repeat(3,1fr)}
.label{padding:6px 8px}figure{width:calc(50% - 5px)}}
""".replace("\n", "")

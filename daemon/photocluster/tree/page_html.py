"""The overview pages as HTML: pure functions from tree/page.py's model to page text.

Static markup with a little inline CSS and no script. Every name is shown HTML-escaped (bytes
that are not UTF-8 and control characters as U+FFFD) and put into URLs percent-encoded from its
bytes (`os.fsencode`), so newlines, quotes, `#`, `?` and any bytes survive the round trip to
the file they name. Thumbnails are lazy `<img>`s with their size set, so a 5 000-photo page
lays out at once and loads what is scrolled to.
"""

from __future__ import annotations

import html
import os
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from photocluster.records import ReclusterInfo

if TYPE_CHECKING:  # page.py imports this module to render its model
    from photocluster.tree.page import ClusterModel, Copy, Member, PageModel

INDEX, DUPLICATES, THUMBS = "index.html", "_duplicates.html", "thumbs"  # in _overview/

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CELL = 160  # width and height attributes of a thumbnail <img>: CSS scales, layout is reserved
_ELBOW_SIZE = (600, 400)  # tree/overview.py's elbow.png: a 6 x 4 in figure at 100 dpi
_MOSAIC = (6, 3, 1)  # representatives on a tile: a 2 x 2 cover and 5 small, a cover and 2, one


def index_html(model: PageModel, pages: dict[str, str], shown: frozenset[str]) -> str:
    """The index: a tile per cluster (linking to `pages[folder]`), the totals, the elbow.
    `shown`: the contents whose thumbnails are in place; the others get a placeholder."""
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
    count = next(n for n in _MOSAIC if n <= max(len(cluster.representatives), 1))
    images = "".join(_image(content, shown, "") for content in cluster.representatives[:count])
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
    how = ("at the knee of the curve" if curve.knee_found
           else "no clear knee: the point farthest below the chord")
    width, height = _ELBOW_SIZE
    return (
        f"<section class=elbow><h2>How many clusters</h2><p class=meta>K = {curve.chosen_k}, "
        f"chosen {_moment(recluster.at)} from k = {min(curve.ks)} to {max(curve.ks)} ({how}); "
        f"{_count(recluster.changed, 'photo')} changed cluster then.</p>"
        f'<img src="elbow.png" width={width} height={height} loading=lazy '
        f'alt="k-means inertia against k, K = {curve.chosen_k} marked"></section>'
    )


def cluster_html(cluster: ClusterModel, shown: frozenset[str]) -> str:
    """Every photo of the cluster, oldest first, each linking to `../<folder>/<link>`."""
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


def duplicates_html(groups: tuple[tuple[Copy, ...], ...], shown: frozenset[str]) -> str:
    """A row per group of near-duplicates, best first, each linking to its photo."""
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

"""`photocluster status`: a read-only view of the catalog, safe while the daemon runs.

The daemon publishes its live progress (backlog, state) to a small JSON file in the state
directory; everything else is read from the catalog without taking the writer lock.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from photocluster import fsutil, vanish
from photocluster.locking import state_holder
from photocluster.records import ReclusterInfo
from photocluster.store import CATALOG, Store

DAEMON_STATUS = "daemon-status.json"
FAILURES_SHOWN = 100  # the rest are counted: a library with 10 000 broken files stays readable
PINS_SHOWN = 100
_EMPTY = {"photos": 0, "files": 0, "copies": {"photos": 0, "extra_files": 0}, "failed": 0,
          "unclustered": 0, "clusters": {}, "labels": {}, "dates": {}, "last_recluster": None,
          "failures": [], "pinned": 0, "pins": [], "rejections": 0,
          "duplicates": {"groups": 0, "photos": 0}, "held_deletions": []}


def collect(state_dir: Path) -> dict[str, Any]:
    """Everything `status` shows, as plain data (also the `--json` output). Every figure is one
    aggregate query: it answers as fast for a million photos as for a hundred."""
    report: dict[str, Any] = {"state": str(state_dir), "daemon": _daemon(state_dir)}
    if not (state_dir / CATALOG).exists():
        return {**report, **_EMPTY}
    store = Store.open_readonly(state_dir)
    try:
        counts, last = store.content_counts(), store.last_recluster()
        groups, grouped = store.duplicate_counts()
        sizes = store.cluster_sizes()
        report.update(
            photos=counts["contents"],
            files=store.count() - counts["failed"],
            copies={"photos": counts["with_copies"], "extra_files": counts["extra_files"]},
            failed=counts["failed"],
            unclustered=counts["unclustered"],
            clusters=sizes,
            dates={name: list(span) for name, span in store.cluster_dates(sizes).items()},
            last_recluster=None if last is None else _recluster(last),
            failures=[{"path": p, "reason": r} for p, r in store.failures(FAILURES_SHOWN)],
            duplicates={"groups": groups, "photos": grouped},
            held_deletions=held_deletions(store),
        )
        report.update(_marks(store))
    finally:
        store.close()
    return report


def _marks(store: Store) -> dict[str, Any]:
    """The names users gave clusters (identity -> label) and their pins."""
    labels = store.labels()
    pins = [{"path": path, "cluster": cluster, "folder": labels.get(cluster, cluster)}
            for path, cluster in store.pinned_paths(PINS_SHOWN)]
    return {"labels": labels, "pins": pins, **store.mark_counts()}


def held_deletions(store: Store) -> list[dict[str, Any]]:
    """Deletions waiting for `photocluster confirm-deletions` (see `vanish`), folder order."""
    return [{"folder": folder, "photos": photos}
            for folder, photos in sorted(vanish.holds(store).items())]


def _recluster(last: ReclusterInfo) -> dict[str, Any]:
    return {
        "at": last.at,
        "k": last.k,
        "photos": last.photos,
        "changed": last.changed,
        "knee_found": last.elbow.knee_found,
        "elbow": dict(zip(last.elbow.ks, last.elbow.inertias, strict=True)),
    }


def publish(state_dir: Path, fields: dict[str, Any]) -> None:
    """The daemon's side: replace the live-status file atomically; private like every other
    state file. Not fsynced: it is rewritten at every change of state and means nothing after
    a power cut."""
    data = json.dumps({**fields, "updated": time.time()}).encode()
    fsutil.atomic_write(state_dir / DAEMON_STATUS, data, durable=False)


def _daemon(state_dir: Path) -> dict[str, Any] | None:
    holder = state_holder(state_dir)
    if holder is None:
        return None
    live: dict[str, Any] = {"pid": holder.pid, "role": holder.role}
    with contextlib.suppress(OSError, ValueError):  # not written yet, or mid-replace
        live.update(json.loads((state_dir / DAEMON_STATUS).read_text(encoding="utf-8")))
    return live


def render(report: dict[str, Any]) -> str:
    """The human form of `collect`'s report."""
    copies = report["copies"]
    lines = [
        f"photos: {report['photos']} ({report['files']} files), {report['unclustered']} waiting "
        f"for a cluster, {report['failed']} failed",
        f"copies: {copies['photos']} photos have extra copies ({copies['extra_files']} files),"
        " linked once",
        _render_duplicates(report["duplicates"]),
    ]
    daemon = report["daemon"]
    if daemon is None:
        lines.append("daemon: not running")
    else:
        backlog = daemon.get("backlog", 0)
        lines.append(
            f"daemon: pid {daemon['pid']} ({daemon['role']}), "
            f"{daemon.get('state', 'running')}, backlog {backlog}"
        )
        if daemon.get("error"):
            lines.append(f"  problem: {printable(str(daemon['error']))} (retrying)")
        if daemon.get("watch_problem"):
            lines.append(f"  watching: {printable(str(daemon['watch_problem']))}")
    lines += [f"waiting: {printable(vanish.describe(held['folder'], held['photos']))}"
              for held in report["held_deletions"]]
    lines += _render_recluster(report["last_recluster"])
    lines.append(f"clusters: {len(report['clusters'])}")
    dates, labels = report.get("dates", {}), report.get("labels", {})
    lines += [f"  {_cluster(name, labels)}: {size}{_span(dates.get(name))}"
              for name, size in report["clusters"].items()]
    lines += _render_pins(report)
    if report["failures"]:
        lines.append("failures:")
        lines += [f"  {printable(f['path'])}: {f['reason']}" for f in report["failures"]]
        if report["failed"] > len(report["failures"]):
            lines.append(f"  ... and {report['failed'] - len(report['failures'])} more")
    return "\n".join(lines)


def _cluster(identity: str, labels: dict[str, str]) -> str:
    """"Beach (cluster-007)" for a cluster a user named, else its identity."""
    label = labels.get(identity)
    return identity if label is None else f"{printable(label)} ({identity})"


def _render_pins(report: dict[str, Any]) -> list[str]:
    pinned, refused = report.get("pinned", 0), report.get("rejections", 0)
    if not pinned and not refused:
        return []
    lines = [f"pinned: {pinned} photos; {refused} photos kept out of a cluster"]
    lines += [f"  {printable(pin['path'])} -> {printable(pin['folder'])}"
              for pin in report.get("pins", [])]
    if pinned > len(report.get("pins", [])):
        lines.append(f"  ... and {pinned - len(report['pins'])} more")
    return lines
def _render_duplicates(found: dict[str, int]) -> str:
    groups = found["groups"]
    return (f"near-duplicates: {groups} group{'' if groups == 1 else 's'} of "
            f"{found['photos']} photos (in _duplicates/)")


def _span(span: list[float] | None) -> str:
    """ " (2021-03-02 .. 2023-07-14)": when a cluster's photos were taken."""
    if not span:
        return ""
    first, last = (time.strftime("%Y-%m-%d", time.localtime(at)) for at in span)
    return f" ({first})" if first == last else f" ({first} .. {last})"


def printable(text: str) -> str:
    """One printable line for a path: a name may hold newlines, control characters and bytes
    that are not UTF-8 (surrogate escapes), which would break or forge lines, or the print."""
    if text.isprintable():
        return text
    return ascii(text)[1:-1]


def _render_recluster(last: dict[str, Any] | None) -> list[str]:
    if last is None:
        return ["last recluster: never"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
    knee = "" if last["knee_found"] else " (no knee found; fallback)"
    curve = ", ".join(f"{k}:{inertia:.1f}" for k, inertia in last["elbow"].items())
    return [
        f"last recluster: {when}, K={last['k']}{knee}, {last['photos']} photos, "
        f"{last['changed']} changed folder",
        f"  elbow (k:inertia): {curve}",
    ]

"""`photocluster status`: a read-only view of the catalog, safe while the daemon runs.

The daemon publishes its live progress (backlog, state) to a small JSON file in the state
directory; everything else is read from the catalog without taking the writer lock.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from photocluster import fsutil
from photocluster.locking import state_holder
from photocluster.store import Store

DAEMON_STATUS = "daemon-status.json"


def collect(state_dir: Path) -> dict[str, Any]:
    """Everything `status` shows, as plain data (also the `--json` output)."""
    report: dict[str, Any] = {"state": str(state_dir), "daemon": _daemon(state_dir)}
    if not (state_dir / "catalog.sqlite").exists():
        report.update(
            photos=0, failed=0, unclustered=0, clusters={}, last_recluster=None, failures=[]
        )
        return report
    store = Store.open_readonly(state_dir)
    try:
        records = store.photos()
        last = store.last_recluster()
    finally:
        store.close()
    failed = [r for r in records if r.error is not None]
    sizes = Counter(r.cluster for r in records if r.cluster is not None and r.error is None)
    report.update(
        photos=len(records) - len(failed),
        failed=len(failed),
        unclustered=sum(1 for r in records if r.cluster is None and r.error is None),
        clusters=dict(sorted(sizes.items())),
        last_recluster=None
        if last is None
        else {
            "at": last.at,
            "k": last.k,
            "photos": last.photos,
            "changed": last.changed,
            "knee_found": last.elbow.knee_found,
            "elbow": dict(zip(last.elbow.ks, last.elbow.inertias, strict=True)),
        },
        failures=[{"path": r.path, "reason": r.error} for r in failed],
    )
    return report


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
    lines = [
        f"photos: {report['photos']} sorted, {report['unclustered']} waiting for a cluster, "
        f"{report['failed']} failed"
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
            lines.append(f"  problem: {_printable(str(daemon['error']))} (retrying)")
    lines += _render_recluster(report["last_recluster"])
    lines.append(f"clusters: {len(report['clusters'])}")
    lines += [f"  {name}: {size}" for name, size in report["clusters"].items()]
    if report["failures"]:
        lines.append("failures:")
        lines += [f"  {_printable(f['path'])}: {f['reason']}" for f in report["failures"]]
    return "\n".join(lines)


def _printable(text: str) -> str:
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

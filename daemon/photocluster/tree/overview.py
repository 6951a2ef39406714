"""The overview of a generation: a contact sheet per cluster and the elbow plot.

Image rendering (OpenCV, matplotlib) lives here, apart from the link tree; each file is
written atomically (0600) into the generation's `_overview/` (0700) before the generation is
swapped in.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from photocluster import fsutil
from photocluster.photos import fit_square
from photocluster.progress import Pulse, no_pulse
from photocluster.records import ElbowCurve
from photocluster.tree.plan import OVERVIEW, LinkPlan

Thumbnail = npt.NDArray[np.uint8]  # (h, w, 3) uint8 RGB
THUMBNAIL_EDGE = 160  # pixels of one contact-sheet cell; thumbnails are asked for at this edge
_COLUMNS, _SHEET_CAP, _HEADER = 8, 48, 40  # contact sheet geometry
_LETTERBOX = (0, 0, 0)


def write_overview(
    generation: Path,
    plan: LinkPlan,
    thumbnail: Callable[[str], Thumbnail | None],
    elbow: ElbowCurve | None,
    pulse: Pulse = no_pulse,
) -> None:
    """Write generation/_overview/<cluster>.jpg (a contact sheet of at most 48 thumbnails) for
    each cluster and, given the last recluster's curve, elbow.png. `thumbnail(photo)` returns
    (h, w, 3) uint8 RGB of any size and aspect (letterboxed into a THUMBNAIL_EDGE cell: a stored
    320-px thumbnail serves as it is) or None (that photo is skipped). Each file is replaced
    atomically. `pulse` is called after each sheet; what it raises (Stopping) ends the overview
    there.
    """
    directory = fsutil.private_dir(generation / OVERVIEW)
    if elbow is not None:  # first: cheap, and kept when the sheets are cut short
        fsutil.atomic_write(directory / "elbow.png", _elbow_png(elbow), fsutil.PRIVATE_FILE)
    for cluster, links in sorted(plan.items()):
        sheet = _contact_sheet(cluster, sorted(links.values()), thumbnail)
        fsutil.atomic_write(directory / f"{cluster}.jpg", _encode_jpeg(sheet), fsutil.PRIVATE_FILE)
        pulse()


def _contact_sheet(
    cluster: str, photos: list[str], thumbnail: Callable[[str], Thumbnail | None]
) -> Thumbnail:
    picked = _spread(photos, _SHEET_CAP)
    cells = [cell for cell in map(_cell, map(thumbnail, picked)) if cell is not None]
    columns = max(4, min(_COLUMNS, len(cells)))  # at least wide enough for the title
    rows = -(-len(cells) // columns)
    edge = THUMBNAIL_EDGE
    sheet = np.full((_HEADER + rows * edge, columns * edge, 3), 32, np.uint8)  # (h, w, 3) RGB
    for index, image in enumerate(cells):
        top, left = _HEADER + index // columns * edge, index % columns * edge
        sheet[top:top + edge, left:left + edge] = image
    title = os.fsencode(cluster).decode("ascii", "replace")  # Hershey fonts draw ASCII only;
    # a name that is not UTF-8 (surrogate escapes) crashes OpenCV's text drawing
    cv2.putText(sheet, f"{title}  {len(photos)} photos", (10, 28), cv2.FONT_HERSHEY_SIMPLEX,
                0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return sheet


def _spread(items: list[str], cap: int) -> list[str]:
    """At most `cap` items evenly spaced through the list, so one folder does not fill a sheet."""
    if len(items) <= cap:
        return items
    return [items[index * len(items) // cap] for index in range(cap)]


def _cell(image: Thumbnail | None) -> Thumbnail | None:
    """A thumbnail as one (edge, edge, 3) uint8 cell, aspect kept, letterboxed black; None for
    anything that is not RGB."""
    if image is None or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        return None
    if image.shape[:2] == (THUMBNAIL_EDGE, THUMBNAIL_EDGE):
        return image.astype(np.uint8, copy=False)
    return fit_square(image.astype(np.uint8, copy=False), THUMBNAIL_EDGE, _LETTERBOX)


def _encode_jpeg(sheet: Thumbnail) -> bytes:
    # imencode + our own atomic write: imwrite picks the format from the (temp) file name
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(sheet[:, :, ::-1]))  # RGB -> BGR
    if not ok:
        raise RuntimeError("JPEG encoding of a contact sheet failed")
    return bytes(encoded.tobytes())


def _elbow_png(curve: ElbowCurve) -> bytes:
    # a bare Figure with the Agg canvas: no pyplot, so no global state shared between threads
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(list(curve.ks), list(curve.inertias), marker="o")
    chosen = curve.chosen_k
    axes.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen k = {chosen}")
    axes.set_xlabel("k (clusters)")
    axes.set_ylabel("k-means inertia")
    axes.set_title("Elbow: inertia vs k")
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()



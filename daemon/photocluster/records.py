"""Plain records that travel between stages: data only, standard library only, so that any
layer (the pure clustering, the store, the tree's overview, `status`) may hold them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TakenSource = Literal["exif", "sidecar", "mtime"]


@dataclass(frozen=True)
class Taken:
    """When a photo was taken, and where that came from (`photos.taken` reads it)."""

    at: float  # UTC, seconds since the epoch
    offset_minutes: int | None  # local time's offset from UTC where it was taken, when known
    source: TakenSource


@dataclass(frozen=True)
class ElbowCurve:
    """The measured sweep (`inertias[i]` is k-means inertia on the sample for `ks[i]`)."""

    ks: tuple[int, ...]
    inertias: tuple[float, ...]
    chosen_k: int
    knee_found: bool


@dataclass(frozen=True)
class ReclusterInfo:
    """What one recluster did, as the catalog remembers it."""

    at: float
    photos: int
    changed: int  # photos whose cluster name changed
    elbow: ElbowCurve

    @property
    def k(self) -> int:
        return self.elbow.chosen_k

"""How a user's corrections steer the clustering (pure): pins and "not this cluster".

A *pin* holds a photo in the cluster the user put it in: live placement puts it there, a
recluster counts it as a member of that cluster when names are matched, and if the cluster
dissolves the pin follows the cluster that inherits most of its members (`Fate.into`), or is
dropped when none does (the catalog applies that rule when it commits a recluster). A
*rejection* keeps a photo out of one cluster: placement takes its nearest other centroid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from photocluster import clustering

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Fate:
    """What became of a cluster a recluster retired: the cluster now holding most of its former
    members (None: none of them is left) and that share of them."""

    into: str | None
    share: float

    def describe(self, folder: str | None = None) -> str:
        """"merged into cluster-012", "split (...)" or "dissolved"; `folder`: the name the
        heir's folder has, when a user named it."""
        if self.into is None:
            return "dissolved"
        into = self.into if folder in (None, self.into) else f"{self.into} ({folder!r})"
        if self.share >= 0.5:
            return f"merged into {into}"
        return f"split (the most of it, {self.share:.0%}, into {into})"


def choose(
    vectors: Vectors,
    ids: Sequence[int],
    names: Sequence[str],
    centroids: Vectors,
    pins: Mapping[int, str],
    rejected: Mapping[int, Collection[str]],
) -> dict[int, str]:
    """The cluster of each content: its pin when that cluster is active, else the nearest
    centroid it has not rejected (the nearest at all when it rejected every one).

    `vectors` (m, dim) float32 in the order of `ids`; `centroids` (k, dim) in the order of
    `names`. Raises ValueError when there are no centroids."""
    nearest = clustering.nearest(vectors, centroids)  # (m,) int64
    active = set(names)
    chosen: dict[int, str] = {}
    for row, content in enumerate(ids):
        pin = pins.get(content)
        if pin in active:
            chosen[content] = pin
        elif names[int(nearest[row])] in rejected.get(content, ()):
            chosen[content] = _nearest_allowed(vectors[row], names, centroids, rejected[content])
        else:
            chosen[content] = names[int(nearest[row])]
    return chosen


def _nearest_allowed(
    vector: Vectors, names: Sequence[str], centroids: Vectors, refused: Collection[str]
) -> str:
    scores = centroids @ vector  # (k,)
    allowed = np.array([name not in refused for name in names])
    if not allowed.any():
        return names[int(np.argmax(scores))]
    return names[int(np.argmax(np.where(allowed, scores, -np.inf)))]


def name_labels(
    previous: Mapping[int, str],
    labels: Mapping[int, int],
    pins: Mapping[int, str],
    used_names: AbstractSet[str],
    min_overlap: float,
) -> dict[int, str]:
    """`clustering.match_names`, with each pinned photo counted as a member of the new cluster
    that took most of its pinned cluster's other members: a folder the user filled by hand
    keeps its name even where k-means scatters the photos put into it.

    Returns label -> name for every label in `labels`."""
    evidence = dict(labels)
    heirs = _heirs(previous, labels, pins)
    for photo, pin in pins.items():
        if photo in evidence and pin in heirs:
            evidence[photo] = heirs[pin]
    names = clustering.match_names(previous, evidence, used_names, min_overlap)
    unnamed = sorted(set(labels.values()) - names.keys())  # held only pinned photos
    taken = set(used_names) | set(previous.values()) | set(names.values())
    names.update(zip(unnamed, clustering.new_names(len(unnamed), taken), strict=True))
    return names


def _heirs(
    previous: Mapping[int, str], labels: Mapping[int, int], pins: Mapping[int, str]
) -> dict[str, int]:
    """Old cluster -> the new label holding most of its unpinned members (of its pinned ones
    when it has no others); ties go to the lower label."""
    votes: dict[str, Counter[int]] = {}
    pinned_votes: dict[str, Counter[int]] = {}
    for photo, old in previous.items():
        if photo in labels:
            pile = pinned_votes if pins.get(photo) == old else votes
            pile.setdefault(old, Counter())[labels[photo]] += 1
    heirs = {old: _top(counts) for old, counts in pinned_votes.items()}
    heirs.update({old: _top(counts) for old, counts in votes.items()})
    return heirs


def _top(counts: Counter[int]) -> int:
    return min(counts, key=lambda label: (-counts[label], label))


def fates(
    previous: Mapping[int, str], assignment: Mapping[int, str], retired: Collection[str]
) -> dict[str, Fate]:
    """For each retired name, where its former members went (by `assignment`: photo -> new
    name); a name whose photos are all gone dissolved."""
    moves: dict[str, Counter[str]] = {name: Counter() for name in retired}
    for photo, old in previous.items():
        if old in moves and photo in assignment:
            moves[old][assignment[photo]] += 1
    result = {}
    for name, counts in moves.items():
        if not counts:
            result[name] = Fate(None, 0.0)
            continue
        into = min(counts, key=lambda new: (-counts[new], new))
        result[name] = Fate(into, counts[into] / sum(counts.values()))
    return result


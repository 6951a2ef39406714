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
Codes = npt.NDArray[np.int32]  # (n,) an index into a list of names, -1: none
Labels = npt.NDArray[np.int64]  # (n,) a new cluster label, -1: none


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
    """`name_codes` over dicts (photo id -> old name, photo id -> new label, photo id -> pin).

    Returns label -> name for every label in `labels`."""
    photos = sorted(labels)
    old_names = sorted(set(previous.values()))
    column = {name: code for code, name in enumerate(old_names)}
    codes = np.array([column.get(previous.get(p, ""), -1) for p in photos], np.int32)
    new = np.array([labels[p] for p in photos], np.int64)
    row_of = {photo: row for row, photo in enumerate(photos)}
    pinned = {row_of[photo]: pin for photo, pin in pins.items() if photo in row_of}
    return name_codes(codes, old_names, new, pinned, used_names, min_overlap)


def name_codes(
    codes: Codes,
    old_names: Sequence[str],
    labels: Labels,
    pinned: Mapping[int, str],
    used_names: AbstractSet[str],
    min_overlap: float,
) -> dict[int, str]:
    """`clustering.name_labels`, with each pinned photo counted as a member of the new cluster
    that took most of its pinned cluster's other members: a folder the user filled by hand
    keeps its name even where k-means scatters the photos put into it.

    Row i of the (n,) arrays is one photo: `codes[i]` its old cluster (an index into
    `old_names`, -1: none), `labels[i]` its new label (-1: none); `pinned`: row -> the cluster
    it is pinned to. Counted over arrays: a million photos do not fit in dicts cheaply.
    Returns label -> name for every label (>= 0) in `labels`."""
    evidence = labels.copy()
    heirs = _heirs(codes, old_names, labels, pinned)
    for row, pin in pinned.items():
        if evidence[row] >= 0 and pin in heirs:
            evidence[row] = heirs[pin]
    taken = set(used_names) | set(old_names)
    counted = evidence >= 0
    names = clustering.name_labels(pair_counts(codes, old_names, evidence),
                                   {int(x) for x in np.unique(evidence[counted]).tolist()},
                                   taken, min_overlap)
    present = {int(x) for x in np.unique(labels[labels >= 0]).tolist()}
    unnamed = sorted(present - names.keys())  # held only pinned photos
    names.update(zip(unnamed, clustering.new_names(len(unnamed), taken | set(names.values())),
                     strict=True))
    return {label: name for label, name in names.items() if label in present}


def _heirs(codes: Codes, old_names: Sequence[str], labels: Labels,
           pinned: Mapping[int, str]) -> dict[str, int]:
    """Old cluster -> the new label holding most of its unpinned members (of its pinned ones
    when it has no others); ties go to the lower label."""
    in_own = np.zeros(len(codes), bool)  # pinned to the cluster it was in
    for row, pin in pinned.items():
        in_own[row] = codes[row] >= 0 and old_names[codes[row]] == pin
    heirs = {old: _top(counts) for old, counts
             in _by_old(pair_counts(codes, old_names, labels, in_own)).items()}
    heirs.update({old: _top(counts) for old, counts
                  in _by_old(pair_counts(codes, old_names, labels, ~in_own)).items()})
    return heirs


def _by_old(pairs: Counter[tuple[str, int]]) -> dict[str, Counter[int]]:
    grouped: dict[str, Counter[int]] = {}
    for (old, label), count in pairs.items():
        grouped.setdefault(old, Counter())[label] = count
    return grouped


def pair_counts(codes: Codes, old_names: Sequence[str], labels: Labels,
                rows: npt.NDArray[np.bool_] | None = None) -> Counter[tuple[str, int]]:
    """(old name, new label) -> photos in both (of `rows`, a mask, when given), counted over
    the arrays."""
    both = (codes >= 0) & (labels >= 0)
    if rows is not None:
        both &= rows
    width = int(labels.max(initial=0)) + 1  # one int64 key per (code, label) pair
    found, counts = np.unique(codes[both].astype(np.int64) * width + labels[both],
                              return_counts=True)
    return Counter({(old_names[int(key) // width], int(key) % width): int(count)
                    for key, count in zip(found.tolist(), counts.tolist(), strict=True)})


def _top(counts: Counter[int]) -> int:
    return min(counts, key=lambda label: (-counts[label], label))


def fates(
    previous: Mapping[int, str], assignment: Mapping[int, str], retired: Collection[str]
) -> dict[str, Fate]:
    """For each retired name, where its former members went (by `assignment`: photo -> new
    name); a name whose photos are all gone dissolved."""
    return fates_counted(Counter((old, assignment[photo]) for photo, old in previous.items()
                                 if photo in assignment), retired)


def fates_counted(moved: Counter[tuple[str, str]], retired: Collection[str]) -> dict[str, Fate]:
    """`fates` from counts made: `moved[(old name, new name)]` photos."""
    moves: dict[str, Counter[str]] = {name: Counter() for name in retired}
    for (old, new), count in moved.items():
        if old in moves:
            moves[old][new] += count
    result = {}
    for name, counts in moves.items():
        if not counts:
            result[name] = Fate(None, 0.0)
            continue
        into = min(counts, key=lambda new: (-counts[new], new))
        result[name] = Fate(into, counts[into] / sum(counts.values()))
    return result

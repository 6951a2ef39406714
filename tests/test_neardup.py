"""Near-duplicate groups: components at the threshold, the burst rule, the incremental join,
best-first order; and, with the real model, transformed copies grouping with their original."""

from __future__ import annotations

from pathlib import Path

import cv2
import faiss
import numpy as np
import pytest
from PIL import Image

from photocluster import neardup, photos
from photocluster.embedder import PAD_RGB
from photocluster.neardup import Joined, Member
from tests.support.photos import require_dataset

THRESHOLD = 0.08
DIM = 512


def unit(rng: np.random.Generator, count: int = 1) -> np.ndarray:
    """(count, DIM) random unit rows: any two are ~90 degrees apart in 512-d."""
    rows = rng.normal(size=(count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def turned(start: np.ndarray, towards: np.ndarray, distance: float) -> np.ndarray:
    """The unit vector at cosine distance `distance` from `start`, in the plane of `towards`."""
    across = towards - (towards @ start) * start
    across /= np.linalg.norm(across)
    angle = np.arccos(1.0 - distance)
    return (np.cos(angle) * start + np.sin(angle) * across).astype(np.float32)


def chain_library() -> tuple[list[int], np.ndarray]:
    """ids 10, 11, 12: a chain 10-11-12 (0.05 apart each; 10 and 12 are 0.19 apart);
    20 alone; 30, 31 a pair (0.02); 40 at 0.12 from 30: near, but not near enough."""
    rng = np.random.default_rng(1)
    base, direction, lone, other, far = unit(rng, 5)
    second = turned(base, direction, 0.05)
    third = turned(second, second - base, 0.05)  # further along the same great circle
    partner = turned(other, unit(rng)[0], 0.02)
    outside = turned(other, unit(rng)[0], 0.12)
    return [10, 11, 12, 20, 30, 31, 40], np.stack([base, second, third, lone, other, partner,
                                                   outside])


def partition(group_of: dict[int, int]) -> list[list[int]]:
    members: dict[int, list[int]] = {}
    for photo, key in group_of.items():
        members.setdefault(key, []).append(photo)
    return sorted(sorted(group) for group in members.values())


def applied(group_of: dict[int, int], joined: Joined) -> dict[int, int]:
    """What a caller does with a join: the new photo and its singles take the key, and so do
    the members of every absorbed group."""
    if joined.key is None:
        return dict(group_of)
    moved = {p: joined.key for p, k in group_of.items() if k in joined.absorbed}
    return {**group_of, **moved, **dict.fromkeys(joined.photos, joined.key)}


def test_groups_are_the_connected_components_at_the_threshold() -> None:
    ids, vectors = chain_library()
    assert 1.0 - float(vectors[0] @ vectors[2]) > THRESHOLD  # linked only through 11
    assert neardup.groups(ids, vectors, THRESHOLD) == [[10, 11, 12], [30, 31]]


def test_photos_with_no_close_neighbour_form_no_group() -> None:
    ids, vectors = chain_library()
    grouped = {i for group in neardup.groups(ids, vectors, THRESHOLD) for i in group}
    assert 20 not in grouped and 40 not in grouped
    assert neardup.groups([5], vectors[:1], THRESHOLD) == []
    assert neardup.groups([], vectors[:0], THRESHOLD) == []


def test_groups_carry_the_callers_ids_whatever_their_order() -> None:
    ids, vectors = chain_library()
    order = np.array([6, 2, 4, 0, 3, 5, 1])
    renamed = {10: 900, 11: 7, 12: 123456789012, 20: 3, 30: 55, 31: 54, 40: 1}
    shuffled_ids = [renamed[ids[i]] for i in order]
    assert neardup.groups(shuffled_ids, vectors[order], THRESHOLD) == [[7, 900, 123456789012],
                                                                       [54, 55]]


def test_a_looser_threshold_links_more() -> None:
    ids, vectors = chain_library()
    assert neardup.groups(ids, vectors, 0.15) == [[10, 11, 12], [30, 31, 40]]
    assert neardup.groups(ids, vectors, 0.01) == []


def test_burst_rule_drops_links_between_known_times_further_apart_than_the_burst() -> None:
    ids, vectors = chain_library()
    taken = np.array([0.0, 2.0, 600.0, 0.0, 50.0, np.nan, 0.0])
    assert neardup.groups(ids, vectors, THRESHOLD, taken, burst_seconds=10.0) == [[10, 11],
                                                                                 [30, 31]]
    assert neardup.groups(ids, vectors, THRESHOLD, taken, burst_seconds=None) == [
        [10, 11, 12], [30, 31]]


def test_burst_rule_in_join_matches_the_full_pass() -> None:
    ids, vectors = chain_library()
    kept = neardup.join(10, [11, 12], [float(vectors[0] @ vectors[1]), 0.99], {}, THRESHOLD,
                        taken=0.0, neighbour_taken=[2.0, float("nan")], burst_seconds=10.0)
    assert kept == Joined(10, (10, 11, 12), ())
    dropped = neardup.join(10, [11], [0.99], {}, THRESHOLD, taken=0.0,
                           neighbour_taken=[600.0], burst_seconds=10.0)
    assert dropped == Joined(None, (), ())


def test_mismatched_shapes_are_refused() -> None:
    ids, vectors = chain_library()
    with pytest.raises(ValueError, match="do not match"):
        neardup.groups(ids[:3], vectors, THRESHOLD)
    with pytest.raises(ValueError, match="taken"):
        neardup.groups(ids, vectors, THRESHOLD, np.zeros(3), 5.0)


def arrivals() -> np.ndarray:
    """(40, 512) in arrival order: photos near 10 centres (some link, some not), two pairs
    0.12 apart, loners, and last a photo between the two pairs that links them."""
    rng = np.random.default_rng(7)
    centres = unit(rng, 10)
    rows = [turned(centres[i % 10], unit(rng)[0], rng.uniform(0.0, 0.05)) for i in range(30)]
    left, right = unit(rng, 2)
    right = turned(left, right, 0.12)
    rows += [left, turned(left, unit(rng)[0], 0.02), right, turned(right, unit(rng)[0], 0.02)]
    rows += list(unit(rng, 5))
    halfway = 1.0 - np.cos(np.arccos(1.0 - 0.12) / 2)  # 0.03 from each side
    rows.append(turned(left, right, halfway))
    return np.stack(rows).astype(np.float32)


def test_join_of_each_arriving_photo_agrees_with_a_full_pass() -> None:
    """Each photo is searched (k=10) against those before it, joined, then added."""
    vectors = arrivals()
    ids = [1000 + 3 * int(i) for i in np.random.default_rng(8).permutation(len(vectors))]
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    group_of: dict[int, int] = {}
    for position, photo in enumerate(ids):
        row = vectors[position : position + 1]  # (1, 512)
        similarities, found = index.search(row, 10)
        joined = neardup.join(photo, found[0], similarities[0], group_of, THRESHOLD)
        group_of = applied(group_of, joined)
        index.add_with_ids(row, np.array([photo], np.int64))
        expected = neardup.groups(ids[: position + 1], vectors[: position + 1], THRESHOLD)
        assert partition(group_of) == expected
    assert len(joined.absorbed) == 2  # the last photo merged the two pairs
    assert sorted(ids[30:34] + ids[-1:]) in partition(group_of)
    assert len(partition(group_of)) >= 4


def test_join_merges_the_groups_it_bridges_under_the_smallest_key() -> None:
    joined = neardup.join(50, [7, 9, 60, 8, -1, 50], [0.99, 0.99, 0.98, 0.5, 0.0, 1.0],
                          {7: 3, 9: 40}, THRESHOLD)
    assert joined == Joined(3, (50, 60), (3, 40))


def test_partitioned_pass_finds_the_pairs_of_the_exhaustive_one() -> None:
    rng = np.random.default_rng(3)
    centres = unit(rng, 40)
    loose = [turned(centres[i % 40], unit(rng)[0], 0.5) for i in range(3000)]  # 40 blobs
    copies = [turned(row, unit(rng)[0], rng.uniform(0.0, 0.07)) for row in loose[:300]]
    vectors = np.stack(loose + copies).astype(np.float32)  # (3300, 512)
    exhaustive = neardup.linked_pairs(vectors, THRESHOLD)
    partitioned = neardup.linked_pairs(vectors, THRESHOLD, flat_limit=500, list_size=200)
    assert len(exhaustive) >= 300
    assert np.array_equal(partitioned, exhaustive)


def test_best_first_prefers_more_pixels_then_the_oldest_capture() -> None:
    members: list[Member] = [
        {"id": 1, "pixels": 1_000, "taken": 10.0},
        {"id": 2, "pixels": 4_000, "taken": None},
        {"id": 3, "pixels": 4_000, "taken": 50.0},
        {"id": 4, "pixels": 4_000, "taken": 20.0},
        {"id": 5, "pixels": 1_000, "taken": 10.0},
    ]
    assert [m["id"] for m in neardup.best_first(members)] == [4, 3, 2, 1, 5]


# ---- the real model


def _camera_sized(folder: Path, count: int) -> list[Path]:
    """The first `count` photos of `folder` with a longer side of 224 px or more: the decoder
    shrinks those, as it does camera photos (the threshold is calibrated on them)."""
    found: list[Path] = []
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as image:
            if max(image.size) >= 224:
                found.append(path)
        if len(found) == count:
            break
    return found


def _copies(path: Path) -> list[bytes]:
    """A photo's file, its JPEG q40 re-encoding and a 10% off-centre crop of it."""
    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    cropped = image[height // 10 :, : width - width // 10]
    return [data] + [cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
                     .tobytes() for picture, quality in ((image, 40), (cropped, 90))]


@pytest.mark.weights
@pytest.mark.datasets
@pytest.mark.slow
def test_real_copies_group_with_their_original_and_nothing_else(real_weights: object) -> None:
    from photocluster.embedder import Vgg16Embedder, WeightsFile

    assert isinstance(real_weights, WeightsFile)
    folders = sorted(p for p in require_dataset("setA").iterdir() if p.is_dir())
    # two photos of each of five categories: the other photo of a category is the hard negative
    pairs = [pair for pair in (_camera_sized(folder, 2) for folder in folders) if len(pair) == 2]
    chosen = [path for pair in pairs[:5] for path in pair]
    files = [copy for path in chosen for copy in _copies(path)]
    images = np.stack([photos.decode_rgb(data, 224, 100_000_000, PAD_RGB) for data in files])
    vectors = Vgg16Embedder(real_weights, "float32", 16).embed(images)  # (30, 512)
    found = neardup.groups(list(range(len(files))), vectors, neardup.SHIPPED_THRESHOLD)
    assert found == [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(len(chosen))]

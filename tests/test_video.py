"""Videos: which names are media, frames for the model, a cheap identity, live-photo parts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from photocluster.errors import BadPhotoError
from photocluster.photos import is_candidate, is_media, media_kind, read_photo
from photocluster.photos.video import (
    SAMPLE_BYTES,
    Fingerprint,
    companion_still,
    mean_vector,
    video_fingerprint,
    video_frames,
)
from tests.support.takeout_tree import photo_bytes, takeout_tree, write_video

FILL = (124, 116, 104)  # a padding colour no test frame has
EDGE = 32
BIG = 10**8  # max_pixels that admits every test video


def frames_of(
    path: Path, size: int, max_pixels: int, fill: tuple[int, int, int]
) -> list[np.ndarray]:
    """video_frames of the file at `path`, its folder taken as the photo root."""
    return video_frames(path.parent, path.name, size, max_pixels, fill)


def fingerprint_of(path: Path) -> Fingerprint:
    return video_fingerprint(path.parent, path.name)


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """An mp4v video of the given (h, w, 3) uint8 BGR frames."""
    height, width = frames[0].shape[:2]
    assert all(frame.shape == frames[0].shape for frame in frames)  # else the writer drops them
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def textured(level: int, shape: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    """A frame around grey `level` with enough texture not to count as flat."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 25, (*shape, 3))
    return np.clip(level + noise, 0, 255).astype(np.uint8)


def flat(level: int, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.full((*shape, 3), level, np.uint8)


def rchar() -> int:
    """Bytes this process has read through read(2) and friends so far."""
    with open("/proc/self/io", encoding="ascii") as io_counters:
        for line in io_counters:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("IMG_1.jpg", "photo"),
        ("IMG_1.HEIC", "photo"),
        ("PXL_20230714_180211123.MP.jpg", "photo"),
        ("PXL_20230714_180211123.MP", "video"),
        ("VID_1.mp4", "video"),
        ("IMG_1.MOV", "video"),
        ("a.m4v", "video"),
        ("a.3gp", "video"),
        ("a.webm", "video"),
        ("a.MKV", "video"),
        ("2024/VID_1.mp4", "video"),
        ("IMG_1.jpg.json", None),
        ("IMG_1.MOV.supplemental-metadata.json", None),
        ("metadata.json", None),
        ("print-subscriptions.json", None),
        (".VID_1.mp4", None),
        ("VID_1.mp4.part", None),
        ("~VID_1.mp4", None),
        ("VID_1.mp4.crdownload", None),
        ("clip.avi", None),
        ("README", None),
    ],
)
def test_media_kind_tells_photos_videos_and_everything_else(name: str, kind: str | None) -> None:
    assert media_kind(name) == kind
    assert is_media(name) is (kind is not None)
    assert is_candidate(name) is (kind == "photo")  # unchanged: ingest takes photos only


# ---------------------------------------------------------------------------- frames


def test_frames_come_from_a_quarter_half_and_three_quarters_of_the_video(tmp_path: Path) -> None:
    levels = list(range(20, 220, 5))  # 40 frames, each a little brighter than the last
    frames = [textured(level, seed=index) for index, level in enumerate(levels)]
    path = write_frames(tmp_path / "v.mp4", frames)
    picked = frames_of(path, EDGE, BIG, FILL)
    assert len(picked) == 3
    assert all(frame.shape == (EDGE, EDGE, 3) and frame.dtype == np.uint8 for frame in picked)
    middle = slice(EDGE // 4, EDGE * 3 // 4)  # inside the letterbox
    means = [float(frame[middle, :].mean()) for frame in picked]
    expected = [levels[10], levels[20], levels[30]]
    assert means == pytest.approx(expected, abs=8)


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".mkv", "XVID"), (".webm", "VP80"), (".3gp", "mp4v")]
)
def test_matroska_webm_and_3gp_videos_are_read(tmp_path: Path, suffix: str, codec: str) -> None:
    path = tmp_path / f"clip{suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (64, 48))
    for index in range(20):
        writer.write(textured(100, seed=index))
    writer.release()
    assert len(frames_of(path, EDGE, BIG, FILL)) == 3


def test_a_frame_is_fitted_into_the_square_with_the_models_padding(tmp_path: Path) -> None:
    frames = [textured(128, shape=(32, 64), seed=i) for i in range(20)]  # 2:1, landscape
    (frame, *_) = frames_of(write_frames(tmp_path / "v.mp4", frames), EDGE, BIG, FILL)
    assert frame.shape == (EDGE, EDGE, 3)
    assert (frame[0, 0] == FILL).all() and (frame[-1, -1] == FILL).all()  # RGB, not BGR
    assert abs(float(frame[EDGE // 2].mean()) - 128) < 20


@pytest.mark.parametrize("count", [100, 1000])  # steps of 2 frames are decoded, of 20 sought
def test_black_frames_at_a_position_are_stepped_over(tmp_path: Path, count: int) -> None:
    # 25 % is frame count / 4: black from there for 3 % of the video, the picture after it.
    start, end = count // 4 - 5, count // 4 + count * 3 // 100
    shape = (24, 32)
    frames = [flat(0, shape) if start <= i < end else textured(150, shape, i) for i in range(count)]
    picked = frames_of(write_frames(tmp_path / "v.mp4", frames), EDGE, BIG, FILL)
    middle = slice(EDGE // 4, EDGE * 3 // 4)
    assert len(picked) == 3
    assert all(float(frame[middle, :].std()) > 8 for frame in picked)


def test_a_video_that_is_black_throughout_still_gives_its_frames(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "v.mp4", [flat(0) for _ in range(30)])
    frames = frames_of(path, EDGE, BIG, FILL)
    assert len(frames) == 3
    assert int(frames[0][EDGE // 2, EDGE // 2].max()) < 10


def test_only_a_small_part_of_a_big_video_is_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(10)]
    path = write_frames(tmp_path / "v.mp4", [noise[i % 10] for i in range(300)], fps=30)
    size = path.stat().st_size
    assert size > 3_000_000, size  # noise does not compress: several MB
    before = rchar()
    assert len(frames_of(path, EDGE, BIG, FILL)) == 3
    assert rchar() - before < size / 2


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty file"),
        (b"\x00" * 5000, "not a video"),
        (b"ftypisom" + os.urandom(4000), "not a video"),
        (None, "not a video"),  # a JPEG named .mp4
    ],
    ids=["empty", "zeros", "mp4-header-then-noise", "jpeg-named-mp4"],  # xdist workers must agree
)
def test_what_is_not_a_video_is_a_bad_photo_with_a_reason(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(photo_bytes((200, 30, 30)) if content is None else content)
    with pytest.raises(BadPhotoError, match=says):
        frames_of(path, EDGE, BIG, FILL)


def test_a_video_cut_short_gives_what_it_has_or_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    write_frames(path, [textured(100, seed=i) for i in range(40)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # mp4v's index is at the end: it is gone
    try:
        frames = frames_of(path, EDGE, BIG, FILL)
    except BadPhotoError as error:
        assert "not a video" in str(error)
    else:
        assert 1 <= len(frames) <= 3


def test_a_symlink_is_refused_and_a_fifo_does_not_block(tmp_path: Path) -> None:
    target = write_frames(tmp_path / "real.mp4", [textured(90, seed=i) for i in range(10)])
    (tmp_path / "link.mp4").symlink_to(target)
    with pytest.raises(BadPhotoError, match="symbolic link"):
        frames_of(tmp_path / "link.mp4", EDGE, BIG, FILL)
    os.mkfifo(tmp_path / "fifo.mp4")
    with pytest.raises(BadPhotoError, match="FIFO"):
        frames_of(tmp_path / "fifo.mp4", EDGE, BIG, FILL)
    with pytest.raises(FileNotFoundError):
        frames_of(tmp_path / "missing.mp4", EDGE, BIG, FILL)


def test_frames_larger_than_max_pixels_are_refused_before_decoding(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "v.mp4", [textured(90, seed=i) for i in range(10)])
    with pytest.raises(BadPhotoError, match="too large: 64x48"):
        frames_of(path, EDGE, 64 * 48 - 1, FILL)


# ---------------------------------------------------------------------------- identity


def test_a_small_video_is_hashed_whole_like_a_photo(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "v.mp4", [textured(90, seed=i) for i in range(10)])
    found = fingerprint_of(path)
    info = path.stat()
    whole = read_photo(path.parent, path.name, BIG).content_hash
    assert found == Fingerprint(info.st_size, info.st_mtime_ns, whole)


def write_big(path: Path, size: int, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return data


def test_a_big_video_is_identified_by_reading_three_mib(tmp_path: Path) -> None:
    size = 12 * SAMPLE_BYTES
    data = write_big(tmp_path / "big.mp4", size)
    before = rchar()
    found = fingerprint_of(tmp_path / "big.mp4")
    assert rchar() - before <= 3 * SAMPLE_BYTES + 4096
    assert found.size == size and len(found.content_hash) == 32
    assert found.content_hash != hashlib.blake2b(data, digest_size=16).hexdigest()
    (tmp_path / "copy.mp4").write_bytes(data)
    assert fingerprint_of(tmp_path / "copy.mp4").content_hash == found.content_hash


@pytest.mark.parametrize("offset", [0, 6 * SAMPLE_BYTES - SAMPLE_BYTES // 2, 12 * SAMPLE_BYTES - 1])
def test_a_byte_changed_in_a_sample_changes_the_identity(tmp_path: Path, offset: int) -> None:
    data = bytearray(write_big(tmp_path / "a.mp4", 12 * SAMPLE_BYTES))
    data[offset] ^= 0xFF
    (tmp_path / "b.mp4").write_bytes(bytes(data))
    first, second = fingerprint_of(tmp_path / "a.mp4"), fingerprint_of(tmp_path / "b.mp4")
    assert first.content_hash != second.content_hash


def test_a_video_one_byte_longer_is_another_video(tmp_path: Path) -> None:
    data = write_big(tmp_path / "a.mp4", 12 * SAMPLE_BYTES)
    middle = len(data) // 2
    (tmp_path / "b.mp4").write_bytes(data[:middle] + b"\0" + data[middle:])
    first, second = fingerprint_of(tmp_path / "a.mp4"), fingerprint_of(tmp_path / "b.mp4")
    assert first.content_hash != second.content_hash


def test_the_identity_refuses_what_read_photo_refuses(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "empty.mp4")
    with pytest.raises(BadPhotoError, match="empty"):
        fingerprint_of(tmp_path / "empty.mp4")
    with pytest.raises(BadPhotoError, match="symbolic link"):
        fingerprint_of(tmp_path / "link.mp4")


# ---------------------------------------------------------------------------- vectors


def test_the_video_vector_is_the_normalised_mean_of_its_frames() -> None:
    vectors = np.array([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]], np.float32)  # (2, 3)
    mean = mean_vector(vectors)
    assert mean.dtype == np.float32 and mean.shape == (3,)
    assert mean == pytest.approx(np.array([0.6, 0.8, 0.0]))
    assert mean_vector(np.zeros((3, 4), np.float32)).tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="n >= 1"):
        mean_vector(np.zeros((0, 512), np.float32))
    with pytest.raises(ValueError, match="n >= 1"):
        mean_vector(np.zeros(512, np.float32))


# ---------------------------------------------------------------------------- companions


@pytest.mark.parametrize(
    ("path", "siblings", "still"),
    [
        ("PXL_1.MP", ["PXL_1.MP", "PXL_1.MP.jpg"], "PXL_1.MP.jpg"),
        ("a/PXL_1.MP", ["PXL_1.MP", "PXL_1.MP.JPG"], "a/PXL_1.MP.JPG"),
        ("IMG_1.MOV", ["IMG_1.HEIC", "IMG_1.MOV"], "IMG_1.HEIC"),
        ("IMG_1.mov", ["img_1.heic"], "img_1.heic"),
        ("IMG_1.MP4", ["IMG_1.JPG"], "IMG_1.JPG"),
        ("IMG_1.MOV", ["IMG_1.JPG", "IMG_1.HEIC"], "IMG_1.HEIC"),  # the original over a copy
        ("IMG_1(1).MOV", ["IMG_1(1).HEIC", "IMG_1.HEIC"], "IMG_1(1).HEIC"),
        ("IMG_1.MOV", ["IMG_1.MOV", "IMG_10.HEIC", "IMG_1.HEIC.json"], None),
        ("VID_1.mp4", ["VID_1.mp4", "VID_2.jpg"], None),
        ("PXL_1.MP", ["PXL_1.jpg"], None),  # a Pixel still is named after its .MP
        ("clip.mkv", ["clip.jpg"], None),  # only live and motion photo video types
        ("IMG_1.HEIC", ["IMG_1.MOV"], None),  # a photo is nobody's companion
    ],
)
def test_a_live_or_motion_photos_video_names_its_still(
    path: str, siblings: list[str], still: str | None
) -> None:
    assert companion_still(path, siblings) == still


# ---------------------------------------------------------------------------- a real tree


def test_every_video_of_a_takeout_tree_reads_and_is_paired_as_built(tmp_path: Path) -> None:
    facts = takeout_tree(tmp_path)
    assert len(facts.videos) == 3
    for video in sorted(facts.videos):
        folder = (tmp_path / video).parent
        assert companion_still(video, os.listdir(folder)) == facts.companions.get(video), video
        assert len(frames_of(tmp_path / video, EDGE, BIG, FILL)) == 3, video
        assert fingerprint_of(tmp_path / video).content_hash == facts.contents[video], video
    stills = [path for path in facts.contents if path not in facts.videos]
    for still in stills:
        assert companion_still(still, os.listdir((tmp_path / still).parent)) is None


def test_write_video_makes_a_clip_of_the_asked_length(tmp_path: Path) -> None:
    write_video(tmp_path / "x.MOV", (10, 200, 10), seconds=2.0, fps=10)
    capture = cv2.VideoCapture(str(tmp_path / "x.MOV"), cv2.CAP_FFMPEG)
    try:
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    finally:
        capture.release()

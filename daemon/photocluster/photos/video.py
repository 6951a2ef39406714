"""Videos: a few frames as the model's input, a content identity that reads a few MiB, and the
motion part of a live photo told apart from a video of its own.

A video is never decoded whole: OpenCV (its FFmpeg backend, bundled in the wheel) seeks to a
quarter, half and three quarters of the video and decodes one frame at each, so a 4 GB video
costs a few seeks and a few frame decodes. Its vector is the mean of those frames' vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from photocluster.errors import BadPhotoError
from photocluster.photos.decode import RGB, RGBImage, fit_square
from photocluster.photos.files import VIDEO_SUFFIXES, open_regular

logger = logging.getLogger(__name__)

# FFmpeg opens whatever it recognises: an image named .mp4, an AVI, a playlist that names other
# files or URLs. Only the demuxers of VIDEO_SUFFIXES (mov: .mp4 .mov .m4v .3gp and Pixel's .MP;
# matroska: .mkv .webm) may read our files, and only from a file. OpenCV reads this variable at
# every open; a value set by the person running the daemon is left alone.
os.environ.setdefault(
    "OPENCV_FFMPEG_CAPTURE_OPTIONS", "format_whitelist;mov,matroska|protocol_whitelist;file"
)

__all__ = [
    "VIDEO_SUFFIXES",
    "Fingerprint",
    "companion_still",
    "mean_vector",
    "video_fingerprint",
    "video_frames",
]

POSITIONS = (0.25, 0.5, 0.75)  # shares of the frame count where a frame is taken
# A frame this flat (standard deviation of its sampled pixel values, 0..255) is a fade, a black
# screen or a lens cap, not the scene: look a little further on, a bounded number of times.
_UNIFORM_STD = 8.0
_STEP_SHARE = 0.02  # how much further, as a share of the video
_LOOKS = 4  # looks per position, the first included
_SAMPLE_EDGE = 64  # flatness is judged on a strided sample about this many pixels across
_HEAD_FRAMES = 30  # a video without a frame count: at most this many frames from its start

SAMPLE_BYTES = 1 << 20  # a big video is identified by its size and three samples this large
_SAMPLED = b"photocluster-smp"  # blake2b personalisation: a sampled hash is never a full one


class Fingerprint(NamedTuple):
    size: int
    mtime_ns: int
    content_hash: str  # blake2b, 16-byte digest, hex, like PhotoFile.content_hash


def video_frames(
    root: Path, relative: str, size: int, max_pixels: int, fill: RGB
) -> list[RGBImage]:
    """One to three frames of the video `relative` below `root`, each fitted into a
    (size, size, 3) uint8 RGB square padded with `fill` (the embedder's padding colour), in
    time order.

    Raises FileNotFoundError when the file vanished, and BadPhotoError when it is not a regular
    file, cannot be opened as a video, announces more than `max_pixels` pixels a frame, yields
    no frame, or changed while being read.
    """
    fd, before = open_regular(root, relative)
    try:
        # FFmpeg opens by name; the open descriptor's /proc name is this very file, even if a
        # symlink has replaced its path since.
        capture = cv2.VideoCapture(_name_of(fd, root / relative), cv2.CAP_FFMPEG)
        try:
            frames = _frames(capture, max_pixels)  # each (h, w, 3) uint8 BGR
        finally:
            capture.release()
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise BadPhotoError("file changed while being read")
    bgr_fill = (fill[2], fill[1], fill[0])
    # Fitted before the colour swap: the swap then touches size² pixels, not a 4K frame's.
    return [_rgb(fit_square(frame, size, bgr_fill)) for frame in frames]


def _name_of(fd: int, path: Path) -> str:
    proc_name = f"/proc/self/fd/{fd}"
    return proc_name if os.path.exists(proc_name) else os.fspath(path)


def _rgb(bgr: RGBImage) -> RGBImage:
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _frames(capture: cv2.VideoCapture, max_pixels: int) -> list[RGBImage]:
    if not capture.isOpened():
        raise BadPhotoError("not a video (cannot be opened)")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > max_pixels:
        raise BadPhotoError(f"video too large: {width}x{height} pixels a frame")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if count > 0:
        step = max(1, round(count * _STEP_SHARE))
        found = [_frame_near(capture, int(count * share), step, count) for share in POSITIONS]
    else:  # a stream without an index: no positions to seek to
        found = [_first_frame(capture)]
    frames = [frame for frame in found if frame is not None]
    if not frames:
        raise BadPhotoError("not a video (no frame could be decoded)")
    return frames


def _frame_near(capture: cv2.VideoCapture, first: int, step: int, count: int) -> RGBImage | None:
    """The first frame from `first` on, `step` frames apart, that is not flat; the first
    decodable frame if all are; None if none decodes."""
    fallback = None
    capture.set(cv2.CAP_PROP_POS_FRAMES, first)
    for position in range(first, min(count, first + _LOOKS * step), step):
        if position != first:
            _skip(capture, position, step - 1)
        frame = _read(capture)
        if frame is not None and not _flat(frame):
            return frame
        fallback = frame if fallback is None else fallback
    return fallback


def _skip(capture: cv2.VideoCapture, position: int, frames: int) -> None:
    """Move on to `position`, `frames` frames past the one just read."""
    # OpenCV seeks to 16 frames before the target, then decodes up to it: a seek costs 17 or
    # more frame decodes (measured: 15 to 28 on a 4K clip), so a short step is decoded through.
    if frames < 16:
        for _ in range(frames):
            capture.grab()
    else:
        capture.set(cv2.CAP_PROP_POS_FRAMES, position)


def _first_frame(capture: cv2.VideoCapture) -> RGBImage | None:
    fallback = None
    for _ in range(_HEAD_FRAMES):
        frame = _read(capture)
        if frame is None:
            break
        if not _flat(frame):
            return frame
        fallback = frame if fallback is None else fallback
    return fallback


def _read(capture: cv2.VideoCapture) -> RGBImage | None:
    try:
        ok, frame = capture.read()
    except cv2.error as error:  # a corrupt stream can make the conversion fail
        logger.debug("a video frame failed to decode: %s", error)
        return None
    return np.asarray(frame, dtype=np.uint8) if ok and frame is not None else None


def _flat(frame: RGBImage) -> bool:
    stride = max(1, max(frame.shape[:2]) // _SAMPLE_EDGE)
    return float(frame[::stride, ::stride].std()) < _UNIFORM_STD


def mean_vector(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The mean of the frames' vectors (n, d), L2-normalised: (d,) float32. A mean of zero
    length is returned as it is. Raises ValueError for no vectors or not a 2-D array."""
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"need an (n, d) array with n >= 1, got shape {vectors.shape}")
    mean = np.asarray(vectors, dtype=np.float32).mean(axis=0, dtype=np.float32)  # (d,)
    norm = float(np.linalg.norm(mean))
    return np.asarray(mean / norm if norm > 0 else mean, dtype=np.float32)


def video_fingerprint(root: Path, relative: str) -> Fingerprint:
    """(size, mtime_ns, content_hash) of the video `relative` below `root`, reading at most
    3 MiB of it.

    Up to 3 MiB the whole file is hashed and the hash equals PhotoFile's for the same bytes.
    Above, the hash covers the size and the first, middle and last MiB (blake2b-128, with its
    own personalisation so it never equals a whole-file hash). That is enough to tell identical
    copies (the same video in a year folder and two albums) from different videos: two
    recordings differ in the container header and index (creation time, duration, the table of
    sample offsets, which sit at the start or the end) and in the coded frames of all three
    samples, and a different length changes the size. What it cannot see is an edit in place
    that keeps the size and touches none of the samples: this is an identity for copies, not a
    detector of changes (size and mtime are). Raises FileNotFoundError when the file vanished
    and BadPhotoError when it is not a regular file, unreadable or changed while being read.
    """
    fd, before = open_regular(root, relative)
    try:
        digest = _sampled_hash(fd, before.st_size)
        after = os.fstat(fd)
    except OSError as error:
        raise BadPhotoError(f"read error: {error.strerror or error}") from error
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise BadPhotoError("file changed while being read")
    return Fingerprint(before.st_size, before.st_mtime_ns, digest)


def _sampled_hash(fd: int, size: int) -> str:
    if size <= 3 * SAMPLE_BYTES:
        return hashlib.blake2b(_read_at(fd, 0, size), digest_size=16).hexdigest()
    hasher = hashlib.blake2b(digest_size=16, person=_SAMPLED)
    hasher.update(size.to_bytes(8, "little"))
    for offset in (0, (size - SAMPLE_BYTES) // 2, size - SAMPLE_BYTES):
        hasher.update(_read_at(fd, offset, SAMPLE_BYTES))
    return hasher.hexdigest()


def _read_at(fd: int, offset: int, length: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            raise BadPhotoError("file changed while being read")  # it shrank under us
        chunks.append(chunk)
        offset, length = offset + len(chunk), length - len(chunk)
    return b"".join(chunks)


# The still of a live photo, in order of preference, by the video's suffix. An iPhone live
# photo is IMG_1.HEIC (or .JPG once converted) beside IMG_1.MOV (or .MP4 from Google Photos);
# a Pixel motion photo exported by Takeout is PXL_x.MP.jpg beside its video part PXL_x.MP.
_LIVE_STILLS = (".heic", ".heif", ".jpg", ".jpeg")
_PIXEL_STILLS = (".jpg", ".jpeg")
_LIVE_VIDEOS = frozenset({".mov", ".mp4"})


def companion_still(path: str, siblings: list[str]) -> str | None:
    """The relative path of the still whose motion part the video at `path` (relative POSIX)
    is, or None when it is a video of its own (or not a video). `siblings` are the names in
    its folder. Names are compared case-insensitively; the still must share the stem."""
    folder, _, name = path.rpartition("/")
    lowered = name.lower()
    stem, suffix = os.path.splitext(lowered)
    if suffix == ".mp":
        wanted = [lowered + still for still in _PIXEL_STILLS]
    elif suffix in _LIVE_VIDEOS:
        wanted = [stem + still for still in _LIVE_STILLS]
    else:
        return None
    by_lowered: dict[str, str] = {}
    for sibling in sorted(siblings):
        by_lowered.setdefault(sibling.lower(), sibling)
    for candidate in wanted:
        if candidate in by_lowered:
            return f"{folder}/{by_lowered[candidate]}" if folder else by_lowered[candidate]
    return None

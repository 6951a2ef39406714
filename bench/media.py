"""What a video costs to take in, against one camera photo measured in the same run.

For each clip, `video.video_frames` (three seeks, three frame decodes, each frame fitted to the
model's 224x224 input) and `video.video_fingerprint` (size + three 1 MiB samples), against the
reference: one 12 MP JPEG read, hashed and decoded to 224x224 the way ingest does it
(`read_photo` + `decode_rgb`). CPU time counts every thread of the process (FFmpeg decodes on
several); bytes read are the process's rchar. The clips are made once into bench/out/media/ with
OpenCV's mp4v encoder (a keyframe every 12 frames), panning over a camera photo: a 10 s and a
60 s clip in 1080p, a 10 s clip in 4K, all at 30 fps. A full decode of the 10 s 1080p clip shows
what seeking saves.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.common import OUT, Section, machine, stopwatch, table
from bench.throughput import MAX_PIXELS, camera_photos
from photocluster import photos
from photocluster.embedder import INPUT_SIZE, PAD_RGB
from photocluster.photos import video

COMMAND = ".venv/bin/python -m bench media"
CLIPS_DIR = OUT / "media"
FPS = 30
# name -> (width, height, seconds)
CLIPS = {
    "1080p, 10 s": (1920, 1080, 10),
    "1080p, 60 s": (1920, 1080, 60),
    "4K, 10 s": (3840, 2160, 10),
}
RUNS = 5


@dataclass(frozen=True)
class Cost:
    wall_ms: float
    cpu_ms: float
    read_bytes: int


def measure(action: Callable[[], object]) -> Cost:
    """The common stopwatch, plus the bytes this process read meanwhile."""
    read = _rchar()
    with stopwatch() as took:
        action()
    return Cost(took.wall * 1e3, took.cpu * 1e3, _rchar() - read)


def _rchar() -> int:
    with open("/proc/self/io", encoding="ascii") as counters:
        return next(int(line.split()[1]) for line in counters if line.startswith("rchar:"))


def median_cost(costs: list[Cost]) -> Cost:
    return Cost(
        statistics.median(cost.wall_ms for cost in costs),
        statistics.median(cost.cpu_ms for cost in costs),
        int(statistics.median(cost.read_bytes for cost in costs)),
    )


# ---------------------------------------------------------------------------- inputs


def clip(name: str, photo: Path) -> Path:
    """The clip `name`, made on first use: a window panning across the camera photo."""
    width, height, seconds = CLIPS[name]
    path = CLIPS_DIR / f"{width}x{height}_{seconds}s.mp4"
    if path.exists():
        return path
    CLIPS_DIR.mkdir(parents=True, exist_ok=True)
    scene = _scene(photo, width, height)
    temporary = path.with_name(f".{path.name}.tmp.mp4")
    writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    travel = scene.shape[1] - width
    frames = seconds * FPS
    for index in range(frames):
        left = round(travel * index / max(1, frames - 1))
        writer.write(np.ascontiguousarray(scene[:height, left : left + width]))
    writer.release()
    os.replace(temporary, path)
    return path


def _scene(photo: Path, width: int, height: int) -> np.ndarray:
    """(height, width * 5 / 4, 3) uint8 BGR: the photo stretched to a wide strip, with grain."""
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    strip = cv2.resize(bgr, (width * 5 // 4, height), interpolation=cv2.INTER_AREA)
    grain = np.random.default_rng(0).normal(0, 4, strip.shape[:2])[..., None]
    return np.clip(strip + grain, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- the actions


def photo_cost(path: Path) -> Callable[[], object]:
    def read_and_decode() -> object:
        data = photos.read_photo(path.parent, path.name, max_bytes=1 << 30).data
        return photos.decode_rgb(data, INPUT_SIZE, MAX_PIXELS, PAD_RGB)

    return read_and_decode


def frames_cost(path: Path) -> Callable[[], object]:
    return lambda: video.video_frames(path.parent, path.name, INPUT_SIZE, MAX_PIXELS, PAD_RGB)


def fingerprint_cost(path: Path) -> Callable[[], object]:
    return lambda: video.video_fingerprint(path.parent, path.name)


def whole_hash(path: Path) -> Callable[[], object]:
    def digest() -> object:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=16))

    return digest


SEQUENTIAL = 60  # frames decoded one after the other, for the cost of one frame


def sequential_decode(path: Path) -> Callable[[], object]:
    def decode_on() -> None:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        for _ in range(SEQUENTIAL):
            capture.grab()
        capture.release()

    return decode_on


def full_decode(path: Path) -> Callable[[], object]:
    def decode_all() -> int:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        count = 0
        while capture.read()[0]:
            count += 1
        capture.release()
        return count

    return decode_all


# ---------------------------------------------------------------------------- the run


def run(quick: bool) -> Section:
    photo = camera_photos(1, 0)[0]
    clips = {name: clip(name, photo) for name in CLIPS}
    actions: dict[str, Callable[[], object]] = {"photo": photo_cost(photo)}
    for name, path in clips.items():
        actions[f"frames {name}"] = frames_cost(path)
        actions[f"fingerprint {name}"] = fingerprint_cost(path)
        actions[f"whole hash {name}"] = whole_hash(path)
        actions[f"sequential {name}"] = sequential_decode(path)
    for action in actions.values():  # warm: page cache, FFmpeg's first open
        action()
    runs = 2 if quick else RUNS
    costs: dict[str, list[Cost]] = {name: [] for name in actions}
    for _ in range(runs):  # interleaved, so the load of the moment touches every row
        for name, action in actions.items():
            costs[name].append(measure(action))
    decode_all = [measure(full_decode(clips["1080p, 10 s"])) for _ in range(min(runs, 3))]
    medians = {name: median_cost(measured) for name, measured in costs.items()}
    return report(photo, clips, medians, median_cost(decode_all), runs)


def report(
    photo: Path, clips: dict[str, Path], costs: dict[str, Cost], decode_all: Cost, runs: int
) -> Section:
    reference = costs["photo"]
    rows = [
        _row("one 12 MP JPEG (reference)", photo, "read + hash + decode", reference, "**1.00**")
    ]
    figures: dict[str, float | str] = {}
    for name, path in clips.items():
        for kind, what in WORK.items():
            cost = costs[f"{kind} {name}"]
            ratio = cost.cpu_ms / reference.cpu_ms
            shown = f"{ratio:.2f}" if kind == "whole hash" else f"**{ratio:.2f}**"
            rows.append(_row(name, path, what, cost, shown))
            if kind != "whole hash":
                figures[f"media {kind} {name} / photo CPU"] = round(ratio, 2)
    decode_ratio = decode_all.cpu_ms / costs["frames 1080p, 10 s"].cpu_ms
    seek_rows = []
    for name in clips:
        per_frame = costs[f"sequential {name}"].cpu_ms / SEQUENTIAL
        per_position = costs[f"frames {name}"].cpu_ms / len(video.POSITIONS)
        seek_rows.append(
            [name, f"{per_frame:.1f}", f"{per_position:.0f}", f"{per_position / per_frame:.0f}"]
        )
        figures[f"media frame decodes per position {name}"] = round(per_position / per_frame)
    seek_header = ["clip", "CPU ms a frame, in order", "CPU ms a position", "= frame decodes"]
    header = ["input", "file MB", "work", "MB read", "wall ms", "CPU ms", "CPU vs photo"]
    body = f"""Each figure is the median of {runs} interleaved runs, after one warm-up (the page
cache holds every file, as for a file a sync client has just written). CPU time counts every
thread of the process; it moves much less with the shared machine's load than wall time.

{table(header, rows)}

A full decode grows with the length: the 300 frames of the 10 s 1080p clip take
{decode_all.cpu_ms:.0f} ms of CPU, {decode_ratio:.1f}x `video_frames` on the same clip.
`video_frames` does not grow with it: its cost follows the frame size and the spacing of
keyframes, and the 60 s clip costs about what the 10 s one does (so would a 4 GB one). The
fingerprint reads at most 3 MiB whatever the size.

Where a position's cost goes (CPU ms a frame: {SEQUENTIAL} frames decoded in order from the
start, opening the file included, so a frame is counted a little dear; a position: the
`video_frames` row over {len(video.POSITIONS)}, opening, fitting and colour conversion included):

{table(seek_header, seek_rows)}

OpenCV seeks to 16 frames before the frame asked for (the keyframe at or before that) and
decodes forward to it, so a position costs at least 17 frame decodes even when it is a keyframe.
These clips have a keyframe every 12 frames (mp4v); phones write one every one or two seconds,
so there a position decodes up to 16 + 30..60 frames. A decoder that stops at the keyframe
(FFmpeg's skip_frame=nokey, which OpenCV does not pass through) would decode one.

Clips: OpenCV mp4v at {FPS} fps, a window panning across a grained camera photo. Machine at the
end: {machine()}."""
    return Section("Videos: frames and identity against one photo", COMMAND, body, figures)


WORK = {
    "frames": "video_frames (3 frames)",
    "fingerprint": "video_fingerprint",
    "whole hash": "blake2b of the whole file",
}


def _row(name: str, path: Path, work: str, cost: Cost, ratio: str) -> list[object]:
    wall, cpu = f"{cost.wall_ms:.0f}", f"{cost.cpu_ms:.0f}"
    return [name, _mb(path), work, _mb_read(cost), wall, cpu, ratio]


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f}"


def _mb_read(cost: Cost) -> str:
    return f"{cost.read_bytes / 1e6:.1f}"

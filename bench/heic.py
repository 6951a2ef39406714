"""HEIC from its embedded preview (issue 10): how much faster, and what it does to the clusters.

(a) Decode rate. setA photos upscaled to 4032x3024 (12 MP, every fifth portrait) saved as HEIC
    with a 512-px thumbnail, as phones store them. Each is read, hashed and decoded to the
    model's 224x224 input the way ingest does (`read_photo` + `decode_rgb`), once with
    pillow-heif's thumbnails switched off (`pillow_heif.options.THUMBNAILS = False`: the full
    12 MP decode, the behaviour before) and once with them on (the preview), interleaved, each
    run timing both; the ratio is the median of per-run ratios. `decode_for_model` (the same
    decode, also scaling the 320-px thumbnail kept in the state directory; its WebP encoding is
    not included) is timed beside them.
(b) Clusters. All of setA as HEIC (long side upscaled to 1024, 512-px thumbnail), each photo
    decoded both ways and embedded with the real model (float32); adjusted Rand index of
    k-means at the true K (`clustering.fit`, mean over seeds) against the folder labels, and the
    cosine similarity between each photo's two vectors. The thumbnail libheif stores is the
    source scaled to 512 and encoded on its own, whatever the size of the primary image, so a
    1024-px primary tests the same preview as a 12 MP one at a twelfth of the encoding time.

The HEICs are made once into bench/out/heic/ (quality 90; x265 "ultrafast", as its default
preset takes ~40 s for one 12 MP photo on this machine).
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from bench.common import DATASETS, OUT, REPO, Section, machine, stopwatch, table
from photocluster import clustering, photos, weights
from photocluster.embedder import INPUT_SIZE, PAD_RGB, Vgg16Embedder, configure_threads

COMMAND = ".venv/bin/python -m bench heic"
CACHE = OUT / "heic"
WEIGHTS_CACHE = REPO / ".test-cache" / "weights"
CAMERA_SIZE = (4032, 3024)  # width, height
QUALITY_EDGE = 1024  # long side of the HEICs of part (b)
PREVIEW_BOX = 512  # the embedded thumbnail's long side
RATE_PHOTOS, QUICK_RATE_PHOTOS = 8, 3
RUNS, QUICK_RUNS = 5, 3
QUICK_QUALITY_PHOTOS = 80  # every n-th photo of setA in quick mode
SEEDS = (0, 1, 2, 3, 4)
MAX_PIXELS = 100_000_000
HEIC_QUALITY, X265_PRESET = 90, "ultrafast"
HEIC_PARAMS = {"quality": HEIC_QUALITY, "enc_params": {"preset": X265_PRESET}}
MADE = CACHE / f"q{HEIC_QUALITY}-{X265_PRESET}-{PREVIEW_BOX}"  # what the files were made with

Images = npt.NDArray[np.uint8]  # (n, 224, 224, 3) uint8 RGB


@dataclass(frozen=True)
class Rates:
    """Per run: wall seconds and process CPU seconds for the whole set, by way of decoding."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    photos: int
    megabytes: float


@dataclass(frozen=True)
class Quality:
    photos: int
    previews: int  # photos decoded from their thumbnail
    narrow: int  # photos whose thumbnail's shorter side is under 224 px (aspect > 512 / 224)
    ari_full: list[float]
    ari_preview: list[float]
    cosines: npt.NDArray[np.float32]  # (n,)
    pixel_diff: float  # mean absolute difference of the two 224 inputs, 8-bit levels
    k: int


# --- the photos ----------------------------------------------------------------------------


def set_a() -> tuple[list[Path], list[str]]:
    paths = sorted((DATASETS / "setA").glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no photos in {DATASETS / 'setA'}")
    return paths, [path.parent.name for path in paths]


def camera_heics(count: int) -> list[Path]:
    """`count` 12 MP HEICs with a 512-px thumbnail: setA photos spread over the categories."""
    sources = set_a()[0]
    paths = []
    for number in range(count):
        path = MADE / "camera" / f"IMG_{number:04d}.heic"
        size = CAMERA_SIZE if number % 5 else CAMERA_SIZE[::-1]
        _make(path, lambda n=number, s=size: _rgb(sources[(n * 7) % len(sources)]).resize(
            s, Image.Resampling.BICUBIC))
        paths.append(path)
    return paths


def quality_heics(sources: Sequence[Path]) -> list[Path]:
    """Each photo as HEIC, long side upscaled to QUALITY_EDGE, aspect kept, 512-px thumbnail."""
    paths = []
    for source in sources:
        path = MADE / "setA" / source.parent.name / f"{source.stem}.heic"
        _make(path, lambda s=source: _long_side(_rgb(s), QUALITY_EDGE))
        paths.append(path)
    return paths


def _make(path: Path, picture: Callable[[], Image.Image]) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    picture().save(buffer, "HEIF", thumbnails=[PREVIEW_BOX], **HEIC_PARAMS)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(buffer.getvalue())
    os.replace(temp, path)


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _long_side(image: Image.Image, edge: int) -> Image.Image:
    scale = edge / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


# --- decoding both ways --------------------------------------------------------------------


@contextlib.contextmanager
def full_decodes() -> Iterator[None]:
    """HEICs opened meanwhile show no thumbnails, so they are decoded whole (as before)."""
    previous = pillow_heif.options.THUMBNAILS
    pillow_heif.options.THUMBNAILS = False
    try:
        yield
    finally:
        pillow_heif.options.THUMBNAILS = previous


def model_input(path: Path) -> npt.NDArray[np.uint8]:
    """(224, 224, 3) uint8: read, hash and decode as ingest does."""
    photo = photos.read_photo(path.parent, path.name, max_bytes=1 << 30)
    return photos.decode_rgb(photo.data, INPUT_SIZE, MAX_PIXELS, PAD_RGB)


def model_input_and_thumbnail(path: Path) -> object:
    photo = photos.read_photo(path.parent, path.name, max_bytes=1 << 30)
    return photos.decode_for_model(photo.data, INPUT_SIZE, MAX_PIXELS, PAD_RGB)


def uses_preview(path: Path) -> bool:
    """True when decoding `path` for the model takes its embedded thumbnail."""
    with Image.open(path) as image:
        return image.draft("RGB", (INPUT_SIZE, INPUT_SIZE)) is not None


# --- (a) rate ------------------------------------------------------------------------------


WAYS = ("full", "preview", "preview + thumbnail")


def measure_rates(paths: Sequence[Path], runs: int) -> Rates:
    way_calls: dict[str, Callable[[Path], object]] = {
        "full": model_input, "preview": model_input, "preview + thumbnail":
        model_input_and_thumbnail}
    wall: dict[str, list[float]] = {way: [] for way in WAYS}
    cpu: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(runs):
        for way in WAYS:
            context = full_decodes() if way == "full" else contextlib.nullcontext()
            with context:
                with stopwatch() as took:
                    for path in paths:
                        way_calls[way](path)
                wall[way].append(took.wall)
                cpu[way].append(took.cpu)
    megabytes = sum(path.stat().st_size for path in paths) / len(paths) / 1e6
    return Rates(wall, cpu, len(paths), megabytes)


def _ratio(rates: Rates, measure: dict[str, list[float]], way: str) -> float:
    """Median over runs of (full time / `way` time): how many times faster `way` is."""
    return statistics.median(full / other for full, other in zip(
        measure["full"], measure[way], strict=True))


# --- (b) clusters --------------------------------------------------------------------------


def measure_quality(quick: bool) -> Quality:
    sources, labels = set_a()
    if quick:
        step = max(1, len(sources) // QUICK_QUALITY_PHOTOS)
        sources, labels = sources[::step], labels[::step]
    paths = quality_heics(sources)
    with full_decodes():
        full = np.stack([model_input(path) for path in paths])  # (n, 224, 224, 3)
    preview = np.stack([model_input(path) for path in paths])  # (n, 224, 224, 3)
    embedder = Vgg16Embedder(weights.resolve("auto", "auto", WEIGHTS_CACHE), "float32", 16)
    full_vectors, preview_vectors = embedder.embed(full), embedder.embed(preview)  # (n, 512)
    k = len(set(labels))
    return Quality(
        photos=len(paths),
        previews=sum(map(uses_preview, paths)),
        narrow=sum(map(_narrow, sources)),
        ari_full=_aris(full_vectors, labels, k),
        ari_preview=_aris(preview_vectors, labels, k),
        cosines=np.sum(full_vectors * preview_vectors, axis=1),  # both L2-normalised
        pixel_diff=float(np.abs(full.astype(np.int16) - preview.astype(np.int16)).mean()),
        k=k,
    )


def _narrow(source: Path) -> bool:
    with Image.open(source) as image:
        return max(image.size) * INPUT_SIZE > min(image.size) * PREVIEW_BOX


def _aris(vectors: npt.NDArray[np.float32], labels: list[str], k: int) -> list[float]:
    return [float(adjusted_rand_score(labels, clustering.fit(vectors, k, seed)[0]))
            for seed in SEEDS]


# --- the section ---------------------------------------------------------------------------


def run(quick: bool) -> Section:
    configure_threads(0)  # as the daemon does: before the first TensorFlow op
    started = time.monotonic()
    rates = measure_rates(camera_heics(QUICK_RATE_PHOTOS if quick else RATE_PHOTOS),
                          QUICK_RUNS if quick else RUNS)
    quality = measure_quality(quick)
    return Section("HEIC from its embedded preview", COMMAND, body(rates, quality, started),
                   figures(rates, quality))


def figures(rates: Rates, quality: Quality) -> dict[str, float | str]:
    return {
        "heic_preview_speedup_wall": round(_ratio(rates, rates.wall, "preview"), 1),
        "heic_preview_speedup_cpu": round(_ratio(rates, rates.cpu, "preview"), 1),
        "heic_preview_ari_full": round(statistics.mean(quality.ari_full), 3),
        "heic_preview_ari_preview": round(statistics.mean(quality.ari_preview), 3),
        "heic_preview_mean_cosine": round(float(quality.cosines.mean()), 4),
    }


def body(rates: Rates, quality: Quality, started: float) -> str:
    return "\n\n".join([_rate_text(rates), _quality_text(quality),
                        f"Whole suite {time.monotonic() - started:.0f} s; machine at the end: "
                        f"{machine()}."])


def _rate_text(rates: Rates) -> str:
    rows = []
    for way in WAYS:
        wall = statistics.median(rates.wall[way]) / rates.photos
        cpu = statistics.median(rates.cpu[way]) / rates.photos
        speedup = "1" if way == "full" else (f"**{_ratio(rates, rates.wall, way):.1f}x** / "
                                            f"{_ratio(rates, rates.cpu, way):.1f}x")
        rows.append([way, f"{1 / wall:.2f}", f"{wall * 1000:.0f}", f"{cpu * 1000:.0f}", speedup])
    runs = len(rates.wall["full"])
    return (
        f"(a) Decode rate: {rates.photos} HEIC 4032x3024 (~{rates.megabytes:.1f} MB, 512-px "
        f"thumbnail), read + hash + decode to the model's 224x224 input, one photo at a time, "
        f"{runs} interleaved runs; medians. \"full\" is the behaviour before (libheif decodes all "
        "12 MP); speed-up = median of per-run ratios, wall / CPU (all threads of the process).\n\n"
        + table(["decode", "photos/s", "wall ms/photo", "CPU ms/photo", "speed-up vs full"], rows)
    )


def _quality_text(quality: Quality) -> str:
    cosines = quality.cosines
    rows = [
        ["full decode", _mean_spread(quality.ari_full)],
        ["embedded preview", _mean_spread(quality.ari_preview)],
    ]
    delta = statistics.mean(quality.ari_preview) - statistics.mean(quality.ari_full)
    return (
        f"(b) Clusters: setA, {quality.photos} photos as HEIC (long side {QUALITY_EDGE}, "
        f"{PREVIEW_BOX}-px thumbnail; {quality.previews} of them decoded from the thumbnail; "
        f"{quality.narrow} are so wide or tall that the thumbnail's shorter side is under 224 px), "
        "real VGG16 weights, float32. ARI of k-means "
        f"at the true K = {quality.k} against the folder labels, mean (min-max) over seeds "
        f"{', '.join(map(str, SEEDS))}:\n\n"
        + table(["model input from", "ARI"], rows)
        + f"\n\nARI change (preview - full): {delta:+.3f}. Cosine similarity between each "
        f"photo's two vectors: mean {cosines.mean():.4f}, min {cosines.min():.4f}, 5th "
        f"percentile {np.percentile(cosines, 5):.4f}. Mean absolute difference of the two "
        f"224x224 inputs: {quality.pixel_diff:.2f} levels of 255."
    )


def _mean_spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

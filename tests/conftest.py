"""Shared test fixtures: a fake embedder for plumbing, config files, photo sets, real weights."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from photocluster.embedder import PAD_RGB

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
TEST_CACHE = REPO / ".test-cache"


class FakeEmbedder:
    """Colour layout as a vector: same-coloured photos land together. For plumbing tests."""

    fingerprint = "fake-embedder-1"
    input_size = 32
    pad_rgb = PAD_RGB
    dim = 512
    batch_size = 8

    def __init__(self) -> None:
        self.embedded = 0  # photos passed through the model, to prove reuse

    def embed(self, images: np.ndarray) -> np.ndarray:
        self.embedded += len(images)
        count = len(images)
        grid = images.reshape(count, 4, 8, 4, 8, 3).astype(np.float32).mean(axis=(2, 4))
        features = np.zeros((count, self.dim), np.float32)
        features[:, :48] = grid.reshape(count, 48) / 255.0 - 0.5
        features[:, 48] = 0.05  # keeps a black photo away from the zero vector
        return features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, every test of the real model runs in one worker: the session-scoped
    scan of setA (minutes of CPU) is then made once, and two model runs never compete.

    First among the hooks: xdist reads the group marks in a hook of its own, registered after
    this file and so otherwise called before this one, when no test has its mark yet."""
    for item in items:
        if item.get_closest_marker("weights") is not None:
            item.add_marker(pytest.mark.xdist_group("model"))


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`cli.main` configures the root logger, as a program should; undo it between tests."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


def write_photo(path: Path, colour: tuple[int, int, int], size: int = 64, seed: int = 0) -> Path:
    """A small JPEG of one colour (RGB) with a little noise, so each file is distinct."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(np.array(colour) + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


@pytest.fixture
def colour_library(tmp_path: Path) -> Path:
    """photos/<colour>/<colour>_<i>.jpg, 6 per colour; returns the photo root."""
    root = tmp_path / "photos"
    for name, colour in COLOURS.items():
        for index in range(6):
            write_photo(root / name / f"{name}_{index}.jpg", colour, seed=index)
    return root


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A config.toml in tmp_path with photos/, clusters and state beside it."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[paths]\nphotos = "photos"\nclusters = "clusters"\nstate = "state"\n'
        "[clustering]\nk_min = 2\nk_max = 6\n" + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def tree_snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root: proves originals are untouched."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def require_dataset(name: str) -> Path:
    folder = DATASETS / name
    if not folder.is_dir():
        pytest.skip(f"photo set {folder} is absent (tests read ../shared/datasets beside the repo)")
    return folder


def copy_dataset(name: str, target: Path) -> dict[str, str]:
    """Copy a labelled set into target; returns relative path -> label (the folder name)."""
    source = require_dataset(name)
    shutil.copytree(source, target)
    return {
        str(path.relative_to(target)): path.parent.name
        for path in sorted(target.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="session")
def real_weights() -> object:
    """The real ImageNet VGG16 weights, fetched once per checkout into .test-cache/."""
    from photocluster import weights
    from photocluster.errors import WeightsError

    try:
        return weights.resolve("auto", "auto", TEST_CACHE / "weights")
    except WeightsError as error:
        pytest.skip(f"real VGG16 weights unavailable: {error}")


MakeEmbedder = Callable[..., object]


@dataclass(frozen=True)
class Scanned:
    root: Path
    config: Path
    labels: dict[str, str]  # photo relative path -> category


@pytest.fixture(scope="session")
def scanned_set_a(tmp_path_factory: pytest.TempPathFactory, real_weights: object) -> Scanned:
    """setA copied to a temp photo folder and sorted by `photocluster scan` with the real
    weights, once per session: the quality and stability tests share this one embedding."""
    from photocluster import cli
    from photocluster.embedder import WeightsFile

    assert isinstance(real_weights, WeightsFile)
    base = tmp_path_factory.mktemp("setA")
    labels = copy_dataset("setA", base / "photos")
    shutil.copytree(real_weights.path.parent, base / "state" / "weights")  # the weights cache
    config = write_config(base)
    # the shipped k range: the elbow's knee moves with the range swept (BENCHMARKS.md)
    config.write_text(config.read_text().replace("k_max = 6", "k_max = 24"))
    assert cli.main(["-c", str(config), "scan"]) == 0
    return Scanned(base, config, labels)


def pixels_key(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()


class ReplayEmbedder:
    """The real model's vectors, looked up by the decoded pixels: real clusters without
    running TensorFlow again. A photo the scan never saw raises KeyError."""

    input_size = 224
    pad_rgb = PAD_RGB
    dim = 512
    batch_size = 16

    def __init__(self, fingerprint: str, vectors: dict[str, np.ndarray]) -> None:
        self.fingerprint = fingerprint
        self.vectors = vectors  # pixels_key of the decoded photo -> (512,) float32

    def embed(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.vectors[pixels_key(image)] for image in images])


@pytest.fixture(scope="session")
def set_a_replay(scanned_set_a: Scanned) -> ReplayEmbedder:
    """A ReplayEmbedder holding every setA vector the session's real scan stored."""
    from photocluster import photos
    from photocluster.config import load_config
    from photocluster.store import Store

    max_pixels = int(load_config(scanned_set_a.config).photos.max_megapixels * 1_000_000)
    store = Store.open_readonly(scanned_set_a.root / "state")
    try:
        paths = {r.content: r.path for r in store.files() if r.canonical}
        fingerprint = next(r.fingerprint for r in store.files() if r.fingerprint)
        assert fingerprint is not None
        ids, vectors = store.vectors(fingerprint)
    finally:
        store.close()
    table = {}
    for photo_id, vector in zip(ids, vectors, strict=True):
        data = (scanned_set_a.root / "photos" / paths[int(photo_id)]).read_bytes()
        table[pixels_key(photos.decode_rgb(
            data, ReplayEmbedder.input_size, max_pixels, ReplayEmbedder.pad_rgb
        ))] = vector
    return ReplayEmbedder(fingerprint, table)

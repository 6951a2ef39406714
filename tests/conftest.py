"""Fixtures and hooks only; what tests share otherwise lives in tests/support/."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.config import write_config
from tests.support.fakes import FakeEmbedder, ReplayEmbedder, pixels_key
from tests.support.photos import COLOURS, REPO, Scanned, copy_dataset, write_photo

TEST_CACHE = REPO / ".test-cache"


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


@pytest.fixture
def colour_library(tmp_path: Path) -> Path:
    """photos/<colour>/<colour>_<i>.jpg, 6 per colour; returns the photo root."""
    root = tmp_path / "photos"
    for name, colour in COLOURS.items():
        for index in range(6):
            write_photo(root / name / f"{name}_{index}.jpg", colour, seed=index)
    return root


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture(scope="session")
def real_weights() -> object:
    """The real ImageNet VGG16 weights, fetched once per checkout into .test-cache/."""
    from photocluster import weights
    from photocluster.errors import WeightsError

    try:
        return weights.resolve("auto", "auto", TEST_CACHE / "weights")
    except WeightsError as error:
        pytest.skip(f"real VGG16 weights unavailable: {error}")


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


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def permissive_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask set to let everyone read (022) or write (000): private outputs must
    stay private whatever it is."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)

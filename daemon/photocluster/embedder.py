"""VGG16 embeddings: ImageNet conv base, global average pooling, L2-normalised 512-d vectors.

Input is what `photos.decode_rgb` makes: (n, s, s, 3) uint8 RGB. Each weights source carries its
own preprocessing (torchvision-trained weights want RGB scaled to [0, 1] and normalised; Keras'
own weights want caffe-style BGR with the mean subtracted); a wrong pairing silently ruins the
clusters, so the pairing is part of the model fingerprint stored with every vector.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

logger = logging.getLogger(__name__)

Preprocessing = Literal["torch", "caffe"]
INPUT_SIZE = 224
DIM = 512
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# The input rule: a photo is fitted into the square with its aspect kept and padded with the
# ImageNet mean colour, which either preprocessing maps to about zero. Padding rather than
# stretching raised setA's ARI from 0.949 to 0.974 at no cost and left setC unchanged
# (BENCHMARKS.md, cluster quality). The rule's name is part of the fingerprint.
INPUT_RULE = "pad-mean"
PAD_RGB = (124, 116, 104)


class Embedder(Protocol):
    """What the pipeline needs of a model; tests substitute a fake."""

    fingerprint: str
    input_size: int
    pad_rgb: tuple[int, int, int]  # decoding pads the square input with this colour
    dim: int
    batch_size: int

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(n, s, s, 3) uint8 RGB -> (n, dim) float32, rows of unit length."""
        ...


@dataclass(frozen=True)
class WeightsFile:
    """A Keras weights file for `build_conv_base()` and the preprocessing it was trained with."""

    path: Path
    preprocessing: Preprocessing
    sha256: str  # of the source the weights came from; identifies them in the fingerprint
    origin: str  # human description for `photocluster weights`


def configure_threads(threads: int) -> None:
    """Size TensorFlow's pools for this machine; must run before the first TF op."""
    import tensorflow as tf

    count = threads or (os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        # One inter-op thread: the graph is a chain; more only adds contention on small machines.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        logger.debug("TensorFlow already initialised; thread settings unchanged")


def cpu_supports_bfloat16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    if precision == "auto":
        return "bfloat16" if cpu_supports_bfloat16() else "float32"
    return precision


def build_conv_base(dtype_policy: str = "float32") -> Any:
    """VGG16's 13 convolution layers without weights; layer names are Keras' own."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)
    try:
        return keras.applications.VGG16(
            include_top=False, weights=None, input_shape=(INPUT_SIZE, INPUT_SIZE, 3)
        )
    finally:
        keras.config.set_dtype_policy(previous)


def model_fingerprint(weights: WeightsFile, preprocessing: str, precision: str) -> str:
    """Identifies everything that changes a vector; a new fingerprint re-embeds the library."""
    text = f"vgg16-gap-l2|{INPUT_RULE}|{weights.sha256}|{preprocessing}|{INPUT_SIZE}|{precision}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Vgg16Embedder:
    """Owns the model: built once, fed batches of up to `batch_size` through one traced
    `tf.function` whose batch dimension is open."""

    input_size = INPUT_SIZE
    pad_rgb = PAD_RGB
    dim = DIM

    def __init__(
        self,
        weights: WeightsFile,
        precision: str = "auto",
        batch_size: int = 16,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        import tensorflow as tf

        self.precision = resolve_precision(precision)
        self.preprocessing: Preprocessing = preprocessing or weights.preprocessing
        self.batch_size = batch_size
        self.fingerprint = model_fingerprint(weights, self.preprocessing, self.precision)
        policy = "mixed_bfloat16" if self.precision == "bfloat16" else "float32"
        self._model = build_conv_base(policy)
        self._model.load_weights(str(weights.path))
        # The batch dimension is left open: traced once, never retraced for a short last batch,
        # and nothing is padded. Padding to a fixed batch made one settled photo cost a whole
        # batch of inference (4 s instead of 0.3 s at batch 16 on 2 cores); per-image speed on
        # CPU was the same for a fixed and an open batch dimension (bench/throughput.py).
        self._forward = tf.function(
            self._forward_batch,
            input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.uint8)],
            jit_compile=False,
        )
        self._warm_up()
        logger.info(
            "VGG16 ready: %s weights, %s preprocessing, %s, batch %d",
            weights.origin,
            self.preprocessing,
            self.precision,
            batch_size,
        )

    def _warm_up(self) -> None:
        """Trace and optimise the graph now (about a second), not on the first photo."""
        self._forward(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(n, 224, 224, 3) uint8 RGB -> (n, 512) float32 L2-normalised."""
        if images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or images.dtype != np.uint8:
            raise ValueError(f"expected (n, 224, 224, 3) uint8, got {images.shape} {images.dtype}")
        out = np.empty((len(images), DIM), np.float32)  # (n, 512)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]  # (b, 224, 224, 3) uint8
            out[start : start + len(chunk)] = self._forward(chunk).numpy()
        return out

    def _forward_batch(self, images: Any) -> Any:
        import tensorflow as tf

        features = self._model(self._preprocess(images), training=False)  # (b, 7, 7, 512)
        pooled = tf.reduce_mean(tf.cast(features, tf.float32), axis=(1, 2))  # (b, 512)
        return tf.math.l2_normalize(pooled, axis=1)

    def _preprocess(self, images: Any) -> Any:
        import tensorflow as tf

        pixels = tf.cast(images, tf.float32)
        if self.preprocessing == "torch":
            return (pixels / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
        return pixels[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR)


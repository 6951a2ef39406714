"""Embedders at the `Embedder` seam: a colour-layout fake for plumbing, a replay of the real
model's vectors, and the fake at a model's pace (the daemon harness)."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from photocluster.embedder import PAD_RGB

logger = logging.getLogger("photocluster.test_hook")


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


class PacedEmbedder(FakeEmbedder):
    """The fake embedder at a model's pace, or hung while a flag file exists."""

    def __init__(self, seconds: float, hang: Path | None) -> None:
        super().__init__()
        self.seconds, self.hang = seconds, hang

    def embed(self, images: np.ndarray) -> np.ndarray:
        if self.hang is not None and self.hang.exists():
            logger.info("test hook: embedder hung")
            while self.hang.exists():
                time.sleep(0.05)
        time.sleep(self.seconds * len(images))
        return super().embed(images)


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

"""The real VGG16 embedder: vector shape and length, batch independence, bfloat16 vs float32."""

from __future__ import annotations

import numpy as np
import pytest

from photocluster.embedder import Vgg16Embedder, WeightsFile

pytestmark = [pytest.mark.weights, pytest.mark.slow]

BATCH = 4


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """(6, 224, 224, 3) uint8: smooth colour gradients with noise, each photo different."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 1, 224, dtype=np.float32)
    pictures = []
    for index in range(6):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        across = ramp[::-1] if index % 2 else ramp
        base = np.outer(ramp, across)[..., None] * colour  # (224, 224, 3)
        noisy = base + rng.normal(0, 20, (224, 224, 3))
        pictures.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(pictures)


@pytest.fixture(scope="module")
def float32_embedder(real_weights: WeightsFile) -> Vgg16Embedder:
    return Vgg16Embedder(real_weights, "float32", BATCH)


def test_vectors_are_512_float32_of_unit_length(
    float32_embedder: Vgg16Embedder, images: np.ndarray
) -> None:
    vectors = float32_embedder.embed(images)
    assert vectors.shape == (6, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(vectors >= 0)  # ReLU features, average-pooled


def test_a_photo_gets_the_same_vector_alone_in_a_short_batch_and_in_a_full_one(
    float32_embedder: Vgg16Embedder, images: np.ndarray
) -> None:
    together = float32_embedder.embed(images)  # a full batch of 4, then a short one of 2
    alone = np.concatenate([float32_embedder.embed(images[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    np.testing.assert_allclose(float32_embedder.embed(images[1:4]), together[1:4], atol=1e-5)


def test_every_batch_length_runs_through_the_one_traced_graph(
    float32_embedder: Vgg16Embedder, images: np.ndarray
) -> None:
    for count in (1, 3, 4, 6):
        float32_embedder.embed(images[:count])
    assert float32_embedder._forward.experimental_get_tracing_count() == 1


def test_bfloat16_vectors_point_where_float32_ones_do(
    real_weights: WeightsFile, float32_embedder: Vgg16Embedder, images: np.ndarray
) -> None:
    bfloat16 = Vgg16Embedder(real_weights, "bfloat16", BATCH)
    cosines = np.sum(bfloat16.embed(images) * float32_embedder.embed(images), axis=1)
    assert np.all(cosines > 0.99), cosines
    assert bfloat16.fingerprint != float32_embedder.fingerprint


def test_anything_but_224_square_uint8_rgb_is_refused(float32_embedder: Vgg16Embedder) -> None:
    with pytest.raises(ValueError, match="224"):
        float32_embedder.embed(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        float32_embedder.embed(np.zeros((1, 224, 224, 3), np.float32))

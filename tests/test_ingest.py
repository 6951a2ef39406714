"""`ingest`: decoding overlaps the model, results match one-at-a-time embedding, stops early."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from photocluster import ingest, photos
from photocluster.store import Store
from tests.support.fakes import FakeEmbedder
from tests.support.photos import write_photo

LIMITS = ingest.Limits(max_bytes=1 << 24, max_pixels=10_000_000)
WAIT = 10.0  # seconds; only ever reached when the behaviour under test is broken

Decode = Callable[..., photos.ForModel]


class SmallBatchEmbedder(FakeEmbedder):
    batch_size = 4


def _photo_folder(root: Path, count: int) -> list[str]:
    for index in range(count):
        write_photo(root / f"p{index:02d}.jpg", (40 + 15 * index, 90, 200 - 10 * index), seed=index)
    return [f"p{index:02d}.jpg" for index in range(count)]


def _watch_decodes(monkeypatch: pytest.MonkeyPatch, on_call: Callable[[bytes], None]) -> None:
    """Wrap photos.decode_for_model (what ingest decodes with): `on_call(data)` runs at the
    start of each call. Calls are told apart by their bytes, not their order: the decoding
    threads may reach the hook in another order than they took their photos."""
    real: Decode = photos.decode_for_model

    def decode(data: bytes, size: int, max_pixels: int, fill: photos.RGB) -> photos.ForModel:
        on_call(data)
        return real(data, size, max_pixels, fill)

    monkeypatch.setattr(photos, "decode_for_model", decode)


def _stored_vectors(store: Store, fingerprint: str) -> dict[str, np.ndarray]:
    """path -> the vector of the content it holds (copies share one)."""
    ids, vectors = store.vectors(fingerprint)
    by_content = dict(zip(ids.tolist(), vectors, strict=True))
    return {r.path: by_content[r.content] for r in store.files() if r.content in by_content}


def test_the_next_batch_is_decoded_while_the_model_embeds_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _photo_folder(tmp_path / "photos", 8)  # two batches of 4
    embedding, next_batch_decoding = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    second_batch_first = (tmp_path / "photos" / paths[4]).read_bytes()

    def on_decode(data: bytes) -> None:
        if data == second_batch_first:
            next_batch_decoding.set()
            seen["embedding while decoding"] = embedding.wait(WAIT)

    class Embedder(SmallBatchEmbedder):
        def embed(self, images: np.ndarray) -> np.ndarray:
            if not embedding.is_set():
                embedding.set()
                seen["decoding while embedding"] = next_batch_decoding.wait(WAIT)
            return super().embed(images)

    _watch_decodes(monkeypatch, on_decode)
    with Store(tmp_path / "state") as store:
        report = ingest.ingest(paths, tmp_path / "photos", store, Embedder(), LIMITS)
    assert seen == {"embedding while decoding": True, "decoding while embedding": True}
    assert report.embedded == 8


def test_stored_vectors_equal_embedding_each_photo_alone(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    paths = _photo_folder(root, 11)  # batches of 4, 4 and a short one of 3
    (root / "same_as_p01.jpg").write_bytes((root / "p01.jpg").read_bytes())
    (root / "broken.jpg").write_bytes(b"not a photo at all")
    paths += ["same_as_p01.jpg", "broken.jpg"]
    embedder = SmallBatchEmbedder()
    with Store(tmp_path / "state") as store:
        report = ingest.ingest(paths, root, store, embedder, LIMITS)
        stored = _stored_vectors(store, embedder.fingerprint)
    alone = FakeEmbedder()
    for path in paths[:-1]:
        image = photos.decode_rgb(
            (root / path).read_bytes(), alone.input_size, LIMITS.max_pixels, alone.pad_rgb
        )
        np.testing.assert_array_equal(stored[path], alone.embed(image[None])[0])
    assert set(stored) == set(paths[:-1])
    # The copy arrives after p01 was stored: its vector is reused, not computed again.
    assert (report.embedded, report.reused, report.failed) == (11, 1, 1)


@pytest.mark.parametrize("scan_above", [1000, 0], ids=["looked-up", "scanned"])
def test_a_touched_photo_reuses_its_vector_without_being_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_above: int
) -> None:
    root = tmp_path / "photos"
    paths = _photo_folder(root, 3)
    embedder = SmallBatchEmbedder()
    with Store(tmp_path / "state") as store:
        ingest.ingest(paths, root, store, embedder, LIMITS)
        before = _stored_vectors(store, embedder.fingerprint)
        os.utime(root / "p01.jpg", ns=(1, 1))  # e.g. a sync client rewrote the same bytes
        decoded: list[bytes] = []
        _watch_decodes(monkeypatch, decoded.append)
        monkeypatch.setattr(ingest, "_SCAN_ABOVE", scan_above)
        embedder.embedded = 0
        report = ingest.ingest(["p01.jpg"], root, store, embedder, LIMITS)
        after = _stored_vectors(store, embedder.fingerprint)
        record = store.file("p01.jpg")
    assert record is not None and record.mtime_ns == 1
    assert (decoded, embedder.embedded, report.reused) == ([], 0, 1)
    np.testing.assert_array_equal(after["p01.jpg"], before["p01.jpg"])


def test_a_stop_request_leaves_batches_not_yet_started_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = ingest.PREFETCH_BATCHES + 3
    paths = _photo_folder(tmp_path / "photos", 4 * batches)
    decoded: list[bytes] = []
    _watch_decodes(monkeypatch, decoded.append)
    with Store(tmp_path / "state") as store:
        report = ingest.ingest(
            paths, tmp_path / "photos", store, SmallBatchEmbedder(), LIMITS, stop=lambda: True
        )
        assert len(store.files()) == 4
    assert report.embedded == 4
    # The batches decoded ahead may finish; the ones after them are never started.
    assert len(decoded) <= 4 * (1 + ingest.PREFETCH_BATCHES)


def test_one_settled_photo_is_embedded_as_a_batch_of_one(tmp_path: Path) -> None:
    paths = _photo_folder(tmp_path / "photos", 1)
    sizes: list[int] = []

    class Embedder(SmallBatchEmbedder):
        def embed(self, images: np.ndarray) -> np.ndarray:
            sizes.append(len(images))
            return super().embed(images)

    with Store(tmp_path / "state") as store:
        ingest.ingest(paths, tmp_path / "photos", store, Embedder(), LIMITS)
    assert sizes == [1]

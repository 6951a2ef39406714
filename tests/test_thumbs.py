"""thumbs.py: thumbnails kept once by content hash, private, atomic, fanned out."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster import fsutil, photos, thumbs
from photocluster.embedder import PAD_RGB
from photocluster.errors import BadPhotoError
from photocluster.thumbs import Thumbnails, thumbnail_from_file
from tests.support.modes import mode_of

MAX_PIXELS, MAX_BYTES = 100_000_000, 50_000_000
HASH = "0123456789abcdef0123456789abcdef"
OTHER = "ab" + "0" * 30


def picture(width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8: smooth gradients, so a lossy round trip stays close."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    red, green = 255 * xs / max(1, width - 1), 255 * ys / max(1, height - 1)
    blue = np.full_like(red, 90)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Thumbnails:
    return Thumbnails(tmp_path / "state" / "thumbnails")


# ---------------------------------------------------------------------------- layout


def test_path_for_fans_out_by_the_first_two_hex_digits(store: Thumbnails) -> None:
    assert store.path_for(HASH) == store.folder / "01" / f"{HASH}{thumbs.SUFFIX}"
    assert store.path_for(OTHER).parent.name == "ab"


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", "0123ABCDEF0123", "01/23456789", "abc"])
def test_path_for_refuses_what_is_not_a_lower_case_hex_hash(store: Thumbnails, bad: str) -> None:
    with pytest.raises(ValueError, match="not a content hash"):
        store.path_for(bad)


def test_webp_is_used_where_opencv_encodes_it() -> None:
    assert thumbs.SUFFIX == ".webp"  # this build of OpenCV has WebP; the fallback is tested below


# ---------------------------------------------------------------------------- put, read, remove


def test_put_then_read_round_trips_a_thumbnail(store: Thumbnails) -> None:
    image = picture(320, 240)
    store.put(HASH, image)
    found = store.read(HASH)
    assert found is not None
    assert found.shape == (240, 320, 3) and found.dtype == np.uint8
    assert float(np.abs(found.astype(int) - image.astype(int)).mean()) < 4.0


def test_put_keeps_the_colour_channels_in_rgb_order(store: Thumbnails) -> None:
    red = np.zeros((40, 60, 3), np.uint8)
    red[:, :, 0] = 255
    store.put(HASH, red)
    found = store.read(HASH)
    assert found is not None
    assert abs(int(found[20, 30, 0]) - 255) < 8 and int(found[20, 30, 2]) < 8


def test_a_thumbnail_written_as_jpeg_where_webp_is_unavailable_reads_back(
    store: Thumbnails, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thumbs, "SUFFIX", ".jpg")
    store.put(HASH, picture(100, 80))
    assert store.path_for(HASH).name == f"{HASH}.jpg"
    assert store.path_for(HASH).read_bytes()[:3] == b"\xff\xd8\xff"
    found = store.read(HASH)
    assert found is not None and found.shape == (80, 100, 3)


def test_has_and_read_report_a_missing_thumbnail(store: Thumbnails) -> None:
    assert not store.has(HASH)
    assert store.read(HASH) is None


def test_a_torn_thumbnail_reads_as_missing(store: Thumbnails) -> None:
    store.put(HASH, picture(64, 48))
    store.path_for(HASH).write_bytes(b"")  # what delayed allocation leaves after a power cut
    assert not store.has(HASH)
    store.path_for(HASH).write_bytes(b"RIFF\0\0\0\0WEBPgarbage")
    assert store.read(HASH) is None


def test_put_replaces_an_existing_thumbnail(store: Thumbnails) -> None:
    store.put(HASH, picture(64, 48))
    store.put(HASH, picture(30, 20))
    found = store.read(HASH)
    assert found is not None and found.shape == (20, 30, 3)


def test_remove_deletes_a_thumbnail_and_ignores_a_missing_one(store: Thumbnails) -> None:
    store.put(HASH, picture(64, 48))
    store.remove(HASH)
    store.remove(HASH)
    assert not store.has(HASH) and not store.path_for(HASH).exists()


def test_put_refuses_what_is_not_an_rgb_image(store: Thumbnails) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        store.put(HASH, np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        store.put(HASH, np.zeros((10, 10, 3), np.float32))
    assert not store.path_for(HASH).exists()


def test_hashes_lists_stored_thumbnails_only(store: Thumbnails) -> None:
    assert list(store.hashes()) == []
    for content_hash in (OTHER, HASH):
        store.put(content_hash, picture(16, 16))
    (store.folder / "01" / "notes.txt").write_text("foreign")
    (store.folder / "01" / f"{fsutil.TEMP_PREFIX}1-ab-{HASH}{thumbs.SUFFIX}").write_bytes(b"x")
    (store.folder / "zz").mkdir()
    assert list(store.hashes()) == [HASH, OTHER]


# ---------------------------------------------------------------------------- crash safety


def test_a_write_that_fails_half_way_leaves_the_old_thumbnail_and_no_temp_file(
    store: Thumbnails, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put(HASH, picture(64, 48))
    before = store.path_for(HASH).read_bytes()
    real_write = Path.write_bytes

    def half_then_fail(path: Path, data: bytes) -> int:
        real_write(path, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        store.put(HASH, picture(30, 20))
    monkeypatch.undo()
    assert store.path_for(HASH).read_bytes() == before
    assert os.listdir(store.path_for(HASH).parent) == [store.path_for(HASH).name]


def test_remove_leftovers_deletes_temp_files_of_interrupted_writes(store: Thumbnails) -> None:
    store.put(HASH, picture(16, 16))
    temp = fsutil.temp_name(store.path_for(HASH))
    temp.write_bytes(b"half")
    store.remove_leftovers()
    assert not temp.exists() and store.has(HASH)


# ---------------------------------------------------------------------------- modes


def test_thumbnails_are_private_under_a_permissive_umask(
    store: Thumbnails, permissive_umask: int
) -> None:
    store.put(HASH, picture(64, 48))
    store.put(OTHER, picture(64, 48))
    assert mode_of(store.folder) == 0o700
    assert mode_of(store.folder / "01") == mode_of(store.folder / "ab") == 0o700
    assert mode_of(store.path_for(HASH)) == mode_of(store.path_for(OTHER)) == 0o600


# ---------------------------------------------------------------------------- from a photo


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(1600, 1200, (240, 320, 3)), (900, 1200, (320, 240, 3)), (2000, 500, (80, 320, 3))],
    ids=["landscape", "portrait", "panorama"],
)
def test_thumbnail_from_file_has_long_side_320_and_keeps_the_aspect(
    tmp_path: Path, width: int, height: int, expected: tuple[int, int, int]
) -> None:
    data = jpeg(picture(width, height))
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / "IMG.jpg").write_bytes(data)
    content_hash, image = thumbnail_from_file(tmp_path, "2024/IMG.jpg", MAX_BYTES, MAX_PIXELS)
    assert content_hash == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert image.shape == expected


def test_thumbnail_from_file_keeps_a_small_photo_at_its_size(tmp_path: Path) -> None:
    (tmp_path / "small.jpg").write_bytes(jpeg(picture(200, 150)))
    assert thumbnail_from_file(tmp_path, "small.jpg", MAX_BYTES, MAX_PIXELS)[1].shape == (
        150, 200, 3)


def test_thumbnail_from_file_reads_safely(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "IMG.jpg").write_bytes(jpeg(picture(64, 48)))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadPhotoError, match="a parent folder is a symbolic link"):
        thumbnail_from_file(tmp_path / "photos", "escape/IMG.jpg", MAX_BYTES, MAX_PIXELS)
    with pytest.raises(FileNotFoundError):
        thumbnail_from_file(tmp_path / "photos", "gone.jpg", MAX_BYTES, MAX_PIXELS)


def test_the_thumbnail_of_a_model_decode_is_stored_and_read_back(store: Thumbnails) -> None:
    data = jpeg(picture(1200, 900))
    content_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
    square, thumb, _ = photos.decode_for_model(data, 224, MAX_PIXELS, PAD_RGB)
    store.put(content_hash, thumb)
    found = store.read(content_hash)
    assert square.shape == (224, 224, 3)
    assert found is not None and found.shape == thumb.shape == (225, 300, 3)  # /4 decode

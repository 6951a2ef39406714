"""photos.py: candidates, walking a tree, reading files safely, decoding every format we accept."""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageFile

from photocluster import photos
from photocluster.embedder import PAD_RGB
from photocluster.errors import BadPhotoError
from photocluster.photos import (
    PhotoFile,
    RGBImage,
    decode,
    is_candidate,
    read_photo,
    thumbnail,
    walk,
)

SET_A = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "setA"
MAX_PIXELS = 100_000_000
RED = (255, 0, 0)


def decode_rgb(data: bytes, size: int, max_pixels: int) -> RGBImage:
    """photos.decode_rgb with the model's own padding colour, as ingest calls it."""
    return photos.decode_rgb(data, size, max_pixels, PAD_RGB)


# ---------------------------------------------------------------------------- helpers


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(
    color: tuple[int, ...], size: tuple[int, int] = (32, 32), mode: str = "RGB"
) -> Image.Image:
    return Image.new(mode, size, color)


def quadrants(width: int = 128, height: int = 64) -> Image.Image:
    """Four distinct quadrant colours: every flip and rotation of it looks different."""
    pixels = np.zeros((height, width, 3), np.uint8)
    half_h, half_w = height // 2, width // 2
    pixels[:half_h, :half_w] = (255, 0, 0)
    pixels[:half_h, half_w:] = (0, 255, 0)
    pixels[half_h:, :half_w] = (0, 0, 255)
    pixels[half_h:, half_w:] = (255, 255, 255)
    return Image.fromarray(pixels)


def with_orientation(image: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def mean_diff(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first.astype(np.int16) - second.astype(np.int16)).mean())


def assert_colour(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 8) -> None:
    centre = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
    assert np.abs(centre - np.array(colour)).max() <= tolerance, (centre, colour)


def reason_of(call: Callable[[], object]) -> str:
    with pytest.raises(BadPhotoError) as caught:
        call()
    return caught.value.reason


def png_header(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose IHDR claims width x height."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_with_faked_sof(width: int, height: int) -> bytes:
    data = bytearray(encode(solid(RED, (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def detailed_photo(width: int, height: int) -> Image.Image:
    """A smooth but structured picture (gradients, discs), like a photo for scaling purposes."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 127 + 127 * np.sin(xs / width * 6)
    green = 127 + 127 * np.cos(ys / height * 5)
    blue = np.where((xs - width / 3) ** 2 + (ys - height / 2) ** 2 < (height / 4) ** 2, 230, 40)
    pixels = np.stack([red, green, blue], axis=-1).astype(np.uint8)  # (h, w, 3)
    return Image.fromarray(pixels)


# ---------------------------------------------------------------------------- is_candidate


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IMG_0001.jpg", True),
        ("IMG_0001.JPG", True),
        ("photo.Jpeg", True),
        ("scan.png", True),
        ("a.webp", True),
        ("a.bmp", True),
        ("a.tif", True),
        ("a.TIFF", True),
        ("IMG_1.HEIC", True),
        ("a.heif", True),
        ("with space.jpg", True),
        ("2024/01/IMG_1.jpg", True),
        (os.fsdecode(b"caf\xe9.jpg"), True),
        (".hidden.jpg", False),
        (".syncthing.IMG_1.jpg.tmp", False),
        (".IMG_1.jpg.AbC123", False),
        ("2024/.IMG_1.jpg", False),
        ("~IMG_1.jpg", False),
        ("IMG_1.jpg.partial", False),
        ("IMG_1.jpg.tmp", False),
        ("IMG_1.tmp", False),
        ("IMG_1.jpg.crdownload", False),
        ("IMG_1.jpg.part", False),
        ("IMG_1.jpg.json", False),
        ("metadata.json", False),
        ("VID_1.mp4", False),
        ("VID_1.MOV", False),
        ("anim.gif", False),
        ("jpg", False),
        ("README", False),
    ],
)
def test_is_candidate_accepts_photo_suffixes_and_refuses_temp_names(
    name: str, expected: bool
) -> None:
    assert is_candidate(name) is expected


def test_photo_suffixes_are_lower_case_with_dot() -> None:
    assert all(
        suffix.startswith(".") and suffix == suffix.lower() for suffix in photos.PHOTO_SUFFIXES
    )
    assert {".jpg", ".jpeg", ".png", ".heic"} <= photos.PHOTO_SUFFIXES


# ---------------------------------------------------------------------------- walk


def make_file(path: Path | bytes, content: bytes = b"x") -> None:
    with open(path, "wb") as handle:
        handle.write(content)


@pytest.fixture
def photo_tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "c" / "d").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "dir.jpg").mkdir()
    make_file(root / "a.jpg", b"12345")
    make_file(root / "a" / "b.jpg")
    make_file(root / "a" / ".b.jpg.tmp")
    make_file(root / "c" / "d" / "e.PNG")
    make_file(root / "c" / "notes.txt")
    make_file(root / "c" / "IMG.jpg.json")
    make_file(root / ".hidden" / "secret.jpg")
    make_file(root / "dir.jpg" / "inside.jpg")
    make_file(root / "with space.jpg")
    make_file(root / "new\nline.jpg")
    make_file(os.path.join(os.fsencode(root), b"caf\xe9.jpg"))
    os.mkfifo(root / "fifo.jpg")
    (root / "link.jpg").symlink_to(root / "a.jpg")
    (root / "dangling.jpg").symlink_to(root / "missing.jpg")
    (root / "linked_dir").symlink_to(root / "c", target_is_directory=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    make_file(outside / "elsewhere.jpg")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    return root


def test_walk_yields_candidate_regular_files_only_without_following_symlinks(
    photo_tree: Path,
) -> None:
    found = [relative for relative, _ in walk(photo_tree)]
    assert found == sorted(
        [
            "a.jpg",
            "a/b.jpg",
            "c/d/e.PNG",
            "dir.jpg/inside.jpg",
            "with space.jpg",
            "new\nline.jpg",
            os.fsdecode(b"caf\xe9.jpg"),
        ]
    )


def test_walk_returns_sorted_relative_posix_paths(photo_tree: Path) -> None:
    found = [relative for relative, _ in walk(photo_tree)]
    assert found == sorted(found)
    assert all(not relative.startswith("/") and "\\" not in relative for relative in found)


def test_walk_paths_round_trip_non_utf8_names(photo_tree: Path) -> None:
    found = [relative for relative, _ in walk(photo_tree)]
    undecodable = [relative for relative in found if os.fsencode(relative) == b"caf\xe9.jpg"]
    assert len(undecodable) == 1
    assert os.path.isfile(os.path.join(os.fsencode(photo_tree), os.fsencode(undecodable[0])))


def test_walk_returns_the_lstat_of_each_file(photo_tree: Path) -> None:
    stats = dict(walk(photo_tree))
    expected = os.lstat(photo_tree / "a.jpg")
    assert stats["a.jpg"].st_size == 5
    assert stats["a.jpg"].st_mtime_ns == expected.st_mtime_ns
    assert stats["a.jpg"].st_ino == expected.st_ino


def test_walk_logs_and_skips_an_unreadable_directory(
    photo_tree: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        if path.endswith("/c"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="photocluster.photos"):
        found = [relative for relative, _ in walk(photo_tree)]
    assert "c/d/e.PNG" not in found
    assert "a/b.jpg" in found
    assert "unreadable directory" in caplog.text


def test_walk_raises_when_the_root_is_missing_instead_of_looking_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(walk(tmp_path / "unmounted"))


def test_walk_sorts_a_directory_after_a_same_prefix_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    make_file(tmp_path / "a" / "z.jpg")
    make_file(tmp_path / "a.jpg")
    make_file(tmp_path / "a-b.jpg")
    found = [relative for relative, _ in walk(tmp_path)]
    assert found == sorted(found) == ["a-b.jpg", "a.jpg", "a/z.jpg"]


# ---------------------------------------------------------------------------- read_photo


def test_read_photo_returns_bytes_size_mtime_and_blake2b_hash(tmp_path: Path) -> None:
    path = tmp_path / "IMG.jpg"
    make_file(path, b"photo bytes")
    photo = read_photo(tmp_path, "IMG.jpg", max_bytes=1000)
    assert photo == PhotoFile(
        data=b"photo bytes",
        size=11,
        mtime_ns=os.stat(path).st_mtime_ns,
        content_hash=hashlib.blake2b(b"photo bytes", digest_size=16).hexdigest(),
    )
    assert len(photo.content_hash) == 32


def test_read_photo_gives_identical_content_the_same_hash(tmp_path: Path) -> None:
    make_file(tmp_path / "one.jpg", b"same")
    make_file(tmp_path / "two.jpg", b"same")
    first = read_photo(tmp_path, "one.jpg", 100)
    second = read_photo(tmp_path, "two.jpg", 100)
    assert first.content_hash == second.content_hash


def test_read_photo_reads_a_non_utf8_name(tmp_path: Path) -> None:
    make_file(os.path.join(os.fsencode(tmp_path), b"\xff\xfe.jpg"), b"data")
    assert read_photo(tmp_path, os.fsdecode(b"\xff\xfe.jpg"), 100).data == b"data"


def test_read_photo_refuses_an_empty_file(tmp_path: Path) -> None:
    make_file(tmp_path / "empty.jpg", b"")
    assert reason_of(lambda: read_photo(tmp_path, "empty.jpg", 100)) == "empty file"


def test_read_photo_refuses_a_file_over_max_bytes(tmp_path: Path) -> None:
    make_file(tmp_path / "big.jpg", b"x" * 101)
    assert "too large" in reason_of(lambda: read_photo(tmp_path, "big.jpg", 100))
    assert read_photo(tmp_path, "big.jpg", 101).size == 101


@pytest.mark.timeout(10)
def test_read_photo_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    assert reason_of(lambda: read_photo(tmp_path, "pipe.jpg", 100)) == "not a regular file (FIFO)"


@pytest.mark.timeout(10)
def test_read_photo_open_does_not_block_on_a_fifo_that_replaced_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lstat pre-check saw a regular file; then a FIFO took its place before open().
    make_file(tmp_path / "regular.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    regular = os.lstat(tmp_path / "regular.jpg")
    monkeypatch.setattr(os, "lstat", lambda path, **_: regular)
    assert reason_of(lambda: read_photo(tmp_path, "pipe.jpg", 100)) == "not a regular file (FIFO)"


def test_read_photo_refuses_a_symlink(tmp_path: Path) -> None:
    make_file(tmp_path / "real.jpg")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    assert reason_of(lambda: read_photo(tmp_path, "link.jpg", 100)) == "is a symbolic link"


def test_read_photo_refuses_a_symlink_that_replaced_the_file_after_lstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(tmp_path / "real.jpg")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    regular = os.lstat(tmp_path / "real.jpg")
    monkeypatch.setattr(os, "lstat", lambda path, **_: regular)
    assert reason_of(lambda: read_photo(tmp_path, "link.jpg", 100)) == "is a symbolic link"


def test_read_photo_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    reason = reason_of(lambda: read_photo(tmp_path, "dir.jpg", 100))
    assert reason == "not a regular file (directory)"


def test_read_photo_reports_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(tmp_path / "locked.jpg")
    real_open = os.open

    def refuse(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == "locked.jpg":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    assert reason_of(lambda: read_photo(tmp_path, "locked.jpg", 100)) == "permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permission bits")
def test_read_photo_reports_permission_denied_for_a_mode_000_file(tmp_path: Path) -> None:
    make_file(tmp_path / "locked.jpg")
    os.chmod(tmp_path / "locked.jpg", 0)
    assert reason_of(lambda: read_photo(tmp_path, "locked.jpg", 100)) == "permission denied"


def test_read_photo_reports_an_io_error_as_a_bad_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(tmp_path / "IMG.jpg")

    def failing_read(fd: int, count: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "read", failing_read)
    assert (
        reason_of(lambda: read_photo(tmp_path, "IMG.jpg", 100)) == "read error: Input/output error"
    )


def test_read_photo_lets_file_not_found_through_for_a_vanished_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_photo(tmp_path, "gone.jpg", 100)


def test_read_photo_treats_a_parent_turned_file_as_vanished(tmp_path: Path) -> None:
    make_file(tmp_path / "2024")
    with pytest.raises(FileNotFoundError):
        read_photo(tmp_path, "2024/IMG.jpg", 100)


def test_read_photo_refuses_a_file_that_grows_while_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "syncing.jpg"
    make_file(path, b"first half")
    real_read = os.read

    def read_while_appending(fd: int, count: int) -> bytes:
        with open(path, "ab") as handle:
            handle.write(b" and more")
        return real_read(fd, count)

    monkeypatch.setattr(os, "read", read_while_appending)
    reason = reason_of(lambda: read_photo(tmp_path, "syncing.jpg", 1000))
    assert reason == "file changed while being read"


def test_read_photo_reads_a_file_in_nested_folders(tmp_path: Path) -> None:
    (tmp_path / "2024" / "01").mkdir(parents=True)
    make_file(tmp_path / "2024" / "01" / "IMG.jpg", b"nested")
    assert read_photo(tmp_path, "2024/01/IMG.jpg", 100).data == b"nested"


def test_read_photo_follows_a_symlinked_root(tmp_path: Path) -> None:
    (tmp_path / "mount").mkdir()
    make_file(tmp_path / "mount" / "IMG.jpg", b"through the root link")
    (tmp_path / "photos").symlink_to(tmp_path / "mount", target_is_directory=True)
    assert read_photo(tmp_path / "photos", "IMG.jpg", 100).data == b"through the root link"


def test_read_photo_refuses_a_symlinked_parent_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "photos", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    make_file(outside / "IMG.jpg", b"secret")
    (root / "2024").symlink_to(outside, target_is_directory=True)
    reason = reason_of(lambda: read_photo(root, "2024/IMG.jpg", 100))
    assert reason == "a parent folder is a symbolic link"


@pytest.mark.parametrize("relative", ["../IMG.jpg", "/etc/passwd", "a//IMG.jpg", "./IMG.jpg", ""])
def test_read_photo_refuses_a_path_that_is_not_plainly_below_the_root(
    tmp_path: Path, relative: str
) -> None:
    with pytest.raises(ValueError, match="not a path below the photo root"):
        read_photo(tmp_path, relative, 100)


@pytest.fixture
def nested_and_outside(tmp_path: Path) -> tuple[Path, Path]:
    """photos/a/b/IMG.jpg ("inside"), and outside/, outside/b/ each with an IMG.jpg ("secret")."""
    root, outside = tmp_path / "photos", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (outside / "b").mkdir(parents=True)
    make_file(root / "a" / "b" / "IMG.jpg", b"inside")
    make_file(outside / "IMG.jpg", b"secret")
    make_file(outside / "b" / "IMG.jpg", b"secret")
    return root, outside


@pytest.mark.parametrize(
    ("trigger", "swapped", "refused"),
    [
        ("a", "a", True),  # swapped just before it is opened
        ("a", "a/b", True),  # the next folder down swapped while its parent is being opened
        ("b", "a", False),  # swapped after it was opened: the read stays in the real folder
        ("IMG.jpg", "a/b", False),  # the file's own folder swapped just before the file opens
    ],
)
def test_read_photo_never_reads_outside_when_a_parent_is_swapped_for_a_symlink(
    nested_and_outside: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    trigger: str,
    swapped: str,
    refused: bool,
) -> None:
    root, outside = nested_and_outside
    real_open = os.open
    opened: list[str] = []  # the real path behind every descriptor opened
    swaps: list[str] = []

    def swap_then_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fsdecode(path).rsplit("/", 1)[-1] == trigger and not swaps:
            swaps.append(swapped)
            folder = root / swapped
            folder.rename(folder.with_name(folder.name + "-moved"))
            target = outside / "b" if swapped.endswith("b") else outside
            folder.symlink_to(target, target_is_directory=True)
        descriptor = real_open(path, flags, *args, **kwargs)
        opened.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        return descriptor

    monkeypatch.setattr(os, "open", swap_then_open)
    if refused:
        reason = reason_of(lambda: read_photo(root, "a/b/IMG.jpg", 100))
        assert reason == "a parent folder is a symbolic link"
    else:
        assert read_photo(root, "a/b/IMG.jpg", 100).data == b"inside"
    assert swaps == [swapped]
    assert not [path for path in opened if path.startswith(str(outside))]


# ---------------------------------------------------------------------------- decode_rgb: basics


def test_decode_rgb_returns_size_by_size_uint8_rgb() -> None:
    image = decode_rgb(encode(quadrants(), "JPEG"), 224, MAX_PIXELS)
    assert image.shape == (224, 224, 3)
    assert image.dtype == np.uint8
    assert decode_rgb(encode(quadrants(), "PNG"), 50, MAX_PIXELS).shape == (50, 50, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_decode_rgb_keeps_rgb_channel_order(fmt: str) -> None:
    image = decode_rgb(encode(solid(RED), fmt), 16, MAX_PIXELS)
    assert_colour(image, RED)


def test_decode_rgb_decodes_a_one_pixel_image() -> None:
    image = decode_rgb(encode(solid((10, 200, 30), (1, 1)), "PNG"), 32, MAX_PIXELS)
    assert image.shape == (32, 32, 3)
    assert (image == np.array([10, 200, 30], np.uint8)).all()


def test_decode_rgb_decodes_a_one_pixel_jpeg() -> None:
    image = decode_rgb(encode(solid((10, 200, 30), (1, 1)), "JPEG", quality=100), 8, MAX_PIXELS)
    assert image.shape == (8, 8, 3)
    assert_colour(image, (10, 200, 30))


# ---------------------------------------------------------------------------- EXIF orientation

# EXIF orientation -> the PIL transpose that makes the stored picture upright (EXIF 2.3, 0x0112).
UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def padded(image: np.ndarray, size: int) -> np.ndarray:
    """What decode_rgb should give: aspect kept, centred on the ImageNet mean colour."""
    height, width = image.shape[:2]
    new_w = min(size, max(1, round(width * size / max(height, width))))
    new_h = min(size, max(1, round(height * size / max(height, width))))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:] = PAD_RGB
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_AREA
    )
    return canvas


def upright(image: Image.Image, orientation: int, size: int) -> np.ndarray:
    method = UPRIGHT[orientation]
    turned = image if method is None else image.transpose(method)
    return padded(np.asarray(turned), size)


def test_a_wide_photo_keeps_its_aspect_on_a_mean_coloured_square() -> None:
    image = decode_rgb(encode(solid(RED, (200, 100)), "PNG"), 64, MAX_PIXELS)
    assert image.shape == (64, 64, 3)
    assert tuple(image[0, 32]) == PAD_RGB  # top band: padding
    assert tuple(image[32, 32]) == RED  # middle: the photo


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("fmt", "size"),
    [("JPEG", 64), ("JPEG", 16), ("PNG", 64)],
    ids=["jpeg-full", "jpeg-reduced", "png"],
)
def test_decode_rgb_applies_exif_orientation(orientation: int, fmt: str, size: int) -> None:
    base = quadrants(128, 64)
    decoded = decode_rgb(with_orientation(base, fmt, orientation), size, MAX_PIXELS)
    expected = upright(base, orientation, size)
    assert mean_diff(decoded, expected) < 8
    others = [upright(base, other, size) for other in UPRIGHT if other != orientation]
    assert all(mean_diff(decoded, other) > 40 for other in others)


@pytest.mark.parametrize(("orientation", "size"), [(1, 16), (6, 16), (8, 64)])
def test_decode_rgb_falls_back_to_pillow_when_opencv_cannot_decode_a_jpeg(
    orientation: int, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cv2, "imdecode", lambda buffer, flag: None)
    base = quadrants(128, 64)
    decoded = decode_rgb(with_orientation(base, "JPEG", orientation), size, MAX_PIXELS)
    assert mean_diff(decoded, upright(base, orientation, size)) < 8


def test_decode_rgb_ignores_an_unreadable_exif_block() -> None:
    data = encode(solid(RED), "JPEG", exif=b"Exif\x00\x00garbage-not-tiff")
    assert_colour(decode_rgb(data, 16, MAX_PIXELS), RED)


# ---------------------------------------------------------------------------- decode_rgb: modes


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_rgb_expands_grayscale_to_three_equal_channels(fmt: str) -> None:
    image = decode_rgb(encode(solid((90,), mode="L"), fmt), 16, MAX_PIXELS)
    assert image.shape == (16, 16, 3)
    assert_colour(image, (90, 90, 90), tolerance=2)


def test_decode_rgb_expands_a_bilevel_image() -> None:
    image = decode_rgb(encode(solid((1,), mode="1"), "PNG"), 16, MAX_PIXELS)
    assert_colour(image, (255, 255, 255), tolerance=0)


def test_decode_rgb_composites_rgba_on_white() -> None:
    picture = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # transparent black
    picture.paste((255, 0, 0, 255), (0, 0, 16, 32))  # opaque red left half
    image = decode_rgb(encode(picture, "PNG"), 32, MAX_PIXELS)
    assert_colour(image[:, :16], RED, tolerance=0)
    assert_colour(image[:, 16:], (255, 255, 255), tolerance=0)


def test_decode_rgb_blends_half_transparent_pixels_with_white() -> None:
    image = decode_rgb(encode(solid((0, 0, 0, 128), mode="RGBA"), "PNG"), 8, MAX_PIXELS)
    assert_colour(image, (127, 127, 127), tolerance=2)


def test_decode_rgb_composites_gray_with_alpha_on_white() -> None:
    image = decode_rgb(encode(solid((0, 0), mode="LA"), "PNG"), 8, MAX_PIXELS)
    assert_colour(image, (255, 255, 255), tolerance=0)


def test_decode_rgb_converts_a_palette_image() -> None:
    palette = solid(RED).convert("P")
    image = decode_rgb(encode(palette, "PNG"), 8, MAX_PIXELS)
    assert_colour(image, RED, tolerance=0)


def test_decode_rgb_composites_a_palette_transparent_colour_on_white() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    image = decode_rgb(encode(palette, "PNG", transparency=0), 8, MAX_PIXELS)
    assert_colour(image, (255, 255, 255), tolerance=0)


def test_decode_rgb_converts_a_cmyk_jpeg() -> None:
    cmyk_red = solid((0, 255, 255, 0), mode="CMYK")
    image = decode_rgb(encode(cmyk_red, "JPEG", quality=95), 16, MAX_PIXELS)
    assert_colour(image, RED)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_decode_rgb_scales_16_bit_gray_to_8_bit(fmt: str) -> None:
    levels = np.array([[0, 32768, 65535]], np.uint16).repeat(3, axis=1).repeat(3, axis=0)
    data = encode(Image.fromarray(levels), fmt)  # (3, 9) I;16
    image = decode_rgb(data, 9, MAX_PIXELS)[:, :, 0]
    assert image.shape == (9, 9)
    assert list(image[4, [1, 4, 7]]) == [0, 128, 255]


def test_decode_rgb_reduces_16_bit_colour_png() -> None:
    bgr = np.zeros((8, 8, 3), np.uint16)
    bgr[..., 2] = 65535
    ok, encoded = cv2.imencode(".png", bgr)  # Pillow cannot write 16-bit colour PNG
    assert ok
    assert_colour(decode_rgb(encoded.tobytes(), 8, MAX_PIXELS), RED, tolerance=0)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_decode_rgb_takes_the_first_frame_of_an_animation(fmt: str) -> None:
    frames = [solid(colour) for colour in (RED, (0, 255, 0), (0, 0, 255))]
    params: dict[str, Any] = {"save_all": True, "append_images": frames[1:], "duration": 100}
    if fmt == "WEBP":
        params["lossless"] = True
    data = encode(frames[0], fmt, **params)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert_colour(decode_rgb(data, 16, MAX_PIXELS), RED, tolerance=4)


def test_decode_rgb_round_trips_heic(tmp_path: Path) -> None:
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("libheif has no HEIC encoder here")
    picture = Image.new("RGB", (64, 64), RED)
    picture.paste((0, 0, 255), (32, 0, 64, 64))
    path = tmp_path / "IMG.heic"
    try:
        pillow_heif.from_pillow(picture).save(path, quality=95)
    except (RuntimeError, ValueError, OSError) as error:
        pytest.skip(f"pillow_heif cannot encode HEIC here: {error}")
    image = decode_rgb(path.read_bytes(), 32, MAX_PIXELS)
    assert image.shape == (32, 32, 3)
    assert_colour(image[:, :12], RED, tolerance=20)
    assert_colour(image[:, 20:], (0, 0, 255), tolerance=20)


# ---------------------------------------------------------------------------- HEIC previews


def heic(picture: Image.Image, thumbnails: list[int], orientation: int = 1) -> bytes:
    """`picture` as HEIC with embedded thumbnails of these box sizes; the EXIF orientation
    becomes libheif's irot/imir transforms on the image and on each thumbnail."""
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("libheif has no HEIC encoder here")
    exif = Image.Exif()
    exif[0x0112] = orientation
    try:
        return encode(picture, "HEIF", quality=90, thumbnails=thumbnails, exif=exif.tobytes(),
                      enc_params={"preset": "ultrafast"})  # x265's default takes seconds
    except (RuntimeError, ValueError, OSError) as error:
        pytest.skip(f"pillow_heif cannot encode HEIC here: {error}")


@pytest.mark.parametrize(
    ("thumbnails", "decoded"),
    [
        ([240], (180, 240, 3)),  # the embedded thumbnail's shorter side (180) >= 160: used
        ([240, 400], (180, 240, 3)),  # the smallest one that is large enough
        ([200], (360, 480, 3)),  # 200x150: too small, the full image is decoded
        ([], (360, 480, 3)),  # none: the full image
    ],
)
def test_decode_upright_takes_a_heic_from_an_embedded_thumbnail_only_when_large_enough(
    thumbnails: list[int], decoded: tuple[int, int, int]
) -> None:
    data = heic(detailed_photo(480, 360), thumbnails)
    assert decode.decode_upright(data, 160, MAX_PIXELS).shape == decoded


@pytest.mark.parametrize("orientation", [1, 2, 3, 5, 6, 8])
def test_decode_rgb_orients_a_heic_preview_as_its_full_image(orientation: int) -> None:
    picture = quadrants(480, 360)
    preview = decode_rgb(heic(picture, [240], orientation), 160, MAX_PIXELS)
    full = decode_rgb(heic(picture, [], orientation), 160, MAX_PIXELS)
    jpeg = decode_rgb(with_orientation(picture, "JPEG", orientation), 160, MAX_PIXELS)
    assert mean_diff(preview, full) < 4.0
    assert mean_diff(preview, jpeg) < 6.0  # the same EXIF orientation, applied the same way


@pytest.fixture(scope="module")
def heic_pair() -> tuple[bytes, bytes]:
    """One 640x480 picture as HEIC with a 320x240 thumbnail, and without one."""
    picture = detailed_photo(640, 480)
    return heic(picture, [320]), heic(picture, [])


def test_decode_rgb_of_a_heic_preview_matches_the_full_decode(
    heic_pair: tuple[bytes, bytes],
) -> None:
    with_preview, without = heic_pair
    assert decode.decode_upright(with_preview, 224, MAX_PIXELS).shape == (240, 320, 3)
    preview = decode_rgb(with_preview, 224, MAX_PIXELS)
    assert mean_diff(preview, decode_rgb(without, 224, MAX_PIXELS)) < 3.0


# ---------------------------------------------------------------------------- decode_for_model


@pytest.mark.parametrize(("width", "height"), [(1600, 1200), (1200, 1600), (500, 120)])
def test_decode_for_model_gives_the_model_input_and_a_320_thumbnail_keeping_its_aspect(
    width: int, height: int
) -> None:
    data = encode(detailed_photo(width, height), "JPEG", quality=90)
    square, thumb, _ = photos.decode_for_model(data, 224, MAX_PIXELS, PAD_RGB)
    assert square.shape == (224, 224, 3) and square.dtype == np.uint8
    assert thumb.dtype == np.uint8 and max(thumb.shape[:2]) == 320
    assert abs(thumb.shape[1] / thumb.shape[0] - width / height) < 0.02
    assert mean_diff(square, decode_rgb(data, 224, MAX_PIXELS)) < 2.0


def test_decode_for_model_decodes_once_at_the_scale_both_need(imdecode_flags: list[int]) -> None:
    data = encode(quadrants(4032, 3024), "JPEG", quality=90)
    square, thumb, _ = photos.decode_for_model(data, 224, MAX_PIXELS, PAD_RGB)
    assert imdecode_flags == [cv2.IMREAD_REDUCED_COLOR_8]  # 504x378: >= 224 and >= 320
    assert (square == decode_rgb(data, 224, MAX_PIXELS)).all()
    assert thumb.shape == (240, 320, 3)


def test_decode_for_model_decodes_at_the_models_scale_even_for_a_smaller_thumbnail(
    imdecode_flags: list[int],
) -> None:
    # 600x450 at /2 is 300x225: enough for the model (225 >= 224); the thumbnail takes what
    # that decode gives rather than a second, larger decode or other model input
    data = encode(detailed_photo(600, 450), "JPEG", quality=90)
    square, thumb, _ = photos.decode_for_model(data, 224, MAX_PIXELS, PAD_RGB)
    assert imdecode_flags == [cv2.IMREAD_REDUCED_COLOR_2]
    assert thumb.shape == (225, 300, 3)
    assert (square == decode_rgb(data, 224, MAX_PIXELS)).all()


def test_decode_for_model_keeps_a_small_photo_at_its_own_size() -> None:
    data = encode(quadrants(200, 100), "PNG")
    square, thumb, _ = photos.decode_for_model(data, 224, MAX_PIXELS, PAD_RGB)
    assert square.shape == (224, 224, 3)
    assert thumb.shape == (100, 200, 3)
    assert (thumb == np.asarray(quadrants(200, 100))).all()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_decode_for_model_applies_exif_orientation_to_both_and_to_the_size(
    orientation: int,
) -> None:
    data = with_orientation(quadrants(640, 320), "JPEG", orientation)
    square, thumb, size = photos.decode_for_model(data, 224, MAX_PIXELS, PAD_RGB)
    upright = decode.decode_upright(data, 1000, MAX_PIXELS)  # (h, w, 3), full size
    assert thumb.shape[:2] == ((320, 160) if orientation in (6, 8) else (160, 320))
    assert size == ((320, 640) if orientation in (6, 8) else (640, 320))  # (width, height)
    assert mean_diff(thumb, photos.fit_long_side(upright, 320)) < 2.0
    assert mean_diff(square, decode_rgb(data, 224, MAX_PIXELS)) < 2.0


def test_decode_for_model_takes_a_heic_thumbnail_large_enough_for_both(
    heic_pair: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_preview, without = heic_pair
    full_square, full_thumb, _ = photos.decode_for_model(without, 224, MAX_PIXELS, PAD_RGB)
    sizes: list[tuple[int, ...]] = []
    real_fit = decode.fit_long_side

    def spy(image: RGBImage, edge: int) -> RGBImage:
        sizes.append(image.shape[:2])
        return real_fit(image, edge)

    monkeypatch.setattr(decode, "fit_long_side", spy)
    square, thumb, _ = photos.decode_for_model(with_preview, 224, MAX_PIXELS, PAD_RGB)
    assert sizes == [(240, 320)]  # decoded from the 320x240 thumbnail, not the 640x480 image
    assert mean_diff(square, full_square) < 3.0 and mean_diff(thumb, full_thumb) < 3.0


def test_decode_for_model_refuses_what_decode_rgb_refuses() -> None:
    reason = reason_of(lambda: photos.decode_for_model(b"hello", 224, MAX_PIXELS, PAD_RGB))
    assert reason.startswith("not an image")
    bomb = png_header(50000, 50000)
    assert "too large" in reason_of(lambda: photos.decode_for_model(bomb, 224, MAX_PIXELS, PAD_RGB))


def test_decode_thumbnail_fits_the_long_side(tmp_path: Path) -> None:
    data = encode(detailed_photo(900, 1200), "JPEG", quality=90)
    assert photos.decode_thumbnail(data, MAX_PIXELS).shape == (320, 240, 3)
    assert photos.decode_thumbnail(data, MAX_PIXELS, edge=100).shape == (100, 75, 3)


# ---------------------------------------------------------------------------- decode_rgb: bad input


def test_decode_rgb_refuses_empty_data() -> None:
    assert reason_of(lambda: decode_rgb(b"", 16, MAX_PIXELS)) == "empty file"


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(4096),
        b"just some text, not a png\n" * 20,
        b"\xff\xd8\xff" + os.urandom(500),
        b"\x89PNG\r\n\x1a\n" + os.urandom(200),
    ],
    ids=["random-bytes", "text", "jpeg-magic-then-junk", "png-magic-then-junk"],
)
def test_decode_rgb_refuses_data_that_is_not_an_image(data: bytes) -> None:
    reason = reason_of(lambda: decode_rgb(data, 16, MAX_PIXELS))
    assert reason.startswith(("not an image", "truncated or corrupt"))


def test_decode_rgb_refuses_text_as_not_an_image() -> None:
    assert reason_of(lambda: decode_rgb(b"hello\n", 16, MAX_PIXELS)).startswith("not an image")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.999])
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_decode_rgb_refuses_a_truncated_jpeg(keep: float, progressive: bool) -> None:
    data = encode(detailed_photo(640, 480), "JPEG", quality=90, progressive=progressive)
    cut = data[: int(len(data) * keep)]
    assert reason_of(lambda: decode_rgb(cut, 64, MAX_PIXELS)) == "truncated or corrupt JPEG"


def test_decode_rgb_refuses_a_jpeg_missing_only_its_end_marker() -> None:
    data = encode(detailed_photo(640, 480), "JPEG", quality=90)
    assert data.endswith(b"\xff\xd9")
    assert reason_of(lambda: decode_rgb(data[:-2], 64, MAX_PIXELS)) == "truncated or corrupt JPEG"


def test_decode_rgb_refuses_a_jpeg_with_a_zero_filled_tail() -> None:
    # Some sync clients preallocate the whole file and fill it in place.
    data = encode(detailed_photo(640, 480), "JPEG", quality=90)
    half = len(data) // 2
    preallocated = data[:half] + bytes(len(data) - half)
    reason = reason_of(lambda: decode_rgb(preallocated, 64, MAX_PIXELS))
    assert reason == "truncated or corrupt JPEG"


def test_decode_rgb_is_not_fooled_by_an_embedded_thumbnail_end_marker() -> None:
    # A complete JPEG inside an APP segment (like an EXIF thumbnail) carries its own FF D9.
    thumb = encode(solid(RED, (8, 8)), "JPEG")
    main = encode(detailed_photo(640, 480), "JPEG", quality=90)
    segment = b"\xff\xe2" + struct.pack(">H", len(thumb) + 2) + thumb
    with_thumb = main[:2] + segment + main[2:]
    assert_colour(decode_rgb(with_thumb, 16, MAX_PIXELS), detailed_colour(with_thumb), 40)
    cut = with_thumb[: len(with_thumb) * 2 // 3]
    assert reason_of(lambda: decode_rgb(cut, 64, MAX_PIXELS)) == "truncated or corrupt JPEG"


def detailed_colour(data: bytes) -> tuple[int, int, int]:
    centre = Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16)).getpixel((8, 8))
    assert isinstance(centre, tuple)
    return (int(centre[0]), int(centre[1]), int(centre[2]))


def test_decode_rgb_accepts_vendor_data_after_the_end_marker() -> None:
    data = encode(solid(RED, (64, 64)), "JPEG") + b"SEFH" + os.urandom(300)
    assert_colour(decode_rgb(data, 16, MAX_PIXELS), RED)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_decode_rgb_refuses_a_truncated_png(keep: float) -> None:
    data = encode(detailed_photo(200, 150), "PNG")
    cut = data[: int(len(data) * keep)]
    assert reason_of(lambda: decode_rgb(cut, 32, MAX_PIXELS)) == "truncated or corrupt PNG"


def test_decode_rgb_refuses_a_truncated_webp() -> None:
    data = encode(detailed_photo(200, 150), "WEBP", quality=80)
    reason = reason_of(lambda: decode_rgb(data[: len(data) // 2], 32, MAX_PIXELS))
    assert reason.startswith(("truncated or corrupt", "not an image"))


# ---------------------------------------------------------------------------- decompression bombs


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to decode pixels."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(cv2, "imdecode", forbidden)
    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)  # every opened file's load


@pytest.mark.timeout(10)
@pytest.mark.usefixtures("no_pixel_decoding")
def test_decode_rgb_refuses_a_50000_square_png_header_without_decoding() -> None:
    started = time.monotonic()
    reason = reason_of(lambda: decode_rgb(png_header(50000, 50000), 224, MAX_PIXELS))
    assert reason.startswith("image too large")
    assert time.monotonic() - started < 1.0


@pytest.mark.timeout(10)
@pytest.mark.usefixtures("no_pixel_decoding")
def test_decode_rgb_names_the_dimensions_of_an_oversized_png_header() -> None:
    reason = reason_of(lambda: decode_rgb(png_header(12000, 12000), 224, MAX_PIXELS))
    assert reason == "image too large: 12000x12000 pixels"


@pytest.mark.timeout(10)
@pytest.mark.usefixtures("no_pixel_decoding")
@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (50000, 50000), (65535, 65535)])
def test_decode_rgb_refuses_a_jpeg_with_a_faked_huge_frame_header(width: int, height: int) -> None:
    reason = reason_of(lambda: decode_rgb(jpeg_with_faked_sof(width, height), 224, MAX_PIXELS))
    assert reason.startswith("image too large")


def test_decode_rgb_honours_max_pixels_exactly() -> None:
    data = encode(solid(RED, (100, 100)), "PNG")
    assert decode_rgb(data, 8, max_pixels=10_000).shape == (8, 8, 3)
    reason = reason_of(lambda: decode_rgb(data, 8, max_pixels=9_999))
    assert reason == "image too large: 100x100 pixels"


# ---------------------------------------------------------------------------- reduced decoding


@pytest.fixture
def imdecode_flags(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    flags: list[int] = []
    real_imdecode = cv2.imdecode

    def spy(buffer: np.ndarray, flag: int) -> Any:
        flags.append(flag)
        return real_imdecode(buffer, flag)

    monkeypatch.setattr(cv2, "imdecode", spy)
    return flags


@pytest.mark.parametrize(
    ("width", "height", "flag"),
    [
        (4032, 3024, cv2.IMREAD_REDUCED_COLOR_8),
        (1600, 1200, cv2.IMREAD_REDUCED_COLOR_4),
        (3024, 4032, cv2.IMREAD_REDUCED_COLOR_8),
        (800, 600, cv2.IMREAD_REDUCED_COLOR_2),
        (1000, 447, cv2.IMREAD_COLOR),
        (100, 100, cv2.IMREAD_COLOR),
    ],
)
def test_decode_rgb_picks_the_largest_reduction_keeping_the_short_side(
    width: int, height: int, flag: int, imdecode_flags: list[int]
) -> None:
    data = encode(solid(RED, (width, height)), "JPEG", quality=50)
    decode_rgb(data, 224, MAX_PIXELS)
    assert imdecode_flags == [flag]


def test_reduced_decode_matches_full_decode_and_resize(imdecode_flags: list[int]) -> None:
    data = encode(detailed_photo(1600, 1200), "JPEG", quality=90)
    reduced = decode_rgb(data, 224, MAX_PIXELS)
    assert imdecode_flags == [cv2.IMREAD_REDUCED_COLOR_4]
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # (1200, 1600, 3)
    assert mean_diff(reduced, padded(full, 224)) < 2.0


def set_a_photos(count: int) -> list[Path]:
    if not SET_A.is_dir():
        pytest.skip(f"dataset folder {SET_A} is missing")
    found = sorted(SET_A.glob("*/*.jpg"))
    return found[:: max(1, len(found) // count)][:count]


@pytest.mark.datasets
def test_reduced_decode_matches_full_decode_on_real_photos_upscaled() -> None:
    for path in set_a_photos(3):
        big = Image.open(path).convert("RGB").resize((2016, 1512), Image.Resampling.BICUBIC)
        data = encode(big, "JPEG", quality=90)
        full = padded(np.asarray(big), 224)
        assert mean_diff(decode_rgb(data, 224, MAX_PIXELS), full) < 3.0, path


@pytest.mark.datasets
def test_decode_rgb_decodes_real_jpegs() -> None:
    for path in set_a_photos(5):
        image = decode_rgb(path.read_bytes(), 224, MAX_PIXELS)
        assert image.shape == (224, 224, 3), path
        assert image.std() > 5, path


# ---------------------------------------------------------------------------- thumbnail


def test_thumbnail_fits_a_wide_photo_with_black_bars(tmp_path: Path) -> None:
    make_file(tmp_path / "wide.png", encode(solid(RED, (100, 50)), "PNG"))
    square = thumbnail(tmp_path, "wide.png", 40, MAX_PIXELS)
    assert square is not None
    assert square.shape == (40, 40, 3)
    assert square.dtype == np.uint8
    assert (square[:10] == 0).all() and (square[30:] == 0).all()
    assert (square[10:30] == np.array(RED, np.uint8)).all()


def test_thumbnail_applies_exif_orientation(tmp_path: Path) -> None:
    # Stored 128x64 with orientation 6 (rotate 90 clockwise): displayed 64 wide, 128 tall.
    make_file(tmp_path / "turned.jpg", with_orientation(quadrants(128, 64), "JPEG", 6))
    square = thumbnail(tmp_path, "turned.jpg", 64, MAX_PIXELS)
    assert square is not None
    assert (square[:, :14] == 0).all() and (square[:, 50:] == 0).all()
    assert_colour(square[:32, 16:32], (0, 0, 255), tolerance=30)  # blue goes top left


@pytest.mark.parametrize(
    "make",
    [
        lambda path: None,
        lambda path: make_file(path, b"not an image"),
        lambda path: make_file(path, png_header(50000, 50000)),
        lambda path: os.mkfifo(path),
    ],
    ids=["missing", "not-an-image", "bomb", "fifo"],
)
@pytest.mark.timeout(10)
def test_thumbnail_returns_none_for_any_problem(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    make(tmp_path / "IMG.jpg")
    assert thumbnail(tmp_path, "IMG.jpg", 32, MAX_PIXELS) is None


def test_thumbnail_returns_none_for_a_symlink(tmp_path: Path) -> None:
    make_file(tmp_path / "real.png", encode(solid(RED), "PNG"))
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    assert thumbnail(tmp_path, "link.png", 32, MAX_PIXELS) is None
    assert stat.S_ISLNK(os.lstat(tmp_path / "link.png").st_mode)

"""What counts as a photo, reading one safely, and decoding it to an RGB array.

Paths are `str`, POSIX, relative to the photo root; undecodable name bytes arrive as surrogate
escapes (os.fsdecode) and are passed through untouched. Every per-file problem becomes a
`BadPhotoError` with a one-line reason, except `FileNotFoundError`, which the caller reads as
"the file vanished".

Decoding: the header is read first (PIL opens lazily) and oversized images are refused before any
pixel is allocated. JPEG goes through OpenCV with DCT-domain downscaling; everything else through
Pillow (HEIC/HEIF via pillow-heif).
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from photocluster.errors import BadPhotoError

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)

# Names sync clients and browsers give files still being written. Hidden names (".*") cover
# Syncthing's ".syncthing.x.jpg.tmp", rsync's and Nextcloud's ".x.jpg.XXXX".
_TEMP_PREFIXES = (".", "~")
_TEMP_SUFFIXES = (".partial", ".tmp", ".crdownload", ".part")

# Decoders this module lets Pillow try. A whitelist keeps exotic plugins (EPS calls Ghostscript)
# away from untrusted bytes. GIF is accepted for content even though .gif is not a candidate.
# Multi-picture JPEGs open through the JPEG factory and come back as format "MPO".
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

# A half-written file must never be embedded: Pillow raises on truncated data only while this
# stays False. Pillow's own bomb guard is a backstop above OpenCV's default ceiling (2**30,
# OPENCV_IO_MAX_IMAGE_PIXELS); the per-call `max_pixels` check is the real gate.
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = 1 << 30
pillow_heif.register_heif_opener()

# Largest DCT reduction first. Measured on a 4032x3024 q90 JPEG (setA photo upscaled, 2-core
# shared box, median of 7, decode + resize to 224): cv2 full 98 ms, REDUCED_2 44, _4 35, _8 28;
# PIL full 179 ms, draft /2 52, /4 39, /8 30. End to end (header check, EOI check, decode,
# BGR->RGB, resize) over six such JPEGs: cv2 /8 13.8 ms vs PIL draft /8 14.7 ms per image, same
# pixels (both are libjpeg-turbo 3.1). cv2 is kept; PIL draft is the fallback. The EOI check
# costs ~3 us.
_REDUCTIONS = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)

# What malformed input makes Pillow and its plugins raise; anything else is a bug and propagates.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)

_FILE_TYPES = (
    (stat.S_ISLNK, "is a symbolic link"),
    (stat.S_ISDIR, "not a regular file (directory)"),
    (stat.S_ISFIFO, "not a regular file (FIFO)"),
    (stat.S_ISSOCK, "not a regular file (socket)"),
    (stat.S_ISCHR, "not a regular file (character device)"),
    (stat.S_ISBLK, "not a regular file (block device)"),
)

_THUMBNAIL_PADDING = (0, 0, 0)  # black letterbox around a thumbnail that is not square
IMAGENET_MEAN_RGB = (124, 116, 104)  # model input padding: ~0 after either preprocessing

RGBImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class PhotoFile:
    data: bytes
    size: int
    mtime_ns: int
    content_hash: str  # blake2b, 16-byte digest, hex


def is_candidate(name: str) -> bool:
    """True when the basename of `name` has a photo suffix and is not a sync client's temp name."""
    base = name.rsplit("/", 1)[-1]
    lowered = base.lower()
    if base.startswith(_TEMP_PREFIXES) or lowered.endswith(_TEMP_SUFFIXES):
        return False
    return os.path.splitext(lowered)[1] in PHOTO_SUFFIXES


def walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative POSIX path, lstat) of every candidate regular file under `root`.

    Symlinks (to files or directories) are never followed, hidden directories are skipped, an
    unreadable subdirectory is logged and skipped. Paths come in sorted (str) order. If `root`
    itself cannot be listed the OSError propagates: an unmounted root must not look empty.
    """
    stack = [iter(_sorted_entries(os.fspath(root), ""))]
    while stack:
        for relative, entry in stack[-1]:
            if entry.is_dir(follow_symlinks=False):
                if not entry.name.startswith("."):
                    children = _list_subdir(entry.path, relative)
                    stack.append(iter(children))
                    break
            elif is_candidate(entry.name):
                found = _regular_lstat(entry)
                if found is not None:
                    yield relative, found
        else:
            stack.pop()


def _sorted_entries(directory: str, prefix: str) -> list[tuple[str, os.DirEntry[str]]]:
    """Entries of `directory` as (relative path, entry), in an order that makes the depth-first
    walk globally sorted: a directory sorts as "name/", i.e. as the paths beneath it do."""
    with os.scandir(directory) as listing:
        entries = list(listing)
    keyed = [(prefix + entry.name, entry) for entry in entries]
    keyed.sort(key=lambda item: item[0] + "/" if item[1].is_dir(follow_symlinks=False) else item[0])
    return keyed


def _list_subdir(directory: str, relative: str) -> list[tuple[str, os.DirEntry[str]]]:
    try:
        return _sorted_entries(directory, relative + "/")
    except OSError as error:
        logger.warning("skipping unreadable directory %r: %s", relative, error.strerror)
        return []


def _regular_lstat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        found = entry.stat(follow_symlinks=False)
    except OSError as error:  # vanished between listing and stat
        logger.debug("skipping %r: %s", entry.path, error.strerror)
        return None
    return found if stat.S_ISREG(found.st_mode) else None


def read_photo(path: Path, max_bytes: int) -> PhotoFile:
    """Read the whole file at `path` once, without following a symlink or blocking on a FIFO.

    Raises FileNotFoundError when it vanished (or a parent stopped being a directory), and
    BadPhotoError for anything else that makes it unusable: not a regular file, empty, larger
    than `max_bytes`, unreadable, or changed while being read.
    """
    _refuse_non_regular(path)  # before open(): opening a device or FIFO can have effects
    fd = _open_nofollow(path)
    try:
        before = os.fstat(fd)
        _check_regular(before, max_bytes)
        data = _read_all(fd, before.st_size)
        after = os.fstat(fd)
    except OSError as error:
        raise BadPhotoError(f"read error: {error.strerror or error}") from error
    finally:
        os.close(fd)
    if len(data) != before.st_size or _changed(before, after):
        raise BadPhotoError("file changed while being read")
    content_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
    return PhotoFile(data, before.st_size, before.st_mtime_ns, content_hash)


def _refuse_non_regular(path: Path) -> None:
    try:
        found = os.lstat(path)
    except OSError as error:
        raise _open_error(error) from error
    _check_type(found.st_mode)


def _open_nofollow(path: Path) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open(path, flags)
    except OSError as error:
        raise _open_error(error) from error


def _open_error(error: OSError) -> Exception:
    """Map an lstat/open failure: vanished stays FileNotFoundError, the rest is a bad photo."""
    if isinstance(error, FileNotFoundError):
        return error
    if error.errno == errno.ENOTDIR:  # a parent was replaced by a file: the photo is gone
        return FileNotFoundError(errno.ENOENT, "a parent is no longer a directory", error.filename)
    if error.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink that replaced the file
        return BadPhotoError("is a symbolic link")
    if isinstance(error, PermissionError):
        return BadPhotoError("permission denied")
    return BadPhotoError(f"cannot open: {error.strerror or error}")


def _check_type(mode: int) -> None:
    for is_type, reason in _FILE_TYPES:
        if is_type(mode):
            raise BadPhotoError(reason)
    if not stat.S_ISREG(mode):
        raise BadPhotoError("not a regular file")


def _check_regular(found: os.stat_result, max_bytes: int) -> None:
    _check_type(found.st_mode)
    if found.st_size == 0:
        raise BadPhotoError("empty file")
    if found.st_size > max_bytes:
        raise BadPhotoError(f"file too large: {found.st_size} bytes (limit {max_bytes})")


def _read_all(fd: int, size: int) -> bytes:
    """Read up to size + 1 bytes: one extra byte shows the file grew after fstat."""
    chunks: list[bytes] = []
    remaining = size + 1
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)


def decode_rgb(data: bytes, size: int, max_pixels: int) -> RGBImage:
    """Decode an encoded image to a (size, size, 3) uint8 RGB array.

    EXIF orientation is applied, then the picture is fitted into the square with its aspect
    kept (INTER_AREA) and padded with the ImageNet mean colour, which either preprocessing
    maps to about zero. Padding rather than stretching raised setA's ARI from 0.949 to 0.974
    at no cost and left setC unchanged (BENCHMARKS.md, cluster quality).
    Raises BadPhotoError when the header announces more than `max_pixels` pixels (checked
    before any pixel is decoded), or when the data is not an image, truncated or corrupt.
    """
    image = _decode_oriented(data, size, max_pixels)  # (h, w, 3) uint8
    return _fit_square(image, size, IMAGENET_MEAN_RGB)  # (size, size, 3) uint8


def thumbnail(path: Path, edge: int, max_pixels: int) -> RGBImage | None:
    """The photo at `path` fitted into an (edge, edge, 3) uint8 RGB square, aspect kept, padded
    black; None when it cannot be read or decoded (logged at DEBUG)."""
    try:
        photo = read_photo(path, max_bytes=_encoded_size_bound(max_pixels))
        image = _decode_oriented(photo.data, edge, max_pixels)  # (h, w, 3) uint8
    except (BadPhotoError, OSError) as error:
        logger.debug("no thumbnail for %s: %s", path, error)
        return None
    return _fit_square(image, edge, _THUMBNAIL_PADDING)


def _encoded_size_bound(max_pixels: int) -> int:
    # No sane encoding of an image we accept is larger than uncompressed 16-bit RGBA plus headers.
    return max_pixels * 8 + (1 << 20)


def _fit_square(image: RGBImage, edge: int, fill: tuple[int, int, int]) -> RGBImage:
    height, width = image.shape[:2]
    scale = edge / max(height, width)
    new_width = min(edge, max(1, round(width * scale)))
    new_height = min(edge, max(1, round(height * scale)))
    square = np.empty((edge, edge, 3), dtype=np.uint8)  # (edge, edge, 3)
    square[:] = fill
    top, left = (edge - new_height) // 2, (edge - new_width) // 2
    square[top : top + new_height, left : left + new_width] = _resize(image, new_width, new_height)
    return square


def _resize(image: RGBImage, width: int, height: int) -> RGBImage:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), np.uint8)


def _decode_oriented(data: bytes, min_side: int, max_pixels: int) -> RGBImage:
    """(h, w, 3) uint8 RGB, upright, decoded at the smallest scale whose shorter side stays
    >= min_side where the format allows it."""
    if not data:
        raise BadPhotoError("empty file")
    with _open_image(data) as image:
        _check_pixels(image.size, max_pixels)
        if image.format in _JPEG_FORMATS:
            return _decode_jpeg(data, image, min_side)
        return _decode_with_pil(image, min_side)


def _open_image(data: bytes) -> Image.Image:
    """Parse the header only; Pillow decodes no pixels until load()."""
    try:
        return Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as error:
        raise BadPhotoError("image too large (decompression bomb)") from error
    except UnidentifiedImageError as error:
        raise BadPhotoError("not an image (unknown format or corrupt header)") from error
    except _DECODE_ERRORS as error:  # e.g. a truncated WebP fails while opening
        raise BadPhotoError(f"truncated or corrupt image ({error})") from error


def _check_pixels(dimensions: tuple[int, int], max_pixels: int) -> None:
    width, height = dimensions
    if width <= 0 or height <= 0:
        raise BadPhotoError(f"corrupt image header: {width}x{height} pixels")
    if width * height > max_pixels:
        raise BadPhotoError(f"image too large: {width}x{height} pixels")


def _decode_jpeg(data: bytes, header: Image.Image, min_side: int) -> RGBImage:
    # OpenCV can hand back a partly grey picture for a truncated JPEG (4.14 here returns None,
    # but that is a version detail): a JPEG without its end-of-image marker is refused first.
    if not _has_end_marker(data):
        raise BadPhotoError("truncated or corrupt JPEG")
    flag = _reduced_flag(header.size, min_side)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)  # EXIF orientation applied
    except cv2.error:
        bgr = None
    if bgr is None:  # e.g. over OpenCV's 2**30-pixel ceiling while max_pixels allows it
        logger.debug("OpenCV could not decode a JPEG, trying Pillow")
        return _decode_with_pil(header, min_side)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)  # (h/s, w/s, 3)


def _reduced_flag(dimensions: tuple[int, int], min_side: int) -> int:
    shorter = min(dimensions)
    for scale, flag in _REDUCTIONS:
        if shorter // scale >= min_side:
            return flag
    return cv2.IMREAD_COLOR


def _has_end_marker(data: bytes) -> bool:
    """True when an EOI marker (FF D9) follows the first start-of-scan. Searching from the SOS
    skips the EXIF thumbnail's own EOI; trailing vendor data after the EOI is allowed."""
    start_of_scan = _start_of_scan(data)
    return start_of_scan is not None and data.rfind(b"\xff\xd9", start_of_scan) != -1


def _start_of_scan(data: bytes) -> int | None:
    """Offset of the first SOS marker, found by walking the marker segments after SOI."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0xDA:
            return position
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def _decode_with_pil(image: Image.Image, min_side: int) -> RGBImage:
    if image.format in _JPEG_FORMATS:
        image.draft("RGB", (min_side, min_side))  # DCT scaling; keeps both sides >= min_side
    try:
        image.load()  # first frame of an animation; raises on truncation
    except _DECODE_ERRORS as error:
        raise BadPhotoError(f"truncated or corrupt {image.format}") from error
    _apply_exif_orientation(image)
    return _to_rgb(image)


def _apply_exif_orientation(image: Image.Image) -> None:
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except _DECODE_ERRORS as error:  # unreadable EXIF: the pixels are still good
        logger.debug("ignoring unreadable EXIF orientation: %s", error)


def _to_rgb(image: Image.Image) -> RGBImage:
    """(h, w, 3) uint8 RGB from any Pillow mode: alpha composited on white, 16-bit scaled down."""
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_gray(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = _on_white(image)
    try:
        rgb = np.asarray(image.convert("RGB"))  # (h, w, 3) uint8
    except ValueError as error:
        raise BadPhotoError(f"unsupported colour mode {image.mode}") from error
    return rgb


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background


def _high_depth_gray(image: Image.Image) -> RGBImage:
    """16-bit (I;16*), 32-bit int (I) or float (F) gray -> 8-bit RGB."""
    values = np.asarray(image, dtype=np.float32)  # (h, w)
    sixteen_bit = image.mode.startswith("I;16") or float(values.max(initial=0.0)) > 255.0
    scale = 255.0 / 65535.0 if sixteen_bit else 1.0
    gray = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)  # (h, w) uint8
    return np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), dtype=np.uint8)  # (h, w, 3)

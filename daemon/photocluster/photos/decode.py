"""Decoding an encoded photo to an RGB array, safely and at the smallest useful scale.

The header is read first (PIL opens lazily) and oversized images are refused before any pixel is
allocated. JPEG goes through OpenCV with DCT-domain downscaling; everything else through Pillow
(HEIC/HEIF via pillow-heif, which decodes an embedded thumbnail instead of the full picture when
one is large enough). The padding colour of the model's square input is the embedder's rule;
callers pass it in.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from photocluster.errors import BadPhotoError
from photocluster.photos.files import read_photo

logger = logging.getLogger(__name__)

# Decoders this module lets Pillow try. A whitelist keeps exotic plugins (EPS calls Ghostscript)
# away from untrusted bytes. GIF is accepted for content even though .gif is not a candidate.
# Multi-picture JPEGs open through the JPEG factory and come back as format "MPO".
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# Formats whose `draft` decodes less than the whole picture: JPEG scales in the DCT domain;
# pillow-heif (1.8 here) decodes the smallest embedded thumbnail that is no smaller than asked
# and a true scaled copy of the image (same mode, aspect, crop, irot/imir and colour profile),
# and otherwise the full image. Its orientation is libheif's: the transforms are applied to the
# thumbnail as to the image, and the EXIF orientation is reset to 1 so it is not applied twice.
_DRAFT_FORMATS = _JPEG_FORMATS | {"HEIF"}

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

_THUMBNAIL_PADDING = (0, 0, 0)  # black letterbox around a thumbnail that is not square

RGBImage = npt.NDArray[np.uint8]
RGB = tuple[int, int, int]
THUMB_EDGE = 320  # long side of the stored thumbnail of a photo (thumbs.Thumbnails)


@dataclass(frozen=True)
class _Need:
    """The least a decode must keep: its shorter side >= short and its longer side >= long."""

    short: int
    long: int


def decode_rgb(data: bytes, size: int, max_pixels: int, fill: RGB) -> RGBImage:
    """Decode an encoded image to a (size, size, 3) uint8 RGB array.

    EXIF orientation is applied, then the picture is fitted into the square with its aspect
    kept (INTER_AREA) and padded with `fill`, the model's own padding colour (its input rule,
    `Embedder.pad_rgb`). Raises BadPhotoError when the header announces more than
    `max_pixels` pixels (checked before any pixel is decoded), or when the data is not an image,
    truncated or corrupt.
    """
    image = decode_upright(data, size, max_pixels)  # (h, w, 3) uint8
    return fit_square(image, size, fill)  # (size, size, 3) uint8


class ForModel(NamedTuple):
    """What one decode for the model yields."""

    square: RGBImage  # (size, size, 3) uint8: the model's input
    thumbnail: RGBImage  # (h, w, 3) uint8, long side at most thumb_edge
    dimensions: tuple[int, int]  # (width, height) of the original, upright, from its header


def decode_for_model(
    data: bytes, size: int, max_pixels: int, fill: RGB, thumb_edge: int = THUMB_EDGE
) -> ForModel:
    """One decode, two pictures and a size: the model's (size, size, 3) uint8 input, exactly as
    `decode_rgb` makes it, a thumbnail, (h, w, 3) uint8 with its long side at most
    `thumb_edge`, aspect kept, upright, and the original's (width, height), upright.

    The decode scale is the model's (shorter side >= size), so the vectors do not depend on
    the thumbnails: a reduced JPEG or HEIC decode of a 4:3 photo gives a thumbnail of about
    300 px on its long side rather than 320. Raises BadPhotoError as `decode_rgb` does.
    """
    header: list[tuple[int, int]] = []
    image = _decode(data, max_pixels, _Need(short=size, long=1), header)  # (h, w, 3) uint8
    return ForModel(fit_square(image, size, fill), fit_long_side(image, thumb_edge),
                    _upright(header[0], image))


def decode_thumbnail(data: bytes, max_pixels: int, edge: int = THUMB_EDGE) -> RGBImage:
    """(h, w, 3) uint8 RGB, upright, long side `edge` (a smaller photo keeps its size), aspect
    kept, decoded at the smallest scale that allows it. Raises BadPhotoError as `decode_rgb`."""
    image = _decode(data, max_pixels, _Need(short=1, long=edge))  # (h, w, 3) uint8
    return fit_long_side(image, edge)


def thumbnail(root: Path, relative: str, edge: int, max_pixels: int) -> RGBImage | None:
    """The photo `relative` (below `root`) fitted into an (edge, edge, 3) uint8 RGB square,
    aspect kept, padded black; None when it cannot be read or decoded (logged at DEBUG)."""
    try:
        photo = read_photo(root, relative, max_bytes=encoded_size_bound(max_pixels))
        image = decode_upright(photo.data, edge, max_pixels)  # (h, w, 3) uint8
    except (BadPhotoError, OSError) as error:
        logger.debug("no thumbnail for %r: %s", relative, error)
        return None
    return fit_square(image, edge, _THUMBNAIL_PADDING)


def encoded_size_bound(max_pixels: int) -> int:
    """The most bytes a file can sensibly hold for an image of at most `max_pixels` pixels."""
    # No sane encoding of an image we accept is larger than uncompressed 16-bit RGBA plus headers.
    return max_pixels * 8 + (1 << 20)


def fit_square(image: RGBImage, edge: int, fill: tuple[int, int, int]) -> RGBImage:
    height, width = image.shape[:2]
    scale = edge / max(height, width)
    new_width = min(edge, max(1, round(width * scale)))
    new_height = min(edge, max(1, round(height * scale)))
    square = np.empty((edge, edge, 3), dtype=np.uint8)  # (edge, edge, 3)
    square[:] = fill
    top, left = (edge - new_height) // 2, (edge - new_width) // 2
    square[top : top + new_height, left : left + new_width] = resize(image, new_width, new_height)
    return square


def fit_long_side(image: RGBImage, edge: int) -> RGBImage:
    """(h, w, 3) scaled down (INTER_AREA) so that its longer side is `edge`, aspect kept; an
    image already that small is returned as it is."""
    height, width = image.shape[:2]
    longer = max(height, width)
    if longer <= edge:
        return image
    scale = edge / longer
    return resize(image, max(1, round(width * scale)), max(1, round(height * scale)))


def resize(image: RGBImage, width: int, height: int) -> RGBImage:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), np.uint8)


def decode_upright(data: bytes, min_side: int, max_pixels: int) -> RGBImage:
    """(h, w, 3) uint8 RGB, upright, decoded at the smallest scale whose shorter side stays
    >= min_side where the format allows it."""
    return _decode(data, max_pixels, _Need(short=min_side, long=min_side))


def _decode(data: bytes, max_pixels: int, need: _Need,
            header: list[tuple[int, int]] | None = None) -> RGBImage:
    """(h, w, 3) uint8 RGB, upright, at the smallest scale the format offers that keeps `need`.
    The (width, height) the header announces is appended to `header` when given."""
    if not data:
        raise BadPhotoError("empty file")
    with _open_image(data) as image:
        _check_pixels(image.size, max_pixels)
        if header is not None:
            header.append(image.size)
        if image.format in _JPEG_FORMATS:
            return _decode_jpeg(data, image, need)
        return _decode_with_pil(image, need)


def _upright(dimensions: tuple[int, int], image: RGBImage) -> tuple[int, int]:
    """The header's (width, height), swapped when the EXIF orientation turned the picture."""
    width, height = dimensions
    turned = (image.shape[0] > image.shape[1]) != (height > width) and width != height
    return (height, width) if turned else (width, height)


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


def _decode_jpeg(data: bytes, header: Image.Image, need: _Need) -> RGBImage:
    # OpenCV can hand back a partly grey picture for a truncated JPEG (4.14 here returns None,
    # but that is a version detail): a JPEG without its end-of-image marker is refused first.
    if not _has_end_marker(data):
        raise BadPhotoError("truncated or corrupt JPEG")
    flag = _reduced_flag(header.size, need)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)  # EXIF orientation applied
    except cv2.error:
        bgr = None
    if bgr is None:  # e.g. over OpenCV's 2**30-pixel ceiling while max_pixels allows it
        logger.debug("OpenCV could not decode a JPEG, trying Pillow")
        return _decode_with_pil(header, need)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)  # (h/s, w/s, 3)


def _reduced_flag(dimensions: tuple[int, int], need: _Need) -> int:
    shorter, longer = min(dimensions), max(dimensions)
    for scale, flag in _REDUCTIONS:
        if shorter // scale >= need.short and longer // scale >= need.long:
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


def _decode_with_pil(image: Image.Image, need: _Need) -> RGBImage:
    if image.format in _DRAFT_FORMATS:
        image.draft("RGB", _draft_size(image.size, need))
    try:
        image.load()  # first frame of an animation; raises on truncation
    except _DECODE_ERRORS as error:
        raise BadPhotoError(f"truncated or corrupt {image.format}") from error
    _apply_exif_orientation(image)
    return _to_rgb(image)


def _draft_size(dimensions: tuple[int, int], need: _Need) -> tuple[int, int]:
    """The (width, height) that `draft` must not go below, for an image of `dimensions`."""
    width, height = dimensions
    return (need.long, need.short) if width >= height else (need.short, need.long)


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

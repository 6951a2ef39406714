"""Photos: which files count, reading them safely (`files`), decoding them (`decode`)."""

from photocluster.photos.decode import (
    RGB,
    THUMB_EDGE,
    RGBImage,
    decode_for_model,
    decode_rgb,
    decode_thumbnail,
    encoded_size_bound,
    fit_long_side,
    fit_square,
    thumbnail,
)
from photocluster.photos.files import PHOTO_SUFFIXES, PhotoFile, is_candidate, read_photo, walk

__all__ = [
    "PHOTO_SUFFIXES",
    "RGB",
    "THUMB_EDGE",
    "PhotoFile",
    "RGBImage",
    "decode_for_model",
    "decode_rgb",
    "decode_thumbnail",
    "encoded_size_bound",
    "fit_long_side",
    "fit_square",
    "is_candidate",
    "read_photo",
    "thumbnail",
    "walk",
]

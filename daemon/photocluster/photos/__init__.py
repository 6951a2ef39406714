"""Photos: which files count, reading them safely (`files`), decoding them (`decode`)."""

from photocluster.photos.decode import RGB, RGBImage, decode_rgb, fit_square, thumbnail
from photocluster.photos.files import PHOTO_SUFFIXES, PhotoFile, is_candidate, read_photo, walk

__all__ = [
    "PHOTO_SUFFIXES",
    "RGB",
    "PhotoFile",
    "RGBImage",
    "decode_rgb",
    "fit_square",
    "is_candidate",
    "read_photo",
    "thumbnail",
    "walk",
]

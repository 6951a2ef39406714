"""Photos: which files count, reading them safely (`files`), decoding them (`decode`); what
is never looked at (`exclude`), videos (`video`) and when a photo was taken (`taken`)."""

from photocluster.photos.decode import RGB, RGBImage, decode_rgb, fit_square, thumbnail
from photocluster.photos.exclude import DEFAULT_EXCLUDES, Excluder
from photocluster.photos.files import (
    PHOTO_SUFFIXES,
    VIDEO_SUFFIXES,
    PhotoFile,
    is_candidate,
    is_media,
    media_kind,
    read_photo,
    walk,
)

__all__ = [
    "DEFAULT_EXCLUDES",
    "PHOTO_SUFFIXES",
    "RGB",
    "VIDEO_SUFFIXES",
    "Excluder",
    "PhotoFile",
    "RGBImage",
    "decode_rgb",
    "fit_square",
    "is_candidate",
    "is_media",
    "media_kind",
    "read_photo",
    "thumbnail",
    "walk",
]

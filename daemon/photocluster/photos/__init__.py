"""Photos and videos: which files count and reading them safely (`files`), decoding (`decode`),
videos (`video`), when a photo was taken (`taken`), folders to leave alone (`exclude`)."""

from photocluster.photos.decode import (
    RGB,
    THUMB_EDGE,
    RGBImage,
    decode_for_model,
    decode_rgb,
    decode_thumbnail,
    decode_upright,
    encoded_size_bound,
    fit_long_side,
    fit_square,
    resize,
    thumbnail,
)
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
    "THUMB_EDGE",
    "VIDEO_SUFFIXES",
    "Excluder",
    "PhotoFile",
    "RGBImage",
    "decode_for_model",
    "decode_rgb",
    "decode_thumbnail",
    "decode_upright",
    "encoded_size_bound",
    "fit_long_side",
    "fit_square",
    "is_candidate",
    "is_media",
    "media_kind",
    "read_photo",
    "resize",
    "thumbnail",
    "walk",
]

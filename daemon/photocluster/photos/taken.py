"""When a photo was taken: from its EXIF header, else from its Google Takeout sidecar, else
from the file's mtime (`tree.names.dated_name` turns it into a chronological link name).

EXIF `DateTimeOriginal` is local time. With `OffsetTimeOriginal` the instant is exact; without
it the time is read as the local time of this machine (its TZ), which is right for photos taken
in the machine's zone and off by the zone difference for the others, the same for every photo
of a trip, so their order holds. A Takeout sidecar's `photoTakenTime.timestamp` is UTC epoch
seconds and carries no offset.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import struct
import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from photocluster.errors import BadPhotoError
from photocluster.records import Taken

logger = logging.getLogger(__name__)

pillow_heif.register_heif_opener()

def taken_time(
    data: bytes | None,
    relative_path: str,
    folder_listing: list[str],
    read_file: Callable[[str], bytes],
    mtime_ns: int,
) -> Taken:
    """When the media file at `relative_path` was taken.

    `data` is its content (only the header is parsed; None or b"" for a video),
    `folder_listing` the names in its folder, `read_file` reads a file by its relative path
    (it may raise OSError or BadPhotoError: `read_photo` with a small `max_bytes` will do),
    `mtime_ns` the file's mtime. Never raises for bad input: each source that has no usable
    time gives way to the next.
    """
    if data:
        found = exif_taken(data)
        if found is not None:
            return found
    sidecar = sidecar_for(relative_path, folder_listing)
    if sidecar is not None:
        at = _sidecar_time(sidecar, read_file)
        if at is not None:
            return Taken(at, None, "sidecar")
    return Taken(mtime_ns / 1e9, None, "mtime")


def _sidecar_time(sidecar: str, read_file: Callable[[str], bytes]) -> float | None:
    try:
        data = read_file(sidecar)
    except BadPhotoError as error:  # a symlink, a FIFO, too large: not a sidecar to trust
        logger.info("cannot read sidecar %r: %s", sidecar, error.reason)
        return None
    except OSError as error:
        logger.info("cannot read sidecar %r: %s", sidecar, error.strerror or error)
        return None
    return read_sidecar(data, sidecar)


# ---------------------------------------------------------------------------- EXIF

# Formats whose EXIF is read; the whitelist keeps other plugins away from untrusted bytes.
_EXIF_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "HEIF")
# What malformed headers make Pillow raise; anything else is a bug and propagates.
_EXIF_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)
_EXIF_TIME = re.compile(r"(\d{4})[:-](\d\d)[:-](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_EXIF_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)")
_MAX_OFFSET_MINUTES = 14 * 60  # UTC+14 is the furthest zone


def exif_taken(data: bytes) -> Taken | None:
    """The EXIF DateTimeOriginal (+ SubsecTimeOriginal, OffsetTimeOriginal) of an encoded
    JPEG, HEIC, PNG, WebP or TIFF, from its header alone; None when there is none usable."""
    try:
        with Image.open(io.BytesIO(data), formats=_EXIF_FORMATS) as image:
            # A PNG's eXIf chunk may follow the pixels; Pillow would decode them to find it.
            if image.format == "PNG" and "exif" not in image.info:
                return None
            exif = image.getexif()
            # The Exif sub-IFD is the tag's home; some TIFF writers put it in IFD0.
            tags = {**dict(exif), **dict(exif.get_ifd(ExifTags.IFD.Exif))}
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return None
    except _EXIF_ERRORS as error:
        logger.debug("ignoring unreadable EXIF: %s", error)
        return None
    return _exif_time(tags)


def _exif_time(tags: dict[int, Any]) -> Taken | None:
    match = _EXIF_TIME.match(_text(tags.get(ExifTags.Base.DateTimeOriginal)))
    if match is None:
        return None
    offset = _offset_minutes(_text(tags.get(ExifTags.Base.OffsetTimeOriginal)))
    zone = timezone(timedelta(minutes=offset)) if offset is not None else None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        at = moment.timestamp()  # naive: the machine's local time
    except (ValueError, OverflowError, OSError):  # 0000:00:00, month 13, beyond the platform
        return None
    return Taken(at + _fraction(_text(tags.get(ExifTags.Base.SubsecTimeOriginal))), offset, "exif")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\0 ") if isinstance(value, str) else ""


def _offset_minutes(text: str) -> int | None:
    match = _EXIF_OFFSET.fullmatch(text)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > _MAX_OFFSET_MINUTES:
        return None
    return -total if sign == "-" else total


def _fraction(digits: str) -> float:
    return int(digits) / 10 ** len(digits) if digits.isdigit() and digits.isascii() else 0.0


# ---------------------------------------------------------------------------- sidecars

MAX_SIDECAR_BYTES = 1 << 20  # a Takeout sidecar is about a kilobyte

# Takeout cuts a sidecar's name, before ".json" and before a "(n)" counter, to this many
# characters: IMG_20230714_180211123_HDR.jpg.supplemental-me.json.
_CLIP = 46
_SUPPLEMENTAL = ".supplemental-metadata"
_JSON = ".json"
_COUNTER = re.compile(r"(.*)(\(\d+\))", re.DOTALL)

# An edited copy (IMG_1-edited.jpg) has no sidecar of its own and shares its original's. The
# suffix Google Photos gives it, by language: English, German, French, Italian, Spanish (two),
# Portuguese, Catalan, Dutch, Polish, Japanese.
EDITED_SUFFIXES = (
    "-edited",
    "-bearbeitet",
    "-modifié",
    "-modificato",
    "-ha editado",
    "-editado",
    "-editat",
    "-bewerkt",
    "-edytowane",
    "-編集済み",
)


def sidecar_for(relative_path: str, names_in_folder: list[str]) -> str | None:
    """The relative path of the Takeout sidecar of the media file at `relative_path`, chosen
    among the names in its folder; None when it has none.

    Patterns, for IMG_1.jpg: IMG_1.jpg.json, IMG_1.jpg.supplemental-metadata.json and that name
    cut to 46 characters before .json (IMG_1.jpg.supplemental-me.json), IMG_1.json; for
    IMG_1(1).jpg, a different photo of the same name: IMG_1.jpg(1).json and
    IMG_1.jpg.supplemental-metadata(1).json. A name cut at another length than 46 is still
    found when only ".supplemental-metadata" was cut (at least ".s" left). An edited copy
    (EDITED_SUFFIXES) takes its original's sidecar. Names compare in Unicode NFC.
    """
    folder, _, name = relative_path.rpartition("/")
    sidecars = {_nfc(other): other for other in names_in_folder if other.endswith(_JSON)}
    for original in _originals(_nfc(name)):
        found = _sidecar_name(original, sidecars)
        if found is not None:
            return f"{folder}/{found}" if folder else found
    return None


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _originals(name: str) -> Iterator[str]:
    """`name`, then the name of the original it is an edited copy of, if it is one."""
    yield name
    base, counter = _split_counter(name)
    stem, extension = os.path.splitext(base)
    folded = stem.casefold()
    for suffix in EDITED_SUFFIXES:
        if folded.endswith(suffix) and len(stem) > len(suffix):
            yield stem[: -len(suffix)] + counter + extension
            return


def _split_counter(name: str) -> tuple[str, str]:
    """"IMG_1(1).jpg" -> ("IMG_1.jpg", "(1)"); a name without a counter -> (name, "")."""
    stem, extension = os.path.splitext(name)
    match = _COUNTER.fullmatch(stem)
    return (match[1] + extension, match[2]) if match else (name, "")


def _sidecar_name(name: str, sidecars: dict[str, str]) -> str | None:
    for candidate in _candidates(name):
        if candidate in sidecars:
            return sidecars[candidate]
    return _cut_elsewhere(name, sidecars)


def _candidates(name: str) -> Iterator[str]:
    """Sidecar names for `name`, most specific first."""
    base, counter = _split_counter(name)
    yield name + _JSON  # also a name whose own stem ends in "(1)"
    yield (name + _SUPPLEMENTAL)[:_CLIP] + _JSON
    if counter:
        yield base[:_CLIP] + counter + _JSON
        yield (base + _SUPPLEMENTAL)[:_CLIP] + counter + _JSON
    yield name[:_CLIP] + _JSON
    yield os.path.splitext(name)[0] + _JSON


def _cut_elsewhere(name: str, sidecars: dict[str, str]) -> str | None:
    base, counter = _split_counter(name)
    full = base + _SUPPLEMENTAL
    tail = counter + _JSON
    for candidate in sorted(sidecars):
        core = candidate[: -len(tail)] if candidate.endswith(tail) else None
        if core is not None and len(base) + 2 <= len(core) < len(full) and full.startswith(core):
            return sidecars[candidate]
    return None


def read_sidecar(data: bytes, name: str = "sidecar") -> float | None:
    """`photoTakenTime.timestamp` of a Takeout sidecar's JSON, as UTC epoch seconds; None when
    the data is not JSON or has no usable timestamp (logged at INFO with the reason, naming
    the file by `name`). Never raises."""
    reason, at = _sidecar_timestamp(data)
    if reason is not None:
        logger.info("ignoring sidecar %r: %s", name, reason)
    return at


def _sidecar_timestamp(data: bytes) -> tuple[str | None, float | None]:
    if len(data) > MAX_SIDECAR_BYTES:
        return f"larger than {MAX_SIDECAR_BYTES} bytes", None
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        return f"not JSON ({error})", None
    taken = parsed.get("photoTakenTime") if isinstance(parsed, dict) else None
    value = taken.get("timestamp") if isinstance(taken, dict) else None
    at = _seconds(value)
    if at is None:
        return "no usable photoTakenTime.timestamp", None
    return None, at


def _seconds(value: Any) -> float | None:
    """Positive finite epoch seconds from a JSON string or number; 0 means "unknown"."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None

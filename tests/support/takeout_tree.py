"""Builders of the photo trees a synced Google Photos library looks like, and what each holds.

`takeout_tree` makes a Google Takeout export (year folders, albums sharing photos, "(1)" names
that are different photos, -edited copies, sidecars in every naming pattern, a .heic that is a
JPEG, live and motion photos, NAS thumbnails, the trash); `rclone_tree` makes what rclone's
Google Photos backend mounts (media/all, by-year, by-month, by-day, albums). Both return a
`TreeFacts`: what a correct reader must find, for integration tests to assert against. Photos
are 64x64 JPEGs of distinct colours and videos 2 s 64x64 clips, so the trees build in a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
from PIL import ExifTags, Image

pillow_heif.register_heif_opener()

GOOGLE = "Takeout/Google Photos"
EDGE = 64  # pixels, photos and video frames


@dataclass
class TreeFacts:
    """What a tree holds. Paths are relative POSIX paths below `root`."""

    root: Path
    contents: dict[str, str] = field(default_factory=dict)  # media walk must yield -> blake2b
    taken: dict[str, tuple[float, str]] = field(default_factory=dict)  # -> (UTC s, source)
    sidecars: dict[str, str] = field(default_factory=dict)  # media -> the sidecar with its time
    excluded: set[str] = field(default_factory=set)  # media-named files never to be yielded
    companions: dict[str, str] = field(default_factory=dict)  # motion part -> its still
    videos: set[str] = field(default_factory=set)

    @property
    def distinct_contents(self) -> int:
        return len(set(self.contents.values()))


# ---------------------------------------------------------------------------- media makers


def pixels(colour: tuple[int, int, int], seed: int) -> np.ndarray:
    """(EDGE, EDGE, 3) uint8 RGB: a colour with a gradient and noise, far from flat."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-40, 40, EDGE)[None, :, None]
    noisy = np.array(colour, np.float64) + ramp + rng.normal(0, 6, (EDGE, EDGE, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def exif_block(taken: datetime | None) -> bytes:
    """EXIF with DateTimeOriginal (and OffsetTimeOriginal when `taken` is aware)."""
    exif = Image.Exif()
    if taken is not None:
        tags = exif.get_ifd(ExifTags.IFD.Exif)
        tags[ExifTags.Base.DateTimeOriginal] = taken.strftime("%Y:%m:%d %H:%M:%S")
        offset = taken.utcoffset()
        if offset is not None:
            minutes = int(offset.total_seconds()) // 60
            sign = "-" if minutes < 0 else "+"
            tags[ExifTags.Base.OffsetTimeOriginal] = (
                f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
            )
    return exif.tobytes()


def photo_bytes(
    colour: tuple[int, int, int], seed: int = 0, taken: datetime | None = None, fmt: str = "JPEG"
) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(colour, seed)).save(buffer, fmt, exif=exif_block(taken))
    return buffer.getvalue()


def write_video(
    path: Path, colour: tuple[int, int, int], seconds: float = 2.0, fps: int = 10
) -> None:
    """An mp4v clip of moving noise on `colour`, written whatever `path`'s suffix (.MP, .MOV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.mp4")
    writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, (EDGE, EDGE))
    assert writer.isOpened(), "OpenCV cannot write mp4v video here"
    for index in range(int(seconds * fps)):
        writer.write(cv2.cvtColor(pixels(colour, seed=index), cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(temporary, path)


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def sidecar_json(taken_utc: float, title: str) -> bytes:
    stamp = str(int(taken_utc))
    return json.dumps(
        {
            "title": title,
            "photoTakenTime": {"timestamp": stamp, "formatted": "for people"},
            "creationTime": {"timestamp": str(int(taken_utc) + 86400), "formatted": "later"},
        }
    ).encode()


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


class _Builder:
    """Writes files below `root` and records the facts as it goes."""

    def __init__(self, root: Path) -> None:
        self.facts = TreeFacts(root)
        self._mtime = utc(2024, 1, 1)  # every file gets its own, later than any taken time

    def write(self, relative: str, data: bytes) -> Path:
        path = self.facts.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self._touch(path)
        return path

    def _touch(self, path: Path) -> float:
        self._mtime += 60
        os.utime(path, ns=(int(self._mtime * 1e9), int(self._mtime * 1e9)))
        return self._mtime

    def media(self, relative: str, data: bytes, source: str, at: float = 0.0) -> None:
        """A media file walk must yield; `at` is its taken time unless it comes from mtime."""
        path = self.write(relative, data)
        self.facts.contents[relative] = blake(data)
        mtime = path.stat().st_mtime_ns / 1e9
        self.facts.taken[relative] = (mtime if source == "mtime" else at, source)

    def video(
        self, relative: str, colour: tuple[int, int, int], source: str = "mtime", at: float = 0.0
    ) -> None:
        path = self.facts.root / relative
        write_video(path, colour)
        self.media(relative, path.read_bytes(), source, at)
        self.facts.videos.add(relative)

    def sidecar(self, media: str, name: str, taken_utc: float) -> None:
        folder = media.rpartition("/")[0]
        self.write(f"{folder}/{name}", sidecar_json(taken_utc, media.rpartition("/")[2]))
        self.facts.sidecars[media] = f"{folder}/{name}"

    def excluded(self, relative: str, data: bytes) -> None:
        self.write(relative, data)
        self.facts.excluded.add(relative)


# ---------------------------------------------------------------------------- Takeout

RED, GREEN, BLUE = (210, 40, 40), (40, 190, 60), (40, 60, 210)
YELLOW, PURPLE, TEAL = (220, 200, 40), (150, 50, 170), (40, 170, 170)
GREY, ORANGE, PINK = (128, 128, 128), (230, 130, 30), (230, 120, 170)


def takeout_tree(root: Path) -> TreeFacts:
    """A Google Takeout export below `root`/Takeout/Google Photos; returns its facts."""
    build = _Builder(root)
    _year_2022(build)
    _year_2023(build)
    _year_2019(build)
    _albums(build)
    _clutter(build)
    return build.facts


def _year_2022(build: _Builder) -> None:
    year = f"{GOOGLE}/Photos from 2022"
    plus_one = timezone(timedelta(hours=1))
    first = datetime(2022, 3, 1, 10, 0, 0, tzinfo=plus_one)
    # EXIF wins over the sidecar (which says a day later).
    build.media(f"{year}/IMG_0001.jpg", photo_bytes(RED, 1, first), "exif", first.timestamp())
    build.write(f"{year}/IMG_0001.jpg.json", sidecar_json(first.timestamp() + 86400, "IMG_0001"))
    _sidecar_photo(
        build, f"{year}/IMG_0002.jpg", GREEN, 2, "IMG_0002.jpg.supplemental-metadata.json",
        utc(2022, 3, 2, 8),
    )
    # A different photo with the same name: its counter moves behind the whole sidecar name.
    _sidecar_photo(build, f"{year}/IMG_0002(1).jpg", BLUE, 3,
                   "IMG_0002.jpg.supplemental-metadata(1).json", utc(2022, 3, 3, 8))
    _sidecar_photo(build, f"{year}/IMG_0003.jpg", YELLOW, 4, "IMG_0003.json", utc(2022, 3, 4, 8))
    _sidecar_photo(build, f"{year}/IMG_0004.jpg", PURPLE, 5, "IMG_0004.jpg.json", utc(2022, 3, 5))
    _sidecar_photo(build, f"{year}/IMG_0004(1).jpg", TEAL, 6, "IMG_0004.jpg(1).json",
                   utc(2022, 3, 6))
    _sidecar_photo(build, f"{year}/IMG_0005.jpg", ORANGE, 7, "IMG_0005.jpg.json", utc(2022, 4, 1))
    _edited(build, f"{year}/IMG_0005-edited.jpg", f"{year}/IMG_0005.jpg", ORANGE, 8)
    _sidecar_photo(build, f"{year}/IMG_0006.jpg", PINK, 9, "IMG_0006.jpg.json", utc(2022, 4, 2))
    _edited(build, f"{year}/IMG_0006-bearbeitet.jpg", f"{year}/IMG_0006.jpg", PINK, 10)
    # A .heic that is really a JPEG, with a naive EXIF time: this machine's local time.
    naive = datetime(2022, 5, 5, 12, 34, 56)
    build.media(f"{year}/IMG_0007.HEIC", photo_bytes(GREY, 11, naive), "exif", naive.timestamp())
    build.video(f"{year}/VID_20220601_101010.mp4", BLUE, "sidecar", utc(2022, 6, 1, 10, 10, 10))
    build.sidecar(f"{year}/VID_20220601_101010.mp4", "VID_20220601_101010.mp4.json",
                  utc(2022, 6, 1, 10, 10, 10))
    # A sidecar that is not JSON gives way to the mtime; so does a photo without any.
    build.media(f"{year}/IMG_0008.jpg", photo_bytes(RED, 12), "mtime")
    build.write(f"{year}/IMG_0008.jpg.json", b"{not json")
    build.media(f"{year}/scan.png", photo_bytes(GREEN, 13, fmt="PNG"), "mtime")
    # Synology's thumbnails: a folder per photo in @eaDir, and a stray thumbnail file.
    for size in ("XL", "M"):
        thumbnail = f"{year}/@eaDir/IMG_0001.jpg/SYNOPHOTO_THUMB_{size}.jpg"
        build.excluded(thumbnail, photo_bytes(RED, 1))
    build.excluded(f"{year}/SYNOFILE_THUMB_M.jpg", photo_bytes(RED, 14))


def _sidecar_photo(
    build: _Builder, relative: str, colour: tuple[int, int, int], seed: int, sidecar: str,
    at: float,
) -> None:
    build.media(relative, photo_bytes(colour, seed), "sidecar", at)
    build.sidecar(relative, sidecar, at)


def _edited(
    build: _Builder, relative: str, original: str, colour: tuple[int, int, int], seed: int
) -> None:
    """An edited copy: its own content, no sidecar of its own, its original's time."""
    at, _ = build.facts.taken[original]
    build.media(relative, photo_bytes(colour, seed), "sidecar", at)
    build.facts.sidecars[relative] = build.facts.sidecars[original]


def _year_2023(build: _Builder) -> None:
    year = f"{GOOGLE}/Photos from 2023"
    # Names long enough that Takeout cut ".supplemental-metadata" to fit 46 characters.
    _sidecar_photo(build, f"{year}/IMG_20230714_180211123_HDR.jpg", YELLOW, 20,
                   "IMG_20230714_180211123_HDR.jpg.supplemental-me.json",
                   utc(2023, 7, 14, 16, 2, 11))
    pixel = f"{year}/PXL_20230714_180211123.MP"
    _sidecar_photo(build, pixel + ".jpg", TEAL, 21,
                   "PXL_20230714_180211123.MP.jpg.supplemental-met.json",
                   utc(2023, 7, 14, 16, 2, 12))
    build.video(pixel, TEAL)  # the motion part: no sidecar of its own
    build.facts.companions[pixel] = pixel + ".jpg"
    # An iPhone live photo: a real HEIC with an offset in its EXIF, and its .MOV.
    iphone = datetime(2023, 8, 1, 9, 0, 0, tzinfo=timezone(timedelta(hours=-4)))
    still = f"{year}/IMG_0100.HEIC"
    build.media(still, photo_bytes(PURPLE, 22, iphone, fmt="HEIF"), "exif", iphone.timestamp())
    build.write(f"{year}/IMG_0100.HEIC.json", sidecar_json(iphone.timestamp(), "IMG_0100.HEIC"))
    build.video(f"{year}/IMG_0100.MOV", PURPLE)
    build.facts.companions[f"{year}/IMG_0100.MOV"] = still


def _year_2019(build: _Builder) -> None:
    year = f"{GOOGLE}/Photos from 2019"
    # Takeout cut the photo's own name to 51 characters and its sidecar's to 46 + ".json".
    _sidecar_photo(build, f"{year}/00100lPORTRAIT_00100_BURST20190915164304772_COV.jpg", ORANGE,
                   30, "00100lPORTRAIT_00100_BURST20190915164304772_CO.json",
                   utc(2019, 9, 15, 23, 44, 45))


def _albums(build: _Builder) -> None:
    """Two albums holding copies of year-folder photos, each copy with its own sidecar."""
    year = f"{GOOGLE}/Photos from 2022"
    copies = {
        f"{GOOGLE}/Summer trip": ["IMG_0001.jpg", "IMG_0002.jpg"],
        f"{GOOGLE}/Family": ["IMG_0001.jpg", "IMG_0004(1).jpg"],
    }
    sidecars = {
        "IMG_0001.jpg": "IMG_0001.jpg.json",
        "IMG_0002.jpg": "IMG_0002.jpg.supplemental-metadata.json",
        "IMG_0004(1).jpg": "IMG_0004.jpg(1).json",
    }
    for album, names in copies.items():
        build.write(f"{album}/metadata.json", json.dumps({"title": album}).encode())
        for name in names:
            data = (build.facts.root / year / name).read_bytes()
            at, source = build.facts.taken[f"{year}/{name}"]
            build.media(f"{album}/{name}", data, source, at)
            sidecar_at = at + 86400 if source == "exif" else at
            build.write(f"{album}/{sidecars[name]}", sidecar_json(sidecar_at, name))
            if source == "sidecar":
                build.facts.sidecars[f"{album}/{name}"] = f"{album}/{sidecars[name]}"


def _clutter(build: _Builder) -> None:
    clutter = ("print-subscriptions.json", "shared_album_comments.json", "metadata.json")
    for name in clutter:
        build.write(f"{GOOGLE}/{name}", b"[]")
    build.write(f"{GOOGLE}/archive_browser.html", b"<html></html>")
    build.excluded(f"{GOOGLE}/Trash/IMG_0999.jpg", photo_bytes(GREY, 40))
    build.write(f"{GOOGLE}/Trash/IMG_0999.jpg.json", sidecar_json(utc(2021, 1, 1), "IMG_0999.jpg"))
    build.excluded(f"{GOOGLE}/Bin/IMG_0998.jpg", photo_bytes(GREY, 41))


# ---------------------------------------------------------------------------- rclone

RCLONE_ID = "{AGj1epU5VMNrBDF6lRfjUhvBkb1qHo5BGzYDVTAC1VKz}"


def rclone_tree(root: Path) -> TreeFacts:
    """An rclone Google Photos mount below `root`: every photo in media/all and again in
    media/by-year, by-month and by-day, some in albums; mtimes are the taken times (rclone
    reports the creation time as modification time), EXIF where the camera wrote it."""
    build = _Builder(root)
    summer = datetime(2023, 7, 14, 18, 2, 11, tzinfo=timezone(timedelta(hours=2)))
    items = [
        ("IMG_1.jpg", photo_bytes(RED, 50, summer), summer, "exif"),
        ("IMG_2.jpg", photo_bytes(GREEN, 51), datetime(2023, 7, 15, 9, tzinfo=UTC), "mtime"),
        # Two different photos named IMG_2.jpg: rclone tells the second by its media item id.
        (f"IMG_2 {RCLONE_ID}.jpg", photo_bytes(BLUE, 52), datetime(2023, 8, 2, tzinfo=UTC),
         "mtime"),
    ]
    for name, data, when, source in items:
        for folder in _rclone_folders(when):
            _rclone_file(build, f"{folder}/{name}", data, when, source)
    _rclone_file(build, "album/Summer/IMG_1.jpg", items[0][1], summer, "exif")
    _rclone_file(build, "shared-album/Friends/IMG_2.jpg", items[1][1], items[1][2], "mtime")
    clip = datetime(2023, 7, 16, 12, tzinfo=UTC)
    write_video(root / "media/all/VID_3.mp4", YELLOW)
    video = (root / "media/all/VID_3.mp4").read_bytes()
    for folder in _rclone_folders(clip):
        _rclone_file(build, f"{folder}/VID_3.mp4", video, clip, "mtime")
        build.facts.videos.add(f"{folder}/VID_3.mp4")
    (root / "upload").mkdir()
    return build.facts


def _rclone_folders(when: datetime) -> list[str]:
    day = when.astimezone(UTC)
    return [
        "media/all",
        f"media/by-year/{day:%Y}",
        f"media/by-month/{day:%Y}/{day:%Y-%m}",
        f"media/by-day/{day:%Y}/{day:%Y-%m-%d}",
    ]


def _rclone_file(build: _Builder, relative: str, data: bytes, when: datetime, source: str) -> None:
    path = build.write(relative, data)
    stamp = int(when.timestamp() * 1e9)
    os.utime(path, ns=(stamp, stamp))
    build.facts.contents[relative] = blake(data)
    build.facts.taken[relative] = (when.timestamp(), source)

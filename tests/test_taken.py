"""When a photo was taken: EXIF, else the Takeout sidecar, else mtime; chronological names."""

from __future__ import annotations

import logging
import os
import time
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from photocluster.photos import read_photo
from photocluster.photos.taken import (
    MAX_SIDECAR_BYTES,
    Taken,
    exif_taken,
    read_sidecar,
    sidecar_for,
    taken_time,
)
from photocluster.tree.names import NAME_MAX, dated_name
from tests.support.takeout_tree import (
    TreeFacts,
    photo_bytes,
    rclone_tree,
    sidecar_json,
    takeout_tree,
)

RED = (200, 30, 30)
SUMMER = datetime(2023, 7, 14, 18, 2, 11, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set this process's local time zone for the test (TZ), and restore it after."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


# ---------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "PNG", "WEBP", "TIFF"])
def test_exif_time_with_its_offset_is_an_exact_instant(fmt: str) -> None:
    found = exif_taken(photo_bytes(RED, taken=SUMMER, fmt=fmt))
    assert found == Taken(SUMMER.timestamp(), 120, "exif")


def test_exif_time_without_an_offset_is_read_as_this_machines_local_time(
    zone: Callable[[str], None],
) -> None:
    naive = datetime(2023, 7, 14, 18, 2, 11)
    data = photo_bytes(RED, taken=naive)
    zone("UTC")
    at_utc = datetime(2023, 7, 14, 18, 2, 11, tzinfo=UTC).timestamp()
    assert exif_taken(data) == Taken(at_utc, None, "exif")
    zone("America/New_York")  # EDT in July: UTC-4
    assert exif_taken(data) == Taken(at_utc + 4 * 3600, None, "exif")


def test_only_the_header_is_needed() -> None:
    data = photo_bytes(RED, taken=SUMMER)
    start_of_scan = data.index(b"\xff\xda")
    header = data[: start_of_scan + 14]  # the start-of-scan segment, not one byte of pixels
    assert exif_taken(header) == Taken(SUMMER.timestamp(), 120, "exif")


def exif_with(original: str, offset: str | None = None, subsec: str | None = None) -> bytes:
    exif = Image.Exif()
    tags = exif.get_ifd(ExifTags.IFD.Exif)
    tags[ExifTags.Base.DateTimeOriginal] = original
    if offset is not None:
        tags[ExifTags.Base.OffsetTimeOriginal] = offset
    if subsec is not None:
        tags[ExifTags.Base.SubsecTimeOriginal] = subsec
    buffer = BytesIO()
    Image.new("RGB", (8, 8), RED).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_sub_seconds_are_kept() -> None:
    found = exif_taken(exif_with("2023:07:14 18:02:11", "+02:00", "25"))
    assert found is not None and found.at == pytest.approx(SUMMER.timestamp() + 0.25)


@pytest.mark.parametrize(
    ("original", "offset", "expected_offset"),
    [
        ("2023:07:14 18:02:11", "+05:30", 330),
        ("2023:07:14 18:02:11", "-09:30", -570),
        ("2023:07:14 18:02:11", "+99:00", None),  # not a zone: the time is taken as local
        ("2023:07:14 18:02:11", "   :  ", None),
        ("2023-07-14 18:02:11", "+02:00", 120),  # dashes, as some phones write
    ],
)
def test_the_offset_is_read_when_it_is_a_real_zone(
    original: str, offset: str, expected_offset: int | None
) -> None:
    found = exif_taken(exif_with(original, offset))
    assert found is not None and found.offset_minutes == expected_offset


@pytest.mark.parametrize(
    "original", ["0000:00:00 00:00:00", "    :  :     :  :  ", "2023:13:01 10:00:00", "", "soon"]
)
def test_blank_or_impossible_exif_times_are_no_time(original: str) -> None:
    assert exif_taken(exif_with(original)) is None


@pytest.mark.parametrize(
    "data", [b"", b"not an image", photo_bytes(RED), photo_bytes(RED, fmt="PNG")]
)
def test_no_exif_is_no_time(data: bytes) -> None:
    assert exif_taken(data) is None


def test_mangled_headers_never_raise() -> None:
    original = photo_bytes(RED, taken=SUMMER)
    random = np.random.default_rng(0)
    outcomes = {"time": 0, "none": 0}
    for _ in range(300):
        data = bytearray(original)
        for position in random.integers(0, 400, size=int(random.integers(1, 6))):
            data[position] = int(random.integers(0, 256))
        outcomes["time" if exif_taken(bytes(data)) is not None else "none"] += 1
    assert min(outcomes.values()) > 0, outcomes  # both kinds of header were tried


# ---------------------------------------------------------------------------- sidecar names


@pytest.mark.parametrize(
    ("media", "names", "expected"),
    [
        ("IMG_1.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
        ("IMG_1.jpg", ["IMG_1.json"], "IMG_1.json"),
        ("IMG_1.jpg", ["IMG_1.jpg.supplemental-metadata.json"],
         "IMG_1.jpg.supplemental-metadata.json"),
        ("IMG_20230714_180211123_HDR.jpg", ["IMG_20230714_180211123_HDR.jpg.supplemental-me.json"],
         "IMG_20230714_180211123_HDR.jpg.supplemental-me.json"),
        ("D7157814-D2D5-4A62-AFCE-9CF465CB7D66.jpeg",
         ["D7157814-D2D5-4A62-AFCE-9CF465CB7D66.jpeg.supp.json"],
         "D7157814-D2D5-4A62-AFCE-9CF465CB7D66.jpeg.supp.json"),
        ("Screenshot_20220207_102421_com.snapchat.android.jpg",
         ["Screenshot_20220207_102421_com.snapchat.androi.json"],
         "Screenshot_20220207_102421_com.snapchat.androi.json"),
        # The photo's own name was cut to 51 characters, its sidecar's to 46 + ".json".
        ("00100lPORTRAIT_00100_BURST20190915164304772_COV.jpg",
         ["00100lPORTRAIT_00100_BURST20190915164304772_CO.json"],
         "00100lPORTRAIT_00100_BURST20190915164304772_CO.json"),
        ("IMG_1.jpg", ["IMG_1.jpg.supplem.json"], "IMG_1.jpg.supplem.json"),  # cut elsewhere
        ("IMG_1(1).jpg", ["IMG_1.jpg.json", "IMG_1.jpg(1).json"], "IMG_1.jpg(1).json"),
        ("IMG_1(1).jpg", ["IMG_1.jpg.supplemental-metadata(1).json"],
         "IMG_1.jpg.supplemental-metadata(1).json"),
        ("IMG_20230714_180211123_HDR(2).jpg",
         ["IMG_20230714_180211123_HDR.jpg.supplemental-me(2).json"],
         "IMG_20230714_180211123_HDR.jpg.supplemental-me(2).json"),
        ("IMG_1.jpg", ["IMG_1.jpg(1).json"], None),  # the sidecar of another photo
        ("IMG_1(1).jpg", ["IMG_1.jpg.json"], None),
        ("Screenshot (1).png", ["Screenshot (1).png.json"], "Screenshot (1).png.json"),
        ("IMG_10.jpg", ["IMG_1.json", "IMG_1.jpg.json"], None),
        ("IMG_1.jpg", ["metadata.json", "print-subscriptions.json"], None),
        ("IMG_1-edited.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
        ("IMG_1-EDITED.JPG", ["IMG_1.JPG.json"], "IMG_1.JPG.json"),
        ("IMG_1-bearbeitet.jpg", ["IMG_1.jpg.supplemental-metadata.json"],
         "IMG_1.jpg.supplemental-metadata.json"),
        ("IMG_1-modifié.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
        (unicodedata.normalize("NFD", "IMG_1-modifié.jpg"), ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
        ("IMG_1-editado.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
        ("IMG_1-ha editado.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
        ("IMG_1-編集済み.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
        ("IMG_1-edited(1).jpg", ["IMG_1.jpg.json", "IMG_1.jpg(1).json"], "IMG_1.jpg(1).json"),
        ("IMG_1-edited.jpg", ["IMG_1-edited.jpg.json", "IMG_1.jpg.json"], "IMG_1-edited.jpg.json"),
        ("-edited.jpg", ["-edited.jpg.json"], "-edited.jpg.json"),
        ("PXL_1.MP", ["PXL_1.MP.jpg.json"], None),
        ("VID_1.mp4", ["VID_1.mp4.supplemental-metadata.json"],
         "VID_1.mp4.supplemental-metadata.json"),
    ],
)
def test_every_takeout_sidecar_naming_pattern_is_found(
    media: str, names: list[str], expected: str | None
) -> None:
    assert sidecar_for(media, [media, *names]) == expected


def test_the_sidecar_is_named_by_its_path_in_the_photos_folder() -> None:
    found = sidecar_for("Takeout/Photos from 2022/IMG_1.jpg", ["IMG_1.jpg", "IMG_1.jpg.json"])
    assert found == "Takeout/Photos from 2022/IMG_1.jpg.json"


def test_an_nfd_sidecar_name_is_returned_as_it_is_on_disk() -> None:
    on_disk = unicodedata.normalize("NFD", "Café.jpg.json")
    assert sidecar_for("Café.jpg", [on_disk]) == on_disk


# ---------------------------------------------------------------------------- sidecar content


def test_the_sidecar_gives_photo_taken_time_in_utc_seconds() -> None:
    assert read_sidecar(sidecar_json(1689350531, "IMG_1.jpg")) == 1689350531.0
    assert read_sidecar(b'{"photoTakenTime": {"timestamp": 1689350531}}') == 1689350531.0


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[]", "no usable photoTakenTime"),
        (b'{"title": "IMG_1.jpg"}', "no usable photoTakenTime"),
        (b'{"photoTakenTime": "1689350531"}', "no usable photoTakenTime"),
        (b'{"photoTakenTime": {"timestamp": "0"}}', "no usable photoTakenTime"),
        (b'{"photoTakenTime": {"timestamp": "soon"}}', "no usable photoTakenTime"),
        (b'{"photoTakenTime": {"timestamp": true}}', "no usable photoTakenTime"),
        (b'{"photoTakenTime": {"timestamp": 1e999}}', "no usable photoTakenTime"),
        (b'{"photoTakenTime": {"timestamp": "NaN"}}', "no usable photoTakenTime"),
        (b'{"photoTakenTime": {"timestamp": 1' + b"0" * 400 + b"}}", "no usable photoTakenTime"),
        (b"[" * 100_000, "not JSON"),
        (b" " * (1 << 21), "larger than"),
    ],
)
def test_a_sidecar_without_a_usable_time_is_no_time_and_says_why_once(
    data: bytes, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="photocluster.photos.taken"):
        assert read_sidecar(data, "a/IMG_1.jpg.json") is None
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.INFO
    assert says in caplog.text and "'a/IMG_1.jpg.json'" in caplog.text


# ---------------------------------------------------------------------------- composed


class Files:
    """A folder's files in memory, for taken_time's read_file; counts the reads."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[str] = []

    def read(self, relative: str) -> bytes:
        self.reads.append(relative)
        if relative not in self.files:
            raise FileNotFoundError(2, "No such file or directory", relative)
        return self.files[relative]

    def names(self) -> list[str]:
        return [relative.rpartition("/")[2] for relative in self.files]


MTIME_NS = 1_700_000_000_123_456_789


def test_exif_comes_first_and_no_sidecar_is_read() -> None:
    files = Files({"a/IMG_1.jpg": b"", "a/IMG_1.jpg.json": sidecar_json(1.6e9, "IMG_1.jpg")})
    data = photo_bytes(RED, taken=SUMMER)
    found = taken_time(data, "a/IMG_1.jpg", files.names(), files.read, MTIME_NS)
    assert found == Taken(SUMMER.timestamp(), 120, "exif") and files.reads == []


def test_without_exif_the_sidecar_is_used() -> None:
    files = Files({"a/IMG_1.jpg": b"", "a/IMG_1.jpg.json": sidecar_json(1.6e9, "IMG_1.jpg")})
    found = taken_time(photo_bytes(RED), "a/IMG_1.jpg", files.names(), files.read, MTIME_NS)
    assert found == Taken(1.6e9, None, "sidecar") and files.reads == ["a/IMG_1.jpg.json"]


def test_a_video_without_data_goes_to_its_sidecar() -> None:
    files = Files({"VID.mp4": b"", "VID.mp4.json": sidecar_json(1.6e9, "VID.mp4")})
    assert taken_time(None, "VID.mp4", files.names(), files.read, MTIME_NS).source == "sidecar"


@pytest.mark.parametrize("sidecar", [None, b"{broken", b'{"photoTakenTime": {}}', "vanished"])
def test_without_either_the_mtime_is_used(sidecar: bytes | str | None) -> None:
    files = Files({"IMG_1.jpg": b""})
    names = files.names()
    if isinstance(sidecar, bytes):
        files.files["IMG_1.jpg.json"] = sidecar
    if sidecar is not None:
        names.append("IMG_1.jpg.json")  # listed, but a vanished one cannot be read
    found = taken_time(photo_bytes(RED), "IMG_1.jpg", names, files.read, MTIME_NS)
    assert found == Taken(MTIME_NS / 1e9, None, "mtime")


def test_a_sidecar_read_photo_refuses_gives_way_to_the_mtime(tmp_path: Path) -> None:
    (tmp_path / "IMG_1.jpg.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_bytes(sidecar_json(1.6e9, "IMG_1.jpg"))

    def read_file(relative: str) -> bytes:
        return read_photo(tmp_path, relative, MAX_SIDECAR_BYTES).data

    names = ["IMG_1.jpg", "IMG_1.jpg.json"]
    found = taken_time(photo_bytes(RED), "IMG_1.jpg", names, read_file, MTIME_NS)
    assert found == Taken(MTIME_NS / 1e9, None, "mtime")


def read_under(root: Path) -> Callable[[str], bytes]:
    return lambda relative: (root / relative).read_bytes()


@pytest.mark.parametrize("build", [takeout_tree, rclone_tree])
def test_every_file_of_a_built_tree_gets_the_time_and_source_it_was_built_with(
    tmp_path: Path, build: Callable[[Path], TreeFacts]
) -> None:
    facts = build(tmp_path)
    sources = set()
    for relative, (at, source) in sorted(facts.taken.items()):
        path = tmp_path / relative
        data = None if relative in facts.videos else path.read_bytes()
        listing = os.listdir(path.parent)
        found = taken_time(data, relative, listing, read_under(tmp_path), path.stat().st_mtime_ns)
        assert (found.source, found.at) == (source, pytest.approx(at, abs=1e-3)), relative
        if source == "sidecar":
            assert sidecar_for(relative, listing) == facts.sidecars[relative], relative
        sources.add(source)
    assert sources == ({"exif", "sidecar", "mtime"} if build is takeout_tree else {"exif", "mtime"})


# ---------------------------------------------------------------------------- link names


def test_a_dated_name_shows_the_time_where_the_photo_was_taken(
    zone: Callable[[str], None],
) -> None:
    zone("UTC")
    taken = Taken(SUMMER.timestamp(), 120, "exif")
    assert dated_name(taken, "IMG_1234.jpg") == "2023-07-14 18.02.11 IMG_1234.jpg"


def test_without_an_offset_a_dated_name_shows_this_machines_local_time(
    zone: Callable[[str], None],
) -> None:
    taken = Taken(SUMMER.timestamp(), None, "sidecar")  # 16:02:11 UTC
    zone("UTC")
    assert dated_name(taken, "IMG_1.jpg") == "2023-07-14 16.02.11 IMG_1.jpg"
    zone("Asia/Tokyo")
    assert dated_name(taken, "IMG_1.jpg") == "2023-07-15 01.02.11 IMG_1.jpg"


@pytest.mark.parametrize(
    ("name", "ending"),
    [
        ("x" * 255, "x"),
        ("é" * 127 + ".jpg", "é.jpg"),
        ("日本" * 50 + ".heic", ".heic"),
        (os.fsdecode(b"\xff" * 250 + b".jpg"), ".jpg"),  # not UTF-8: bytes pass through
        ("a." + "b" * 250, "b"),  # no extension worth keeping
    ],
)
def test_a_dated_name_fits_name_max_bytes_keeping_the_extension(name: str, ending: str) -> None:
    found = dated_name(Taken(SUMMER.timestamp(), 120, "exif"), name)
    raw = os.fsencode(found)
    assert len(raw) <= NAME_MAX and len(raw) >= NAME_MAX - 3
    assert found.startswith("2023-07-14 18.02.11 ") and found.endswith(ending)
    if os.fsencode(name).isascii() or b"\xff" not in os.fsencode(name):
        raw.decode("utf-8")  # no character cut in half


def test_a_short_name_is_kept_whole() -> None:
    name = os.fsdecode(b"caf\xe9 \n.jpg")
    assert dated_name(Taken(SUMMER.timestamp(), 120, "exif"), name).endswith(" " + name)


def test_a_time_no_calendar_can_show_sorts_first() -> None:
    assert dated_name(Taken(1e20, None, "mtime"), "a.jpg") == "0000-00-00 00.00.00 a.jpg"


@pytest.mark.parametrize("name", ["", "a/b.jpg"])
def test_a_dated_name_needs_a_file_name(name: str) -> None:
    with pytest.raises(ValueError, match="not a file name"):
        dated_name(Taken(0.0, None, "mtime"), name)

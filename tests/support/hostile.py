"""A hostile corpus: every kind of file a synced photo folder can hold, each with what the
daemon must do with it (link it, refuse it with a reason, or ignore it), and the checks of
how it was taken in (tests/test_hostile.py and, through `python -m tests.support.trials`,
bench/reliability.py)."""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import socket
import stat
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pillow_heif
import pytest
from PIL import Image

from photocluster import photos
from tests.support.consistency import contents_on_disk, linked

pytestmark = pytest.mark.timeout(120)

Expect = Literal["photo", "refused", "ignored"]
CONFIG = (
    "[photos]\nmax_file_mb = 1.0\n"
    "[watch]\nsettle_seconds = 0.3\nrescan_every_minutes = 0\n"
)
UNREADABLE = "no-permission.jpg"  # reading it raises EACCES (we run as root: simulated)
VANISHING = "vanishes.jpg"  # gone between the event (or the walk) and the read

pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Kind:
    name: str
    paths: tuple[str, ...]  # relative to the photo root, as the catalog spells them
    expect: Expect


# ---------------------------------------------------------------------------- encoders


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def picture(width: int = 96, height: int = 64, mode: str = "RGB") -> Image.Image:
    """Gradients and a disc: decodes to something no other kind looks like."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 127 + 120 * np.sin(xs / max(width, 1) * 6)
    green = 127 + 120 * np.cos(ys / max(height, 1) * 5)
    blue = np.where((xs - width / 3) ** 2 + (ys - height / 2) ** 2 < (height / 4) ** 2, 230, 40)
    image = Image.fromarray(np.stack([red, green, blue], axis=-1).astype(np.uint8))
    return image if mode == "RGB" else image.convert(mode)


def jpeg(**params: Any) -> bytes:
    return encode(picture(), "JPEG", **{"quality": 90, **params})


def with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(picture(128, 64), "JPEG", exif=exif.tobytes(), quality=90)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(picture(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def sixteen_bit_colour_png() -> bytes:
    bgr = (np.asarray(picture())[:, :, ::-1].astype(np.uint16) * 257)  # (h, w, 3) uint16
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    assert ok
    return bytes(encoded.tobytes())


def sixteen_bit_gray(fmt: str) -> bytes:
    gray = (np.asarray(picture(mode="L")).astype(np.uint16) * 257)  # (h, w) uint16
    return encode(Image.fromarray(gray), fmt)


def animation(fmt: str) -> bytes:
    frames = [picture(48, 48).rotate(angle) for angle in (0, 90, 180)]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **extra)


def palette_with_transparency() -> bytes:
    image = picture().convert("P")
    return encode(image, "PNG", transparency=0)


def corrupt_exif() -> bytes:
    return encode(picture(), "JPEG", exif=b"Exif\x00\x00garbage-not-tiff")


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def valid_files() -> dict[str, bytes]:
    """Kind name -> bytes of a decodable photo (written under a name of that kind)."""
    files = {
        "jpeg": jpeg(),
        "png": encode(picture(), "PNG"),
        "webp": encode(picture(), "WEBP"),
        "bmp": encode(picture(), "BMP"),
        "tiff": encode(picture(), "TIFF"),
        "heic": encode(picture(), "HEIF"),
        "1x1 jpeg": encode(picture(1, 1), "JPEG"),
        "1x1 png": encode(picture(1, 1), "PNG"),
        "cmyk jpeg": encode(picture(mode="CMYK"), "JPEG"),
        "grayscale jpeg": encode(picture(mode="L"), "JPEG"),
        "grayscale png": encode(picture(mode="L"), "PNG"),
        "bilevel png": encode(picture(mode="1"), "PNG"),
        "16-bit gray png": sixteen_bit_gray("PNG"),
        "16-bit colour png": sixteen_bit_colour_png(),
        "16-bit gray tiff": sixteen_bit_gray("TIFF"),
        "rgba png": encode(picture(mode="RGBA"), "PNG"),
        "palette png with transparency": palette_with_transparency(),
        "animated webp": animation("WEBP"),
        "animated gif named .png": animation("GIF"),
        "progressive jpeg": jpeg(progressive=True),
        "jpeg with vendor data after the end": jpeg() + b"\0VENDOR" * 50,
        "png named .jpg": encode(picture(), "PNG"),
        "jpeg with an unreadable exif block": corrupt_exif(),
        "panorama 3000x4": encode(picture(3000, 4), "JPEG"),
    }
    files.update({f"exif orientation {n}": with_orientation(n) for n in range(1, 9)})
    return files


def refused_files() -> dict[str, bytes]:
    heic, webp, png, photo = (encode(picture(200, 150), fmt) for fmt in ("HEIF", "WEBP", "PNG",
                                                                          "JPEG"))
    return {
        "truncated jpeg": half(photo),
        "truncated png": half(png),
        "truncated heic": half(heic),
        "truncated webp": half(webp),
        "zero bytes": b"",
        "random bytes named .jpg": np.random.default_rng(1).bytes(5000),
        "text named .png": b"this is not a picture\n" * 40,
        "html named .jpg": b"<!doctype html><html><body>404 Not Found</body></html>\n",
        "50000x50000 png header": png_header(50000, 50000),
        "50000x50000 jpeg header": jpeg_claiming(50000, 50000),
        "0x0 png header": png_header(0, 0),
        "jpeg start marker then garbage": b"\xff\xd8\xff" + b"\x00garbage" * 100,
        "eps named .jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        "pdf named .jpg": b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n",
        "svg named .png": b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        "gzip named .tif": gzip.compress(photo),
        "larger than max_file_mb": photo + np.random.default_rng(2).bytes(1_200_000),
    }


# ---------------------------------------------------------------------------- the corpus


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def _suffix(name: str) -> str:
    if " named ." in name:
        return "." + name.split(" named .")[1].split()[0]
    words = name.split()
    return next((f".{fmt}" for fmt in ("png", "webp", "bmp", "tiff", "heic") if fmt in words),
                ".jpg")


def build_corpus(root: Path, outside: Path, daemon: bool = False) -> list[Kind]:
    """Write every kind of odd file under `root` (`outside` is a folder beside it, for symlink
    targets); return what each kind is expected to become. With `daemon`, the vanishing file
    is made and removed before it settles (no read can be hooked in another process)."""
    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    kinds: list[Kind] = []

    def put(name: str, rel: str | bytes, data: bytes, expect: Expect) -> None:
        path = root / os.fsdecode(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        kinds.append(Kind(name, (os.fsdecode(rel),), expect))

    for name, data in valid_files().items():
        put(name, f"valid/{_slug(name)}{_suffix(name)}", data, "photo")
    for name, data in refused_files().items():
        put(name, f"refused/{_slug(name)}{_suffix(name)}", data, "refused")
    _odd_names(put)
    _not_photos(root, outside, kinds, put)
    _vanishing(root, kinds, daemon)
    return kinds


def _odd_names(put: Callable[[str, str | bytes, bytes, Expect], None]) -> None:
    photo = jpeg()
    put("upper-case suffix", "names/IMG_0001.JPG", photo, "photo")
    put("spaces in the name", "names/ with  many spaces .jpg", jpeg(quality=80), "photo")
    put("newline in the name", "names/new\nline.jpg", jpeg(quality=81), "photo")
    put("non-UTF-8 bytes in the name", b"names/caf\xe9-\xff\xfe.jpg", jpeg(quality=82), "photo")
    put("255-byte name", "names/" + "x" * 251 + ".jpg", jpeg(quality=83), "photo")
    put("emoji and combining accents", "names/e\u0301te\u0301 \U0001f4f7.jpg", jpeg(quality=84),
        "photo")
    put("shell metacharacters", "names/-rf $(id) `x` *;|&'\"\\.jpg", jpeg(quality=85), "photo")
    put("30 folders deep", "/".join(["deep"] * 30) + "/bottom.jpg", jpeg(quality=86), "photo")
    put("exact duplicate of another photo", "names/duplicate.jpg", photo, "photo")
    put("photo inside a folder named x.jpg", "folder.jpg/inside.jpg", jpeg(quality=87), "photo")
    put("hidden file", "names/.hidden.jpg", photo, "ignored")
    put("sync client temp names", "names/.syncthing.a.jpg.tmp", photo, "ignored")
    put("partial download", "names/b.jpg.partial", photo, "ignored")
    put("tilde temp name", "names/~c.jpg", photo, "ignored")
    put("photo in a hidden folder", ".thumbnails/t.jpg", photo, "ignored")
    put("json sidecar and video", "names/IMG_0001.JPG.json", b"{}", "ignored")
    put("animated gif (.gif is not a photo suffix)", "names/anim.gif", animation("GIF"), "ignored")
    put("no read permission", f"refused/{UNREADABLE}", jpeg(quality=88), "refused")
    put("refused, with a newline and non-UTF-8 bytes in its name", b"refused/forged\nline-\xff.jpg",
        b"not a photo", "refused")


def _not_photos(
    root: Path,
    outside: Path,
    kinds: list[Kind],
    put: Callable[[str, str | bytes, bytes, Expect], None],
) -> None:
    odd = root / "odd"
    odd.mkdir()
    (outside / "real.jpg").write_bytes(jpeg(quality=70))
    (outside / "folder").mkdir()
    (outside / "folder" / "behind.jpg").write_bytes(jpeg(quality=71))
    links = {
        "symlink to /etc/passwd": ("passwd.jpg", "/etc/passwd"),
        "symlink to a photo outside the root": ("outside.jpg", str(outside / "real.jpg")),
        "symlink to a photo inside the root": ("alias.jpg", str(root / "valid" / "jpeg.jpg")),
        "dangling symlink": ("dangling.jpg", str(outside / "nothing-here.jpg")),
        "symlink loop": ("loop.jpg", "loop.jpg"),
        "symlink to a folder outside the root": ("dirlink.jpg", str(outside / "folder")),
        "relative symlink climbing out": ("climb.jpg", "../../outside/real.jpg"),
    }
    for name, (link, target) in links.items():
        os.symlink(target, odd / link)
        kinds.append(Kind(name, (f"odd/{link}",), "ignored"))
    (odd / "empty-folder.jpg").mkdir()
    kinds.append(Kind("empty folder named x.jpg", ("odd/empty-folder.jpg",), "ignored"))
    os.mkfifo(odd / "fifo.jpg")
    kinds.append(Kind("FIFO named x.jpg", ("odd/fifo.jpg",), "ignored"))
    if _make_socket(odd / "sock.jpg"):
        kinds.append(Kind("unix socket named x.jpg", ("odd/sock.jpg",), "ignored"))
    try:
        os.mknod(odd / "null.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        kinds.append(Kind("character device named x.jpg", ("odd/null.jpg",), "ignored"))
    except OSError:  # no CAP_MKNOD here
        pass


def _make_socket(path: Path) -> bool:
    if len(os.fsencode(path)) >= 107:  # sun_path limit
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
    return True


def _vanishing(root: Path, kinds: list[Kind], daemon: bool) -> None:
    path = root / "refused" / VANISHING
    path.write_bytes(jpeg(quality=72))
    if daemon:
        time.sleep(0.05)
        path.unlink()
    kinds.append(Kind("file vanishing between event and read", (f"refused/{VANISHING}",),
                      "ignored"))


def problems(base: Path, kinds: list[Kind], report: dict[str, Any]) -> list[str]:
    """What is wrong with how the corpus was taken in: empty when all is as expected."""
    tree = set(linked(base / "clusters", base / "photos"))
    reasons = {failure["path"]: failure["reason"] for failure in report["failures"]}
    copies = {path: group for group in contents_on_disk(base / "photos").values() for path in group}
    found = []
    for kind in kinds:
        for path in kind.paths:  # a photo is linked once, through one of its identical copies
            is_linked, reason = bool(tree & copies.get(path, {path})), reasons.get(path)
            if kind.expect == "photo" and (not is_linked or reason is not None):
                found.append(f"{kind.name}: photo {path!r} not linked ({reason})")
            elif kind.expect == "refused" and (is_linked or not reason):
                found.append(f"{kind.name}: {path!r} linked={is_linked}, reason={reason!r}")
            elif kind.expect == "ignored" and (is_linked or path in reasons):
                found.append(f"{kind.name}: {path!r} is not a photo but was taken in")
    return found


def photo_count(kinds: list[Kind]) -> int:
    return sum(len(kind.paths) for kind in kinds if kind.expect == "photo")


@contextlib.contextmanager
def hostile_reads() -> Iterator[None]:
    """In this process: the unreadable file raises EACCES on open; the vanishing one is
    removed just before it is read."""
    open_file, read_photo = os.open, photos.read_photo

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fsdecode(path).endswith(UNREADABLE):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return open_file(path, flags, *args, **kwargs)

    def vanishing_read(root: Path, relative: str, max_bytes: int) -> photos.PhotoFile:
        if relative.rsplit("/", 1)[-1] == VANISHING:
            (root / relative).unlink(missing_ok=True)
        return read_photo(root, relative, max_bytes)

    os.open, photos.read_photo = guarded_open, vanishing_read
    try:
        yield
    finally:
        os.open, photos.read_photo = open_file, read_photo



"""What counts as a photo or a video, walking a tree of them, and reading a file safely.

Paths are `str`, POSIX, relative to the photo root; undecodable name bytes arrive as surrogate
escapes (os.fsdecode) and are passed through untouched. Every per-file problem becomes a
`BadPhotoError` with a one-line reason, except `FileNotFoundError`, which the caller reads as
"the file vanished".
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from photocluster.errors import BadPhotoError
from photocluster.photos.exclude import Excluder, nothing_excluded

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
# ".mp" is the video half of a Pixel motion photo (PXL_x.MP beside its still PXL_x.MP.jpg).
# Sidecars (*.json, metadata.json, print-subscriptions.json) are neither photo nor video.
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".mov", ".m4v", ".3gp", ".webm", ".mkv", ".mp"})

MediaKind = Literal["photo", "video"]

# Names sync clients and browsers give files still being written. Hidden names (".*") cover
# Syncthing's ".syncthing.x.jpg.tmp", rsync's and Nextcloud's ".x.jpg.XXXX".
_TEMP_PREFIXES = (".", "~")
_TEMP_SUFFIXES = (".partial", ".tmp", ".crdownload", ".part")

_FILE_TYPES = (
    (stat.S_ISLNK, "is a symbolic link"),
    (stat.S_ISDIR, "not a regular file (directory)"),
    (stat.S_ISFIFO, "not a regular file (FIFO)"),
    (stat.S_ISSOCK, "not a regular file (socket)"),
    (stat.S_ISCHR, "not a regular file (character device)"),
    (stat.S_ISBLK, "not a regular file (block device)"),
)
# A folder is only a base for the next open (dir_fd): O_PATH needs no read permission on it, as
# resolving a whole path needed none.
_FOLDER_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class PhotoFile:
    data: bytes
    size: int
    mtime_ns: int
    content_hash: str  # blake2b, 16-byte digest, hex


def media_kind(name: str) -> MediaKind | None:
    """"photo" or "video" by the suffix of the basename of `name`; None for anything else,
    sync clients' temp names included."""
    base = name.rsplit("/", 1)[-1]
    lowered = base.lower()
    if base.startswith(_TEMP_PREFIXES) or lowered.endswith(_TEMP_SUFFIXES):
        return None
    suffix = os.path.splitext(lowered)[1]
    if suffix in PHOTO_SUFFIXES:
        return "photo"
    return "video" if suffix in VIDEO_SUFFIXES else None


def is_candidate(name: str) -> bool:
    """True when the basename of `name` has a photo suffix and is not a sync client's temp name."""
    return media_kind(name) == "photo"


def is_media(name: str) -> bool:
    """True for a photo or a video (`media_kind`); what walk and the watcher take once videos
    are ingested."""
    return media_kind(name) is not None


def walk(
    root: Path, excluder: Excluder | None = None, wanted: Callable[[str], bool] = is_candidate
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative POSIX path, lstat) of every regular file under `root` whose basename
    `wanted` accepts (photos by default; `is_media` adds videos).

    Symlinks (to files or directories) are never followed, hidden directories are skipped, an
    unreadable subdirectory is logged and skipped. A folder `excluder` excludes is never listed;
    an excluded file is never yielded. Paths come in sorted (str) order. If `root` itself cannot
    be listed the OSError propagates: an unmounted root must not look empty.
    """
    excludes = excluder.excludes if excluder is not None else nothing_excluded
    stack = [iter(_sorted_entries(os.fspath(root), ""))]
    while stack:
        for relative, entry in stack[-1]:
            if entry.is_dir(follow_symlinks=False):
                if not entry.name.startswith(".") and not excludes(relative):
                    children = _list_subdir(entry.path, relative)
                    stack.append(iter(children))
                    break
            elif wanted(entry.name) and not excludes(relative):
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


def read_photo(root: Path, relative: str, max_bytes: int) -> PhotoFile:
    """Read the whole file `relative` (a POSIX path below `root`) once, without following a
    symlink anywhere below `root` or blocking on a FIFO.

    The path is opened one folder at a time relative to the one before (`dir_fd`), so a folder
    swapped for a symlink after `walk` saw it cannot lead the read outside the root; `root`
    itself is followed (it may be a mount point reached through a link).

    Raises FileNotFoundError when it vanished (or a parent stopped being a directory), and
    BadPhotoError for anything else that makes it unusable: a symlink on the way, not a regular
    file, empty, larger than `max_bytes`, unreadable, or changed while being read. Raises
    ValueError for a path that is not plainly below the root (absolute, "..", empty parts): a
    caller's bug, since such a path never comes from `walk`.
    """
    *folders, name = _components(relative)
    parent = _open_folder(root, folders)
    try:
        _refuse_non_regular(parent, name)  # before open(): opening a device or FIFO has effects
        fd = _open_nofollow(parent, name)
    finally:
        os.close(parent)
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


def open_regular(root: Path, relative: str) -> tuple[int, os.stat_result]:
    """Open the non-empty regular file `relative` below `root` for reading the way `read_photo`
    does (no symlink followed anywhere below the root, no FIFO blocked on); returns (fd,
    fstat), the caller closes the fd. For readers that cannot take bytes (a video decoder
    opens a path: give it /proc/self/fd/N). Raises like `read_photo`."""
    *folders, name = _components(relative)
    parent = _open_folder(root, folders)
    try:
        _refuse_non_regular(parent, name)
        fd = _open_nofollow(parent, name)
    finally:
        os.close(parent)
    try:
        found = os.fstat(fd)
        _check_regular(found, max_bytes=found.st_size)
    except OSError as error:
        os.close(fd)
        raise BadPhotoError(f"read error: {error.strerror or error}") from error
    except BadPhotoError:
        os.close(fd)
        raise
    return fd, found


def _components(relative: str) -> list[str]:
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a path below the photo root: {relative!r}")
    return parts


def _open_folder(root: Path, folders: list[str]) -> int:
    """A descriptor of root/folders..., each folder opened without following a symlink."""
    try:
        current = os.open(root, _FOLDER_FLAGS)
    except OSError as error:
        raise _open_error(error) from error
    for folder in folders:
        try:
            child = os.open(folder, _FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=current)
        except OSError as error:
            raise _folder_error(current, folder, error) from error
        finally:
            os.close(current)
        current = child
    return current


def _folder_error(parent: int, folder: str, error: OSError) -> Exception:
    """O_DIRECTORY|O_NOFOLLOW answers ENOTDIR for a symlink and for a file alike: look again
    to tell a symlinked folder (refused) from one that became a file (the photo is gone)."""
    if error.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(parent, folder):
        return BadPhotoError("a parent folder is a symbolic link")
    return _open_error(error)


def _is_symlink(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode)
    except OSError:
        return False


def _refuse_non_regular(parent: int, name: str) -> None:
    try:
        found = os.lstat(name, dir_fd=parent)
    except OSError as error:
        raise _open_error(error) from error
    _check_type(found.st_mode)


def _open_nofollow(parent: int, name: str) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent)
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


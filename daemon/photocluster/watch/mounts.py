"""Which file system a path lives on, and which mounts lie below it, from
/proc/self/mountinfo: inotify sees nothing of what a server or another client changes on a
network or FUSE mount, so those are polled; a mount below the photo root that goes away must
not read as its photos deleted (`photocluster.vanish`)."""

from __future__ import annotations

import re

from photocluster.watch.change import is_within

# Filesystems where inotify misses changes made elsewhere (server, other clients, host).
_REMOTE_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "smb2", "sshfs", "9p", "virtiofs"}
    | {"afs", "ceph", "glusterfs", "lustre", "davfs", "fuse"}
)


def is_remote(fstype: str) -> bool:
    return fstype in _REMOTE_FILESYSTEMS or fstype.startswith("fuse.")


def filesystem_type(path: str) -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
            return _mount_type(path, file.read())
    except OSError:
        return None


def mounts_below(root: str) -> set[str]:
    """Mount points strictly below the canonical `root`, relative to it ("a/b"); empty when
    mountinfo cannot be read."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
            return _mounts_below(root, file.read())
    except OSError:
        return set()


def _mounts_below(root: str, mountinfo: str) -> set[str]:
    prefix = root.rstrip("/") + "/"
    return {point[len(prefix):] for point in map(_mount_point, mountinfo.splitlines())
            if point is not None and point.startswith(prefix)}


def _mount_point(line: str) -> str | None:
    """The mount point of one mountinfo(5) line, octal escapes undone."""
    fields = line.split(" ")
    if len(fields) < 5 or "-" not in fields[6:]:
        return None
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])


def _mount_type(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount holding `path` (canonical), from mountinfo(5) text."""
    best, fstype = "", None
    for line in mountinfo.splitlines():
        fields, mount_point = line.split(" "), _mount_point(line)
        if mount_point is None:
            continue
        inside = mount_point == "/" or is_within(path, mount_point)
        if inside and len(mount_point) >= len(best):  # the later of two stacked mounts wins
            best, fstype = mount_point, fields[fields.index("-", 6) + 1]
    return fstype


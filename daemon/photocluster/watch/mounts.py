"""Which file system a path lives on, from /proc/self/mountinfo: inotify sees nothing of what
a server or another client changes on a network or FUSE mount, so those are polled."""

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


def _mount_type(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount holding `path` (canonical), from mountinfo(5) text."""
    best, fstype = "", None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = mount_point == "/" or is_within(path, mount_point)
        if inside and len(mount_point) >= len(best):  # the later of two stacked mounts wins
            best, fstype = mount_point, fields[fields.index("-", 6) + 1]
    return fstype


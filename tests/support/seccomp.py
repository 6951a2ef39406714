"""Runs a command under the seccomp filters the systemd units load, without systemd.

`python -m tests.support.seccomp SYSCALLS_FILE COMMAND [ARG...]` loads, as systemd 252 does
for `SystemCallFilter=@system-service`, `SystemCallErrorNumber=EPERM`,
`SystemCallArchitectures=native`, `RestrictAddressFamilies=AF_UNIX` and
`NoNewPrivileges=yes`:

- an allow-list: the syscalls named in SYSCALLS_FILE (one a line: `@system-service` expanded,
  which holds `@default`, the set systemd adds to every allow-list) run, any other fails with
  EPERM; a syscall of a foreign architecture kills the process;
- `socket()` for any family but AF_UNIX fails with EAFNOSUPPORT;

then execs COMMAND, which inherits both filters. libseccomp (Debian's libseccomp2) through
ctypes: the venv has no seccomp binding. The tests build SYSCALLS_FILE with
`system_service_syscalls`, from `systemd-analyze syscall-filter` on this machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

# <seccomp.h>
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE = 1


def scmp_act_errno(number: int) -> int:
    return 0x00050000 | (number & 0x0000FFFF)


class ArgCompare(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def find_libseccomp() -> str | None:
    return ctypes.util.find_library("seccomp")


def system_service_syscalls(analyze: str) -> set[str]:
    """The syscall names `SystemCallFilter=@system-service` allows, nested groups expanded."""
    listing = subprocess.run(
        [analyze, "syscall-filter"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return expand(parse_groups(listing), "@system-service")


def parse_groups(listing: str) -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter` output -> group name -> its entries (names, @groups)."""
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in listing.splitlines():
        entry = line.strip()
        if line.startswith("@"):
            current = groups.setdefault(entry, [])
        elif line.startswith(" ") and entry and not entry.startswith("#"):
            current.append(entry)
    return groups


def expand(groups: dict[str, list[str]], name: str) -> set[str]:
    names: set[str] = set()
    for entry in groups[name]:
        names |= expand(groups, entry) if entry.startswith("@") else {entry}
    return names


def _library() -> ctypes.CDLL:
    path = find_libseccomp()
    if path is None:
        raise SystemExit("libseccomp is missing: apt-get install libseccomp2")
    lib = ctypes.CDLL(path, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCompare),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _load(
    lib: ctypes.CDLL, default_action: int, rules: list[tuple[int, int, list[ArgCompare]]]
) -> None:
    """One filter: `default_action`, then (action, syscall number, conditions) rules."""
    context = lib.seccomp_init(default_action)
    if not context:
        raise OSError("seccomp_init failed")
    try:
        for action, number, conditions in rules:
            array = (ArgCompare * len(conditions))(*conditions)
            result = lib.seccomp_rule_add_array(context, action, number, len(conditions), array)
            if result != 0:
                raise OSError(-result, f"seccomp_rule_add_array({number}): {os.strerror(-result)}")
        result = lib.seccomp_load(context)
        if result != 0:
            raise OSError(-result, f"seccomp_load: {os.strerror(-result)}")
    finally:
        lib.seccomp_release(context)


def confine(syscalls: set[str]) -> None:
    """Load both filters into this process (and whatever it execs)."""
    lib = _library()
    # RestrictAddressFamilies=AF_UNIX: loaded first, while seccomp(2) is still allowed.
    not_unix = [ArgCompare(0, SCMP_CMP_NE, socket.AF_UNIX, 0)]
    socket_number = lib.seccomp_syscall_resolve_name(b"socket")
    _load(lib, SCMP_ACT_ALLOW, [(scmp_act_errno(errno.EAFNOSUPPORT), socket_number, not_unix)])
    # A name this architecture lacks resolves to a negative number; systemd skips those too.
    numbers = {lib.seccomp_syscall_resolve_name(name.encode()) for name in syscalls}
    allowed = [(SCMP_ACT_ALLOW, number, []) for number in sorted(numbers) if number >= 0]
    _load(lib, scmp_act_errno(errno.EPERM), allowed)


def main(argv: list[str]) -> None:
    names_file, *command = argv
    confine(set(Path(names_file).read_text(encoding="ascii").split()))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The units' syscall filter lets the daemon embed a photo: `photocluster scan` with the real
model (TensorFlow and oneDNN, OpenCV, FAISS, SQLite) under the seccomp filters that
`SystemCallFilter=@system-service`, `SystemCallErrorNumber=EPERM`,
`SystemCallArchitectures=native`, `RestrictAddressFamilies=AF_UNIX` and `NoNewPrivileges=yes`
load.

Not through systemd: `systemd-run --user` and `systemd-run --scope` need a running systemd
manager, and CI machines and containers have none (PID 1 is not systemd). The filters are
loaded by `tests/support/seccomp.py` with libseccomp, from the allow-list that
`systemd-analyze syscall-filter` prints on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.config import write_config
from tests.support.consistency import all_linked
from tests.support.photos import REPO, write_photo
from tests.support.seccomp import find_libseccomp, system_service_syscalls

ANALYZE = shutil.which("systemd-analyze")

pytestmark = [
    pytest.mark.skipif(
        ANALYZE is None,
        reason="systemd-analyze is missing: apt-get install --no-install-recommends systemd",
    ),
    pytest.mark.skipif(
        find_libseccomp() is None, reason="libseccomp is missing: apt-get install libseccomp2"
    ),
]


def sandboxed(allow_list: Path, *command: str) -> subprocess.CompletedProcess[str]:
    runner = [sys.executable, "-m", "tests.support.seccomp", str(allow_list)]
    return subprocess.run(
        [*runner, *command], capture_output=True, text=True, cwd=REPO, timeout=540
    )


@pytest.fixture
def allow_list(tmp_path: Path) -> Path:
    assert ANALYZE is not None
    path = tmp_path / "system-service.syscalls"
    path.write_text("\n".join(sorted(system_service_syscalls(ANALYZE))) + "\n", encoding="ascii")
    return path


def test_the_sandbox_is_in_force_for_the_command_it_runs(allow_list: Path) -> None:
    """Without this, a passing scan below could mean no filter was loaded."""
    probe = (
        "import os, socket\n"
        "print(open('/proc/self/status').read())\n"
        "for call in (lambda: os.chroot('/'), lambda: socket.socket(socket.AF_INET)):\n"
        "    try:\n"
        "        call()\n"
        "    except OSError as error:\n"
        "        print('refused', error.errno)\n"
    )
    result = sandboxed(allow_list, sys.executable, "-c", probe)
    assert result.returncode == 0, result.stderr
    assert "Seccomp:\t2" in result.stdout  # filter mode
    assert "refused 1" in result.stdout  # chroot: not in @system-service, EPERM
    assert "refused 97" in result.stdout  # AF_INET: EAFNOSUPPORT


@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_scan_embeds_and_links_photos_under_the_units_syscall_filter(
    tmp_path: Path, allow_list: Path, real_weights: object
) -> None:
    from photocluster.embedder import WeightsFile

    assert isinstance(real_weights, WeightsFile)
    for index, colour in enumerate([(200, 40, 40), (40, 60, 200)]):
        write_photo(tmp_path / "photos" / f"photo_{index}.jpg", colour, seed=index)
    shutil.copytree(real_weights.path.parent, tmp_path / "state" / "weights")
    config = write_config(tmp_path)
    cli = "import sys; from photocluster.cli import main; sys.exit(main())"
    result = sandboxed(allow_list, sys.executable, "-c", cli, "-c", str(config), "scan")
    assert result.returncode == 0, result.stderr[-4000:]
    assert all_linked(tmp_path)

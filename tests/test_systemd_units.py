"""The systemd units: `systemd-analyze verify` has nothing to say about them, and their
sandboxing keeps `systemd-analyze security` exposure at 2.5 or below."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from photocluster import cli

UNITS = Path(__file__).resolve().parents[1] / "systemd"
ANALYZE = shutil.which("systemd-analyze")
# unit file, whether it is a user unit (`systemctl --user`)
CASES = [("photocluster.service", True), ("photocluster-system.service", False)]

needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is missing: apt-get install --no-install-recommends systemd",
)
# What the daemon relies on (DESIGN.md, "Signals and systemd") and the agreed hardening.
REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "120",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "RestartPreventExitStatus": "2 3",  # cli.EXIT_CONFIG, cli.EXIT_LOCKED
    "TimeoutStopSec": "30",
    "Nice": "10",
    "IOSchedulingClass": "idle",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_UNIX",
    "IPAddressDeny": "any",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "UMask": "0077",
}


def installed_here(unit: str, folder: Path) -> Path:
    """A copy of `unit` whose ExecStart= names an executable that exists on this machine.

    verify refuses a unit whose binary is missing; the units name their install location.
    """
    binary = Path(sys.executable).with_name("photocluster")
    executable = str(binary) if binary.exists() else sys.executable
    text, count = re.subn(
        r"^ExecStart=\S+", f"ExecStart={executable}", (UNITS / unit).read_text(), flags=re.M
    )
    assert count == 1, f"{unit} must have exactly one ExecStart="
    copy = folder / unit
    copy.write_text(text)
    return copy


def analyze(unit: Path, user: bool, *arguments: str) -> subprocess.CompletedProcess[str]:
    # A user manager's view needs a runtime directory, even offline.
    runtime = unit.parent / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    command = [str(ANALYZE), *(["--user"] if user else []), *arguments, str(unit)]
    environment = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)


@pytest.mark.parametrize("unit", [unit for unit, _ in CASES])
def test_unit_keeps_the_agreed_settings(unit: str) -> None:
    lines = (UNITS / unit).read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Za-z]+=", line))
    assert {key: settings.get(key) for key in REQUIRED} == REQUIRED
    # oneDNN JIT-compiles its kernels into writable and executable pages.
    assert "MemoryDenyWriteExecute" not in settings
    assert "MemoryMax" in settings


def test_the_exit_codes_a_restart_cannot_fix_are_the_clis() -> None:
    assert REQUIRED["RestartPreventExitStatus"] == f"{cli.EXIT_CONFIG} {cli.EXIT_LOCKED}"


@needs_analyze
@pytest.mark.parametrize(("unit", "user"), CASES)
def test_unit_verifies_without_warnings(unit: str, user: bool, tmp_path: Path) -> None:
    result = analyze(installed_here(unit, tmp_path), user, "--man=no", "verify")
    # verify exits 0 on warnings such as unknown keys or unparsable values: any output fails.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
@pytest.mark.parametrize(("unit", "user"), CASES)
def test_unit_exposure_is_at_most_2_5(unit: str, user: bool, tmp_path: Path) -> None:
    copy = installed_here(unit, tmp_path)
    result = analyze(copy, user, "security", "--offline=true", "--threshold=25")
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, summary

"""buttons-agent.service under a real systemd (systemd-nspawn --boot): READY, the watchdog
restart of a wedged loop, and a graceful stop. See systemd/test-in-nspawn.sh.

Needs root, systemd-nspawn, and the cached root filesystem that
`systemd/test-in-nspawn.sh --rootfs-only` builds (it needs the Debian mirror, which the tests'
network namespace cannot reach; `make` builds it first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).parents[2]
SCRIPT = PROJECT / "systemd" / "test-in-nspawn.sh"
ROOTFS = PROJECT / "build" / "systemd-test-rootfs.tar"
CHECKS = ("verify", "ready", "press", "watchdog", "stop")


def test_service_under_real_systemd(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("systemd-nspawn needs root")
    for tool, package in (("systemd-nspawn", "systemd-container"), ("mmdebstrap", "mmdebstrap")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (Debian package: {package})")
    if not ROOTFS.exists():
        pytest.fail(f"no {ROOTFS}: run `{SCRIPT} --rootfs-only` first (needs the Debian mirror)")
    # Two boot attempts of 240 s at most, plus setup.
    result = subprocess.run(
        [str(SCRIPT), "--workdir", str(tmp_path / "nspawn")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    passed = {
        line.split()[1]
        for line in output.splitlines()
        if line.startswith("CHECK ") and " PASS" in line
    }
    assert passed == set(CHECKS), output
    assert result.returncode == 0, output

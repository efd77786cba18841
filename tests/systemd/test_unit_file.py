"""The unit file itself: `systemd-analyze verify` is clean and the hardening score is ≤ 2.5."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "buttons-agent.service"
MAX_EXPOSURE = 2.5


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this interpreter (verify checks that it exists);
    everything else exactly as shipped."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian package: systemd)")
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/buttons-agent/bin/python " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/opt/buttons-agent/bin/python", sys.executable), "utf-8")
    return copy


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_systemd_analyze_verify_is_clean(unit_copy: Path) -> None:
    result = analyze("verify", "--man=no", f"./{unit_copy.name}", cwd=unit_copy.parent)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_security_exposure_is_ok(unit_copy: Path) -> None:
    result = analyze(
        "security", "--offline=true", "--no-pager", f"./{unit_copy.name}", cwd=unit_copy.parent
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout
    assert match[2] == "OK"


def test_unit_keeps_the_issue_requirements() -> None:
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["Type"] == "notify"
    assert settings["Restart"] == "on-failure"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["CapabilityBoundingSet"] == ""
    assert "lircd.service" in settings["Wants"]
    assert "network-online.target" in settings["After"]

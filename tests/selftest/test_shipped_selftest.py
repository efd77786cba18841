"""CI runs the on-device suite exactly as `buttons-agent selftest` does on a Pi (mock pins,
real lircd, the real agent process), in this session's private network namespace."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent.selftest.harness import parse_status
from agent.selftest.runner import build_parser, pytest_arguments


@pytest.mark.netns
@pytest.mark.lirc
def test_selftest_passes_and_writes_a_junit_report(tmp_path: Path) -> None:
    report = tmp_path / "selftest.xml"
    result = subprocess.run(
        [sys.executable, "-m", "agent.service", "selftest", "--no-isolation",
         "--junit-xml", str(report)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "buttons-agent selftest: PASSED" in result.stdout
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", "0")) >= 7
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")


def test_real_pins_and_filters_reach_pytest(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--real-pins", "-k", "led", "--junit-xml", str(tmp_path / "r")]
    )
    arguments = pytest_arguments(args)
    assert "--real-pins" in arguments
    assert arguments[arguments.index("-k") + 1] == "led"
    assert f"--junitxml={tmp_path / 'r'}" in arguments


def test_ready_status_names_instance_and_port() -> None:
    assert parse_status("Serving tv@pi on port 5298 (kodi backend)") == ("tv@pi", 5298)
    with pytest.raises(AssertionError, match="unexpected READY status"):
        parse_status("Starting")

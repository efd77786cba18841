"""`buttons-agent selftest`: run the on-device suite with pytest and print a clear verdict.

Runs in a private network namespace (as root; the agent under test multicasts mDNS on
loopback, which must never reach the LAN), writes a junit XML report, exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buttons-agent selftest",
        description="Run the on-device test suite (real agent process, real lircd, "
        "mock or loop-backed GPIO pins, a phone-side client).",
    )
    parser.add_argument(
        "--junit-xml",
        type=Path,
        default=Path(tempfile.gettempdir()) / "buttons-agent-selftest.xml",
        help="where to write the junit XML report (default: %(default)s)",
    )
    parser.add_argument(
        "--real-pins",
        action="store_true",
        help="drive the real GPIO pins through the jumper loop-back (see the README)",
    )
    parser.add_argument(
        "--no-isolation",
        action="store_true",
        help="do not enter a private network namespace (mDNS then runs on this host's loopback)",
    )
    parser.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def pytest_arguments(args: argparse.Namespace) -> list[str]:
    arguments = [
        "--pyargs",
        "agent.selftest",
        "-p",
        "agent.selftest.plugin",
        "-p",
        "no:cacheprovider",  # site-packages may be read-only
        "-c",
        os.devnull,  # not the project's pyproject.toml: the device has none
        "--rootdir",
        str(Path(__file__).parent),
        "-o",
        "trio_mode=true",
        "-rfEsx",
        f"--junitxml={args.junit_xml}",
    ]
    if args.real_pins:
        arguments.append("--real-pins")
    if args.keyword:
        arguments += ["-k", args.keyword]
    arguments.append("-v" if args.verbose else "-q")
    return arguments


def selftest_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    missing = [name for name in ("pytest", "pytest_trio") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"buttons-agent selftest: {', '.join(missing)} not installed; "
            "install the selftest extra: pip install 'buttons-agent[selftest]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    import pytest

    if not args.no_isolation:
        from agent.testing import netns

        try:
            isolation = netns.enter_private_netns()
        except netns.NetnsError as exc:
            print(
                f"buttons-agent selftest: cannot enter a private network namespace ({exc}); "
                "run as root, or pass --no-isolation",
                file=sys.stderr,
            )
            return EXIT_USAGE
        print(f"buttons-agent selftest: {isolation.describe()}", flush=True)
    code = pytest.main(pytest_arguments(args))
    verdict = "PASSED" if code == 0 else f"FAILED (pytest exit code {int(code)})"
    print(f"buttons-agent selftest: {verdict}; report: {args.junit_xml}", flush=True)
    return EXIT_OK if code == 0 else EXIT_FAILED

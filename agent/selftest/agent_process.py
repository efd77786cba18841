"""The agent process the selftest starts: `python -m agent.selftest.agent_process`.

It is the service entry point (`agent.service.run_service`: READY/STATUS/WATCHDOG over
$NOTIFY_SOCKET, graceful SIGTERM) with one difference the test needs: with
`--gpio-mock-control SOCKET`, GPIO runs on gpiozero MockFactory pins that the test drives and
reads through SOCKET (see mockpins.py). Without it the real pin factory is used, i.e. this is
exactly `python -m agent.service run --config FILE`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from agent import config as config_module
from agent.app import Agent
from agent.selftest.mockpins import serve_pin_control
from agent.service import run_service


async def _run(config: config_module.Config, control_path: str | None) -> None:
    if control_path is None:
        await run_service(Agent(config))
        return
    from gpiozero.pins.mock import MockFactory

    factory: Any = MockFactory()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_pin_control, factory, control_path)
            await run_service(Agent(config, pin_factory=factory))
            nursery.cancel_scope.cancel()
    finally:
        factory.reset()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.selftest.agent_process")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--gpio-mock-control", metavar="SOCKET")
    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as exc:
        print(f"buttons-agent: {exc}", file=sys.stderr)
        return 2
    from agent import logs

    logs.setup(config.log_level)
    trio.run(_run, config, args.gpio_mock_control)
    return 0


if __name__ == "__main__":
    sys.exit(main())

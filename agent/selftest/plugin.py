"""pytest plugin of the on-device suite: options and fixtures.

`buttons-agent selftest` loads it with `-p agent.selftest.plugin`; so can CI
(`pytest -p agent.selftest.plugin --pyargs agent.selftest`).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.security.phone import PhoneCredentials
from agent.selftest.harness import (
    AgentProcess,
    LoopbackPins,
    MockPins,
    PinSetup,
    agent_config_toml,
    open_agent_process,
    open_pins,
    pair_on_disk,
)
from agent.testing.lircd import TEST_REMOTE, TestLircd, open_test_lircd


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("buttons-agent selftest")
    group.addoption(
        "--real-pins",
        action="store_true",
        help="use the real GPIO pins with the jumper loop-back (see the selftest README)",
    )
    defaults = PinSetup()
    for field in ("pair_button", "status_led", "pair_drive", "led_sense"):
        default = getattr(defaults, field)
        option = f"--{field.replace('_', '-')}-pin"
        group.addoption(option, default=default, help=f"default {default}")


@pytest.fixture
def pin_setup(request: pytest.FixtureRequest) -> PinSetup:
    option = request.config.getoption
    return PinSetup(
        pair_button=option("--pair-button-pin"),
        status_led=option("--status-led-pin"),
        pair_drive=option("--pair-drive-pin"),
        led_sense=option("--led-sense-pin"),
    )


@pytest.fixture
async def lircd(tmp_path: Path) -> AsyncIterator[TestLircd]:
    if shutil.which("lircd") is None:
        pytest.fail("lircd is not installed (Debian package: lirc)")
    async with open_test_lircd(tmp_path / "lircd") as daemon:
        yield daemon


@pytest.fixture
def phone(tmp_path: Path) -> PhoneCredentials:
    """The test phone's credentials, paired with the agent (see `pair_on_disk`)."""
    return pair_on_disk(tmp_path / "agent-state", tmp_path / "phone")


@pytest.fixture
async def agent(
    tmp_path: Path,
    lircd: TestLircd,
    pin_setup: PinSetup,
    phone: PhoneCredentials,
    request: pytest.FixtureRequest,
) -> AsyncIterator[AgentProcess]:
    """The real agent process, READY (listening, mDNS registered), paired with `phone`."""
    config = agent_config_toml(lircd.address, TEST_REMOTE, pin_setup, tmp_path / "agent-state")
    real = bool(request.config.getoption("--real-pins"))
    async with open_agent_process(tmp_path / "agent", config, mock_pins=not real) as process:
        yield process


@pytest.fixture
async def pins(
    agent: AgentProcess, pin_setup: PinSetup, request: pytest.FixtureRequest
) -> AsyncIterator[MockPins | LoopbackPins]:
    real = bool(request.config.getoption("--real-pins"))
    async with open_pins(agent, pin_setup, real=real) as controlled:
        yield controlled

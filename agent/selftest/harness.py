"""The selftest's view of a running agent: the real agent process (in the role of systemd: we
own its $NOTIFY_SOCKET and see READY/STATUS/STOPPING), its GPIO pins, and its log."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from agent.security.phone import PhoneCredentials
from agent.selftest.mockpins import PinControlClient

READY_TIMEOUT = 90.0  # a Pi Zero 2 W or QEMU takes a while to import everything
STOP_TIMEOUT = 20.0  # the unit's TimeoutStopSec


@dataclass(frozen=True, slots=True)
class PinSetup:
    """The agent's pins, and (with --real-pins) the harness's jumper loop-back pins."""

    pair_button: str = "GPIO27"
    status_led: str = "GPIO22"
    #: Real pins only: wired to `pair_button`; driving it low presses the button.
    pair_drive: str = "GPIO5"
    #: Real pins only: wired to `status_led`; reads the LED's level.
    led_sense: str = "GPIO6"


AGENT_JID = "selftest@selftest"


def agent_config_toml(lircd_socket: str, remote: str, pins: PinSetup, state_dir: Path) -> str:
    """The agent under test: router (power → IR through lircd, the rest → virtual TV), IR
    passthrough, GPIO; loopback only, any free port; its own state directory."""
    name, host = AGENT_JID.split("@")
    return f"""\
name = {json.dumps(name)}
host = {json.dumps(host)}
state_dir = {json.dumps(str(state_dir))}
nick = "Selftest TV"
port = 0
listen = ["127.0.0.1"]
mdns_interfaces = ["127.0.0.1"]
backend = "router"
log_level = "debug"

[lirc]
address = {json.dumps(lircd_socket)}
remote = {json.dumps(remote)}

[lirc.passthrough]
enabled = true
min_gap = 0.0

[router]
default = "virtual"
state_from = "virtual"
routes = [{{ backend = "lirc", buttons = ["power"] }}]

[gpio]
enabled = true
pair_button_pin = {json.dumps(pins.pair_button)}
status_led_pin = {json.dumps(pins.status_led)}
"""


def pair_on_disk(state_dir: Path, phone_home: Path, agent_jid: str = AGENT_JID) -> PhoneCredentials:
    """A phone paired with the agent that will run with `state_dir`, before it starts: the
    agent's identity is created where it will load it, its trust store gets the phone, and the
    phone pins the agent (what a completed pairing leaves behind; pairing itself is tested in
    tests/security/). Also works beside a running agent: it rereads its trust store."""
    from agent.app import PEERS_FILE
    from agent.security.keys import load_or_create
    from agent.security.truststore import TrustStore
    from agent.testing.pairing import TEST_PHONE_NAME, make_phone

    identity = load_or_create(state_dir, agent_jid, server=True)
    phone = make_phone(phone_home)
    TrustStore(state_dir / PEERS_FILE).add(TEST_PHONE_NAME, phone.identity.cert_der)
    phone.agents.add(agent_jid, identity.cert_der, keep_cert=False)
    return phone


class Pins(Protocol):
    async def set_pair_button(self, pressed: bool) -> None: ...
    async def mark(self) -> None:
        """Start a new record of the LED's levels."""

    async def levels_since_mark(self) -> list[bool]:
        """The LED's level at `mark()`, then every level it changed to since."""
        ...


async def led_levels(pins: Pins, seconds: float) -> list[bool]:
    """Every level the LED shows during the next `seconds` (first: the current one)."""
    await pins.mark()
    await trio.sleep(seconds)
    return await pins.levels_since_mark()


class MockPins:
    """The agent's MockFactory pins, over its --gpio-mock-control socket."""

    def __init__(self, client: PinControlClient, setup: PinSetup) -> None:
        self.client = client
        self.setup = setup

    async def set_pair_button(self, pressed: bool) -> None:
        await self.client.drive(self.setup.pair_button, high=not pressed)  # pulled up

    async def mark(self) -> None:
        await self.client.history(self.setup.status_led)  # restarts the pin's record

    async def levels_since_mark(self) -> list[bool]:
        # The record starts with the level at the restart, then every change.
        return [high for _, high in await self.client.history(self.setup.status_led)]


class LoopbackPins:
    """Real pins (--real-pins): the harness drives `pair_drive` (jumpered to the agent's
    button pin) and watches `led_sense` (jumpered to the LED pin) from this process."""

    def __init__(self, setup: PinSetup) -> None:
        from gpiozero import DigitalInputDevice, DigitalOutputDevice

        self.setup = setup
        # Idle high like the pulled-up button; low = pressed.
        self._drive = DigitalOutputDevice(setup.pair_drive, initial_value=True)
        self._sense = DigitalInputDevice(setup.led_sense, pull_up=False)
        self._levels: list[bool] = []
        # gpiozero calls these on its own thread; a list append is all they do.
        self._sense.when_activated = lambda: self._levels.append(True)
        self._sense.when_deactivated = lambda: self._levels.append(False)

    def close(self) -> None:
        self._drive.close()
        self._sense.close()

    async def set_pair_button(self, pressed: bool) -> None:
        await trio.to_thread.run_sync(self._drive.off if pressed else self._drive.on)

    async def mark(self) -> None:
        self._levels = [bool(self._sense.value)]

    async def levels_since_mark(self) -> list[bool]:
        return list(self._levels)


def toggles(levels: list[bool]) -> int:
    return sum(1 for before, after in itertools.pairwise(levels) if before != after)


class AgentProcess:
    """A running `python -m agent.selftest.agent_process`; see `open_agent_process`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_path = directory / "agent.log"
        self.notify_path = directory / "notify"
        #: Every sd_notify message the agent sent, in order.
        self.messages: list[dict[str, str]] = []
        self._changed = trio.Event()
        self.process: trio.Process | None = None
        self.instance = ""
        self.port = 0

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    async def collect_notifications(self, sock: trio.socket.SocketType) -> None:
        while True:
            data = await sock.recv(4096)
            message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(message)
            self._changed.set()
            self._changed = trio.Event()

    async def wait_message(
        self, wanted: Callable[[dict[str, str]], bool], *, seconds: float
    ) -> dict[str, str]:
        with trio.fail_after(seconds):
            while True:
                for message in self.messages:
                    if wanted(message):
                        return message
                if self.process is not None and self.process.poll() is not None:
                    raise AssertionError(
                        f"the agent exited with {self.process.returncode}; log:\n"
                        + self.log_text()[-3000:]
                    )
                with trio.move_on_after(0.5):  # also notice the process exiting
                    await self._changed.wait()

    async def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit code (0 = graceful)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_TIMEOUT):
                await self.process.wait()
            if self.process.poll() is None:
                self.process.kill()
                await self.process.wait()
                raise AssertionError(f"the agent ignored SIGTERM for {STOP_TIMEOUT}s")
        code = self.process.returncode
        assert code is not None
        return code


@asynccontextmanager
async def open_agent_process(
    directory: Path, config_text: str, *, mock_pins: bool
) -> AsyncIterator[AgentProcess]:
    """Start the agent; return once it sent READY=1 (listening + mDNS registered)."""
    await trio.Path(directory).mkdir(parents=True, exist_ok=True)
    agent = AgentProcess(directory)
    config_path = directory / "agent.toml"
    config_path.write_text(config_text, encoding="utf-8")
    command = [sys.executable, "-m", "agent.selftest.agent_process", "--config", str(config_path)]
    if mock_pins:
        command += ["--gpio-mock-control", str(directory / "pins.sock")]
    env = dict(os.environ, NOTIFY_SOCKET=str(agent.notify_path), WATCHDOG_USEC="2000000")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(agent.notify_path))
    with sock, agent.log_path.open("wb") as log:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.collect_notifications, sock)
            agent.process = await trio.lowlevel.open_process(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
            try:
                ready = await agent.wait_message(lambda m: "READY" in m, seconds=READY_TIMEOUT)
                agent.instance, agent.port = parse_status(ready.get("STATUS", ""))
                yield agent
            finally:
                with trio.CancelScope(shield=True):
                    await agent.stop()
                nursery.cancel_scope.cancel()


def parse_status(status: str) -> tuple[str, int]:
    """agent.service's READY status: 'Serving <instance> on port <port> (…)'."""
    words = status.split()
    if len(words) < 5 or words[0] != "Serving" or words[2:4] != ["on", "port"]:
        raise AssertionError(f"unexpected READY status {status!r}")
    return words[1], int(words[4])


@asynccontextmanager
async def open_pins(
    agent: AgentProcess, setup: PinSetup, *, real: bool
) -> AsyncIterator[MockPins | LoopbackPins]:
    if real:
        pins = LoopbackPins(setup)
        try:
            yield pins
        finally:
            pins.close()
        return
    client = await PinControlClient.connect(str(agent.directory / "pins.sock"))
    try:
        yield MockPins(client, setup)
    finally:
        await client.aclose()

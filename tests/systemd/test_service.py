"""agent.service in-process: sd_notify datagrams on a socket the test owns (as systemd would),
the watchdog's pets, the graceful SIGTERM path, and config fallbacks."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from agent import client
from agent.app import Agent
from agent.config import load
from agent.service import Notifier, load_with_fallback, run_service, watchdog_interval
from agent.testing.pairing import default_phone


@asynccontextmanager
async def notify_socket(tmp_path: Path) -> AsyncIterator[trio.socket.SocketType]:
    """A datagram socket in the role of systemd's $NOTIFY_SOCKET."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(tmp_path / "notify"))
    with sock:
        yield sock


async def next_message(sock: trio.socket.SocketType) -> dict[str, str]:
    with trio.fail_after(10):
        data = await sock.recv(4096)
    return dict(line.split("=", 1) for line in data.decode().splitlines())


async def test_notifier_sends_sd_notify_lines(tmp_path: Path) -> None:
    async with notify_socket(tmp_path) as sock:
        notifier = Notifier(str(tmp_path / "notify"))
        notifier.ready("Serving")
        notifier.pet()
        notifier.close()
        ready = await next_message(sock)
        assert ready == {"READY": "1", "STATUS": "Serving", "MAINPID": str(os.getpid())}
        assert await next_message(sock) == {"WATCHDOG": "1"}


def test_notifier_without_systemd_does_nothing() -> None:
    notifier = Notifier(None)
    notifier.ready("ignored")  # no socket, no error
    assert not notifier.enabled


def test_notifier_survives_a_vanished_socket(tmp_path: Path) -> None:
    Notifier(str(tmp_path / "nobody-listens")).status("lost")  # logged, not raised


def test_abstract_socket_names_use_a_nul_byte() -> None:
    assert Notifier("@/org/freedesktop/systemd1/notify").address == (
        "\0/org/freedesktop/systemd1/notify"
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "4000000"}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdogsec(
    environ: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(environ) == expected


@pytest.mark.netns
async def test_service_is_ready_after_mdns_pets_the_watchdog_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    settings = {"port": 0, "listen": ["127.0.0.1"], "host": "svc", "mdns_interfaces": ["127.0.0.1"]}
    agent = Agent(load(None, {**settings, "state_dir": str(tmp_path / "state")}))
    environ = {"WATCHDOG_USEC": "200000"}  # pets every 0.1 s
    async with notify_socket(tmp_path) as sock, trio.open_nursery() as nursery:
        notifier = Notifier(str(tmp_path / "notify"))
        nursery.start_soon(lambda: run_service(agent, notifier=notifier, environ=environ))
        messages = [await next_message(sock) for _ in range(2)]
        assert messages[0] == {"STATUS": "Starting backend and listener"}
        while "READY" not in messages[-1]:
            messages.append(await next_message(sock))
        assert agent.ready.is_set()  # listening, and announced (agent.run announces first)
        assert f"port {agent.port}" in messages[-1]["STATUS"]
        assert {"WATCHDOG": "1"} in messages  # petting started before READY
        with default_phone(agent):
            async with client.connect("127.0.0.1", agent.port, agent=agent.instance) as phone:
                await phone.press("mute")
                assert (await phone.state()).muted
        pets = 0
        while pets < 2:  # the loop is alive, so the pets keep coming
            pets += (await next_message(sock)) == {"WATCHDOG": "1"}
        os.kill(os.getpid(), signal.SIGTERM)
        while "STOPPING" not in (message := await next_message(sock)):
            pass
        assert message["STATUS"].startswith("Stopping (SIGTERM)")
    # run_service returned (the nursery closed), so the agent stopped gracefully.


def test_broken_boot_config_falls_back_to_the_next_file(tmp_path: Path) -> None:
    boot = tmp_path / "buttons-agent.toml"
    boot.write_text('port = "lots"\n')
    etc = tmp_path / "agent.toml"
    etc.write_text('nick = "Den"\n')
    config, used, problems = load_with_fallback([boot, etc])
    assert (config.nick, used) == ("Den", etc)
    assert len(problems) == 1
    assert "'port'" in problems[0]


def test_no_valid_config_gives_defaults_and_says_why(tmp_path: Path) -> None:
    boot = tmp_path / "buttons-agent.toml"
    boot.write_text("this is not toml")
    config, used, problems = load_with_fallback([boot, tmp_path / "missing.toml"])
    assert used is None
    assert config.port == 5298
    assert len(problems) == 1
    assert "not valid TOML" in problems[0]


def test_bad_overrides_still_give_defaults(tmp_path: Path) -> None:
    config, used, problems = load_with_fallback([], {"port": "many"})
    assert (config.port, used) == (5298, None)
    assert problems

"""Run a whole agent in-process for tests (and the on-device self-test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from tempfile import TemporaryDirectory
from typing import Any

import trio

from agent.app import Agent
from agent.backends.base import Backend
from agent.config import load
from agent.groups import single_exception
from agent.testing.pairing import default_phone


@asynccontextmanager
async def open_agent(
    backend: Backend | None = None,
    /,
    *,
    announce: bool = False,
    pin_factory: Any = None,
    paired_phone: bool = True,
    **overrides: Any,
) -> AsyncIterator[Agent]:
    """An agent on 127.0.0.1 and a free port (unless overridden), stopped gracefully on exit.

    `overrides` are config keys (`backend="router"`, `lirc={...}`, …). The agent's state
    lives in a temporary directory (unless `state_dir` is given), and a temporary phone
    identity, paired with it unless `paired_phone=False`, is the default of
    `agent.client.connect()` inside the block (agent/testing/pairing.py).
    """
    settings: dict[str, Any] = {
        "port": 0,
        "listen": ["127.0.0.1"],
        "host": "test",
        "mdns_interfaces": ["127.0.0.1"],
        # The web remote only where a test asks for it (then on a free loopback port).
        "web": {"enabled": False},
    }
    settings.update(overrides)
    with ExitStack() as cleanup:
        if "state_dir" not in settings:
            settings["state_dir"] = cleanup.enter_context(
                TemporaryDirectory(prefix="buttons-agent-")
            )
        agent = Agent(load(None, settings), backend, pin_factory=pin_factory)
        with single_exception():
            async with trio.open_nursery() as nursery:
                await nursery.start(_run, agent, announce)
                with default_phone(agent, paired=paired_phone):
                    try:
                        yield agent
                    finally:
                        agent.stop()


async def _run(agent: Agent, announce: bool, *, task_status: trio.TaskStatus[None]) -> None:
    await agent.run(announce=announce, task_status=task_status)


async def eventually(predicate: Callable[[], bool], *, seconds: float = 5.0) -> None:
    """Wait until `predicate()` holds, polling; fails the test after `seconds`.

    For state that has no event to wait on (a pin level, a pattern a task is playing).
    """
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the value itself
            await trio.sleep(0.01)

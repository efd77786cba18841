"""Run a whole agent in-process for tests (and the on-device self-test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from agent.app import Agent
from agent.backends.base import Backend
from agent.config import load
from agent.groups import single_exception


@asynccontextmanager
async def open_agent(
    backend: Backend | None = None,
    /,
    *,
    announce: bool = False,
    pin_factory: Any = None,
    **overrides: Any,
) -> AsyncIterator[Agent]:
    """An agent on 127.0.0.1 and a free port (unless overridden), stopped gracefully on exit.

    `overrides` are config keys (`backend="router"`, `lirc={...}`, …).
    """
    settings: dict[str, Any] = {
        "port": 0,
        "listen": ["127.0.0.1"],
        "host": "test",
        "mdns_interfaces": ["127.0.0.1"],
    }
    settings.update(overrides)
    agent = Agent(load(None, settings), backend, pin_factory=pin_factory)
    with single_exception():
        async with trio.open_nursery() as nursery:
            await nursery.start(_run, agent, announce)
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

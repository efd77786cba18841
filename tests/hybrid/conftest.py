"""A private Prosody on loopback per test, with the agent's, a phone's and a stranger's account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from agent.testing.hybrid import register_users
from agent.testing.prosody import PrivateProsody


@pytest.fixture
async def prosody(tmp_path: Path) -> AsyncIterator[PrivateProsody]:
    server = PrivateProsody(tmp_path, log_level="warn")
    await trio.to_thread.run_sync(server.start)
    await trio.to_thread.run_sync(register_users, server)
    try:
        yield server
    finally:
        await trio.to_thread.run_sync(server.stop)

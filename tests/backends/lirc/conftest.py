from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.testing.lircd import TestLircd, open_test_lircd


@pytest.fixture
async def lircd(tmp_path: Path) -> AsyncIterator[TestLircd]:
    """A private real lircd (file driver) on its own unix socket."""
    async with open_test_lircd(tmp_path / "lircd") as daemon:
        yield daemon

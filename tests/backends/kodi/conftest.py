"""Kodi fixtures: an in-process FakeKodi for fast tests, one real headless Kodi per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import trio

from agent.backends.kodi import KodiBackend
from agent.backends.kodi.transport import TcpConnection, open_tcp_connection
from agent.config import KodiConfig
from agent.testing.fake_kodi import FakeKodi
from agent.testing.kodi import HeadlessKodi

#: Generous: bounds every wait in these tests, never asserted on.
STEP_TIMEOUT = 10.0


@pytest.fixture
async def fake_kodi(nursery: trio.Nursery) -> FakeKodi:
    fake: FakeKodi = await nursery.start(FakeKodi().serve)
    return fake


StartBackend = Callable[[KodiConfig], Awaitable[KodiBackend]]


@pytest.fixture
def start_backend(nursery: trio.Nursery) -> StartBackend:
    """Start a KodiBackend (fast retries) in the test's nursery; returns once it tried once."""

    async def start(config: KodiConfig) -> KodiBackend:
        backend = KodiBackend(config, max_backoff=0.2)
        with trio.fail_after(STEP_TIMEOUT):
            await nursery.start(backend.run)
        return backend

    return start


@pytest.fixture
async def backend(start_backend: StartBackend, fake_kodi: FakeKodi) -> KodiBackend:
    return await start_backend(fake_kodi.kodi_config())


# -- the real Kodi -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kodi_session() -> Iterator[HeadlessKodi]:
    """One headless Kodi for the whole session (it takes ~8 s to start)."""
    kodi = HeadlessKodi()
    try:
        kodi.start()
        yield kodi
    finally:
        kodi.close()


@pytest.fixture
def real_kodi(kodi_session: HeadlessKodi) -> HeadlessKodi:
    """The session's Kodi, (re)started if a test killed it, reset to a known state."""
    if not kodi_session.running:
        kodi_session.start()
    kodi_session.reset()
    return kodi_session


@pytest.fixture
async def kodi_direct(real_kodi: HeadlessKodi) -> AsyncIterator[TcpConnection]:
    """Our own JSON-RPC connection to the real Kodi, to check effects through Kodi's API."""
    async with open_tcp_connection(
        real_kodi.host, real_kodi.tcp_port, call_timeout=STEP_TIMEOUT
    ) as connection:
        yield connection

"""The --gpio-mock-control protocol: drive a pin, read it, its history; bad requests get an
error reply, never a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from agent.selftest.mockpins import PinControlClient, PinControlError, serve_pin_control
from agent.testing.gpio import mock_pin_factory


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[PinControlClient]:
    path = str(tmp_path / "pins.sock")
    with mock_pin_factory() as factory:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_pin_control, factory, path)
            client = await PinControlClient.connect(path)
            yield client
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_drive_read_and_history(control: PinControlClient) -> None:
    await control.history("GPIO5")  # restart the record
    await control.drive("GPIO5", high=True)
    assert await control.read("GPIO5") is True
    await control.drive("GPIO5", high=False)
    assert [high for _, high in await control.history("GPIO5")] == [False, True, False]
    assert [high for _, high in await control.history("GPIO5")] == [False]  # restarted


async def test_bad_requests_get_errors_and_the_connection_survives(
    control: PinControlClient,
) -> None:
    with pytest.raises(PinControlError, match="unknown op 'explode'"):
        await control.request(op="explode", pin="GPIO5")
    with pytest.raises(PinControlError, match="bad request"):
        await control.request(pin="GPIO5")  # no op
    assert await control.read("GPIO5") in (True, False)

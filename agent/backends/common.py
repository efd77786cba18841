"""Building blocks shared by backends: a latest-wins state hub and press-repeating holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from agent.backends.base import TvState
from agent.groups import single_exception


class StateHub:
    """Holds the current TvState and wakes readers when it changes.

    Readers never see a backlog: a slow reader skips straight to the newest snapshot, since a
    snapshot carries everything the intermediate ones did.
    """

    def __init__(self, initial: TvState) -> None:
        self._state = initial
        self._version = 0
        self._changed = trio.Event()

    @property
    def current(self) -> TvState:
        return self._state

    def publish(self, state: TvState) -> None:
        if state == self._state:
            return
        self._state = state
        self._version += 1
        self._changed.set()
        self._changed = trio.Event()

    def update(self, **changes: object) -> TvState:
        """Publish the current state with `changes` applied, and return it."""
        self.publish(self._state.replace(**changes))
        return self._state

    async def changes(self) -> AsyncIterator[TvState]:
        seen = -1
        while True:
            if seen != self._version:
                seen = self._version
                yield self._state
            else:
                await self._changed.wait()


@asynccontextmanager
async def repeat_while_held(
    press: Callable[[], Awaitable[None]],
    *,
    interval: float,
    initial_delay: float | None = None,
) -> AsyncIterator[None]:
    """Press once now, then again every `interval` seconds until the context exits.

    The first repeat waits `initial_delay` (default: `interval`), like a keyboard's auto-repeat.
    Errors from a repeat end the repetition and surface when the context exits.
    """
    await press()

    async def repeat() -> None:
        await trio.sleep(interval if initial_delay is None else initial_delay)
        while True:
            await press()
            await trio.sleep(interval)

    with single_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(repeat)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

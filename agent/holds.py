"""Held buttons of one stream: each hold is a task that keeps the backend's hold open until
`stop`, the auto-release timeout (a phone that lost Wi-Fi), or the stream's end."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from agent.backends.base import Backend, BackendError

log = logging.getLogger(__name__)


class _Hold:
    def __init__(self, button: str) -> None:
        self.button = button
        self.released = trio.Event()
        self.scope: trio.CancelScope | None = None

    def extend(self, seconds: float) -> None:
        if self.scope is not None:
            self.scope.deadline = trio.current_time() + seconds


class Holds:
    """The holds of one session; tasks live in the session's nursery, so they end with it."""

    def __init__(
        self,
        backend: Backend,
        nursery: trio.Nursery,
        *,
        timeout: float,
        source: str,
        on_start: Callable[[str], None],
    ) -> None:
        self._backend = backend
        self._nursery = nursery
        self._timeout = timeout
        self._source = source
        #: Called once the hold began (the dispatcher tells subscribers about the press).
        self._on_start = on_start
        self._held: dict[str, _Hold] = {}

    async def start(self, button: str) -> None:
        """Hold `button`; returns once the first press is done. Holding a held button again
        restarts its auto-release timer (how a client keeps a long hold alive)."""
        if (hold := self._held.get(button)) is not None:
            hold.extend(self._timeout)
            return
        hold = _Hold(button)
        self._held[button] = hold
        try:
            await self._nursery.start(self._run, hold)
        except BaseException:
            self._held.pop(button, None)
            raise

    def stop(self, button: str) -> None:
        if (hold := self._held.get(button)) is not None:
            hold.released.set()

    async def _run(self, hold: _Hold, *, task_status: trio.TaskStatus[None]) -> None:
        started = False
        try:
            async with self._backend.hold(hold.button):
                self._on_start(hold.button)
                task_status.started()
                started = True
                with trio.CancelScope(deadline=trio.current_time() + self._timeout) as scope:
                    hold.scope = scope
                    await hold.released.wait()
                if scope.cancelled_caught:
                    log.info(
                        "auto-released %s held by %s: no stop arrived", hold.button, self._source
                    )
        except BackendError as exc:
            if not started:
                raise  # reaches the `hold start` request as its error reply
            log.warning("hold of %s ended: %s", hold.button, exc.reason)
        finally:
            self._held.pop(hold.button, None)

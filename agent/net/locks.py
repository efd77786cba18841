"""A lock for the write side of a stream that costs nothing when nobody else holds it."""

from __future__ import annotations

from types import TracebackType

import trio


class SendLock:
    """`async with` over a trio.Lock (or a Semaphore, for a bound) without a scheduler round
    trip when it is free.

    `async with trio.Lock()` yields to the scheduler even uncontended. A press crossed four
    such locks (phone, agent, Kodi send and in-flight bound): four extra passes through trio's
    run loop, each with an epoll call, for nothing. Taken free, this lock does not checkpoint
    itself; every holder here writes to a socket, and that checkpoints. Fairness is trio's:
    a released lock passes straight to the longest waiter, so `acquire_nowait` cannot jump
    the queue.
    """

    __slots__ = ("_sync",)

    def __init__(self, sync: trio.Lock | trio.Semaphore | None = None) -> None:
        self._sync = sync if sync is not None else trio.Lock()

    async def __aenter__(self) -> None:
        try:
            self._sync.acquire_nowait()
        except trio.WouldBlock:
            await self._sync.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._sync.release()

"""The pairing window: opened on request (or by the pair button), closed by time.

This is the part of pairing that exists before TLS and PIN exchange: a single window, open
for `seconds`, that the status LED shows. The security work adds the PIN and the key
exchange on top of it.
"""

from __future__ import annotations

import logging

import trio

from agent.logs import kv

log = logging.getLogger(__name__)
PAIRING_WINDOW_SECONDS = 120.0


class PairingWindow:
    def __init__(self, seconds: float = PAIRING_WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._closes_at = -1.0
        self._changed = trio.Event()
        #: Called after every pairing is cleared (the trust store lives with security).
        self.cleared = 0

    @property
    def is_open(self) -> bool:
        return trio.current_time() < self._closes_at

    def open(self) -> None:
        self._closes_at = trio.current_time() + self.seconds
        log.info(kv("pairing-window-opened", seconds=self.seconds))
        self._notify()

    def close(self) -> None:
        self._closes_at = -1.0
        self._notify()

    async def clear_all(self) -> None:
        await trio.lowlevel.checkpoint()
        self.cleared += 1
        log.warning(kv("pairings-cleared"))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Returns when the window opens or closes (including by running out of time)."""
        changed = self._changed
        if self.is_open:
            with trio.move_on_at(self._closes_at):
                await changed.wait()
        else:
            await changed.wait()

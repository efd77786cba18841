"""The pairing window: a single-use 6-digit PIN shown on the TV, valid for 120 s.

One window at a time. It opens on a pairing request from a phone (or, with
`pairing_requires_button`, only after the pair button was pressed), shows its PIN through
the `show_pin` hook (the app routes it to the TV), allows at most `max_failures` failed
attempts, and closes on success, on the last failure, or when its time is up. After a
window closed by failures, requests may not open another one for `cooldown` seconds, so an
attacker gets 3 online guesses per cooldown (and the TV shows every PIN it asks for).
The PIN never leaves the agent except to the screen; the key exchange proves knowledge of
it (agent/security/pake.py).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import trio

from agent.logs import kv

log = logging.getLogger(__name__)
PAIRING_WINDOW_SECONDS = 120.0
MAX_FAILURES = 3
COOLDOWN_SECONDS = 30.0
PIN_DIGITS = 6

#: Shows the PIN to the person at the TV: (pin, seconds it stays valid).
ShowPin = Callable[[str, float], Awaitable[None]]


@runtime_checkable
class Notifier(Protocol):
    """Optional backend capability: show a short message on the TV (Kodi: a notification)."""

    async def notify(self, title: str, message: str, *, image: str = "") -> None:
        """`image`: a picture file the TV can read (the pairing QR code), or ""."""
        ...


class PairingRefused(Exception):
    """Why no attempt is possible now; `condition` is the stanza error to answer with."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


def new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


class PairingWindow:
    def __init__(
        self,
        seconds: float = PAIRING_WINDOW_SECONDS,
        *,
        max_failures: int = MAX_FAILURES,
        cooldown: float = COOLDOWN_SECONDS,
        requires_button: bool = False,
        show_pin: ShowPin | None = None,
        on_clear: Callable[[], None] | None = None,
    ) -> None:
        self.seconds = seconds
        self.max_failures = max_failures
        self.cooldown = cooldown
        self.requires_button = requires_button
        self.show_pin = show_pin
        self._on_clear = on_clear
        self._closes_at = -1.0
        self._cooldown_until = -1.0
        self._button_until = -1.0
        self._pin: str | None = None
        self._attempts = 0
        self._changed = trio.Event()
        #: How many times all pairings were cleared (the long press of the pair button).
        self.cleared = 0

    @property
    def is_open(self) -> bool:
        return self._pin is not None and trio.current_time() < self._closes_at

    @property
    def remaining(self) -> float:
        return max(0.0, self._closes_at - trio.current_time()) if self.is_open else 0.0

    @property
    def current_pin(self) -> str | None:
        """The PIN on screen now (for the TV, the LED and tests; never sent to a peer)."""
        return self._pin if self.is_open else None

    def open(self) -> str:
        """The pair button: a fresh window (and PIN), even over an open one."""
        self._button_until = trio.current_time() + self.seconds
        return self._open()

    def _open(self) -> str:
        self._pin = new_pin()
        self._attempts = 0
        self._closes_at = trio.current_time() + self.seconds
        log.info(kv("pairing-window-opened", seconds=self.seconds))
        self._notify()
        return self._pin

    async def request(self) -> float:
        """A phone asks to pair: open the window (showing its PIN) unless one is open.

        Returns the seconds left. Raises PairingRefused when a request may not open one."""
        if not self.is_open:
            now = trio.current_time()
            if self.requires_button and now >= self._button_until:
                raise PairingRefused("not-allowed", "press the pair button on the TV first")
            if now < self._cooldown_until:
                wait = int(self._cooldown_until - now) + 1
                raise PairingRefused("resource-constraint", f"too many wrong PINs; wait {wait} s")
            pin = self._open()
            await self._show(pin)
        return self.remaining

    async def show_current(self) -> None:
        if (pin := self.current_pin) is not None:
            await self._show(pin)

    async def _show(self, pin: str) -> None:
        if self.show_pin is None:
            log.warning(kv("pairing-pin", pin=pin, seconds=int(self.seconds)))
            return
        try:
            await self.show_pin(pin, self.remaining)
        except Exception as exc:  # the screen failing must not break pairing: log it instead
            log.warning(kv("pairing-pin", pin=pin, seconds=int(self.seconds), display_error=exc))

    def begin_attempt(self) -> str:
        """Spend one attempt; returns the PIN to run the key exchange with."""
        if not self.is_open or self._pin is None:
            raise PairingRefused("not-allowed", "no pairing window is open; request one first")
        if self._attempts >= self.max_failures:
            self._close_after_failures()
            raise PairingRefused("not-allowed", "too many wrong PINs; the window is closed")
        self._attempts += 1
        return self._pin

    def attempt_failed(self) -> bool:
        """The last attempt's PIN was wrong; True if that closed the window."""
        log.warning(kv("pairing-attempt-failed", attempts=self._attempts))
        if self._attempts >= self.max_failures:
            self._close_after_failures()
            return True
        return False

    def attempt_succeeded(self) -> None:
        """Single use: a success closes the window."""
        log.info(kv("pairing-succeeded"))
        self.close()

    def check_pin(self, typed: str) -> bool:
        """One attempt with a PIN typed in clear (the chat fallback)."""
        pin = self.begin_attempt()
        if secrets.compare_digest(typed.strip(), pin):
            self.attempt_succeeded()
            return True
        self.attempt_failed()
        return False

    def _close_after_failures(self) -> None:
        log.warning(kv("pairing-window-closed", reason="too-many-failures"))
        self._cooldown_until = trio.current_time() + self.cooldown
        self.close()

    def close(self) -> None:
        self._closes_at = -1.0
        self._pin = None
        self._notify()

    async def clear_all(self) -> None:
        """Forget every paired device (10 s press of the pair button)."""
        await trio.lowlevel.checkpoint()
        if self._on_clear is not None:
            self._on_clear()
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

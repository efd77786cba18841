"""The interface every backend implements, the state model, and the errors backends raise.

Backends are trio-native. The dispatcher maps the errors below to XMPP stanza errors at the
edge; a backend never knows about XMPP.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import trio

Playback = Literal["playing", "paused", "stopped"]


class BackendError(Exception):
    """Base class; `reason` is a short human-readable sentence for the phone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendUnavailable(BackendError):
    """The device behind the backend cannot be reached right now (retry later)."""


class ButtonNotSupported(BackendError):
    """The backend has no way to perform this button."""


class BackendRefused(BackendError):
    """The device understood the request and said no (e.g. no active player)."""


class BackendNotAuthorized(BackendError):
    """The device rejected our credentials."""


@dataclass(frozen=True, slots=True)
class InputRequest:
    """The TV asks for text (e.g. Kodi's on-screen keyboard opened)."""

    title: str = ""
    kind: str = "keyboard"  # keyboard | numeric | date | time | ip | password
    value: str = ""


@dataclass(frozen=True, slots=True)
class TvState:
    """A snapshot of what the TV is doing. Immutable: changes produce a new snapshot."""

    available: bool = True
    status_message: str = ""
    power: bool = True
    volume: int | None = None  # 0..100
    muted: bool | None = None
    playback: Playback = "stopped"
    player: str | None = None  # audio | video | picture
    title: str | None = None
    position: float | None = None  # seconds
    duration: float | None = None  # seconds
    speed: float | None = None
    focused: str | None = None  # label of the focused menu item, when known
    input_request: InputRequest | None = None

    def replace(self, **changes: object) -> TvState:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@runtime_checkable
class Backend(Protocol):
    """What the dispatcher needs from a TV backend.

    `run()` is started once in the agent's nursery and keeps the backend's connections alive
    (reconnecting as needed) until cancelled; `task_status.started()` is called once the
    backend is ready to accept calls (it may still be `available=False`).
    """

    name: str

    def buttons(self) -> frozenset[str]:
        """Canonical names of the buttons this backend can perform."""
        ...

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    async def press(self, button: str) -> None:
        """Perform one press; returns once the device accepted it."""
        ...

    def hold(self, button: str) -> AbstractAsyncContextManager[None]:
        """Hold `button` for the duration of the context (repeats, or a native IR hold)."""
        ...

    async def send_text(self, text: str, *, submit: bool = True) -> None: ...

    def state(self) -> TvState: ...

    def state_changes(self) -> AsyncIterator[TvState]:
        """The current state, then every newer one; a slow reader skips to the newest."""
        ...

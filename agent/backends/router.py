"""A backend made of backends: each button goes to the backend configured for it.

Typical set-up: `power`, `volume_*`, `mute` → the LIRC backend (the TV's own IR), everything
else → Kodi. Buttons without a rule go to the default backend, or else to the first other
backend that has them, so `buttons()` is the union of what the children can do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import trio

from agent.backends.base import Backend, ButtonNotSupported, TvState
from agent.backends.keymap import check_button
from agent.pairing import Notifier


class RouterConfigError(ValueError):
    """The routing table names a backend that does not exist, or a button twice."""


@dataclass(frozen=True, slots=True)
class Route:
    """`[[router.routes]] backend = "lirc"  buttons = ["power", "mute"]`"""

    backend: str
    buttons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    #: Backend for buttons no route names ("" = the first configured backend).
    default: str = ""
    #: Backend whose state (volume, playback, availability …) phones see ("" = default).
    state_from: str = ""
    #: Backend that receives text ("" = default).
    text_to: str = ""
    routes: list[Route] = field(default_factory=list)


class RouterBackend:
    """Implements the Backend protocol by delegating to named child backends."""

    name = "router"

    def __init__(self, backends: Mapping[str, Backend], config: RouterConfig) -> None:
        if not backends:
            raise RouterConfigError("the router needs at least one backend")
        self._backends = dict(backends)
        self._default = self._named(config.default or next(iter(backends)), "router.default")
        self._state_from = self._named(config.state_from, "router.state_from") or self._default
        self._text_to = self._named(config.text_to, "router.text_to") or self._default
        self._routes: dict[str, Backend] = {}
        for index, route in enumerate(config.routes):
            where = f"router.routes[{index}]"
            backend = self._named(route.backend, f"{where}.backend")
            for button in route.buttons:
                check_button(button, f"{where}.buttons")
                if button in self._routes:
                    raise RouterConfigError(f"{where}.buttons: {button!r} is already routed")
                self._routes[button] = backend

    def _named(self, name: str, key: str) -> Backend:
        if not name:
            return self._default
        try:
            return self._backends[name]
        except KeyError:
            known = ", ".join(sorted(self._backends))
            raise RouterConfigError(f"{key}: no backend named {name!r} (known: {known})") from None

    @property
    def children(self) -> Mapping[str, Backend]:
        return self._backends

    def backend_for(self, button: str) -> Backend | None:
        """The backend that performs `button`; None if none can."""
        routed = self._routes.get(button)
        if routed is not None:  # an explicit route is authoritative, no fallback
            return routed if button in routed.buttons() else None
        if button in self._default.buttons():
            return self._default
        for backend in self._backends.values():
            if button in backend.buttons():
                return backend
        return None

    def _require(self, button: str) -> Backend:
        backend = self.backend_for(button)
        if backend is None:
            routed = self._routes.get(button)
            where = f" (routed to {routed.name})" if routed else ""
            raise ButtonNotSupported(f"no backend can perform {button!r}{where}")
        return backend

    # -- Backend protocol -------------------------------------------------------------------

    def buttons(self) -> frozenset[str]:
        candidates = set(self._routes).union(*(b.buttons() for b in self._backends.values()))
        return frozenset(b for b in candidates if self.backend_for(b) is not None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Starts every child (their start-up errors propagate) and then reports started."""
        async with trio.open_nursery() as nursery:
            for backend in self._backends.values():
                await nursery.start(backend.run)
            task_status.started()

    async def press(self, button: str) -> None:
        await self._require(button).press(button)

    def hold(self, button: str) -> AbstractAsyncContextManager[None]:
        return self._require(button).hold(button)

    async def send_text(self, text: str, *, submit: bool = True) -> None:
        await self._text_to.send_text(text, submit=submit)

    def state(self) -> TvState:
        return self._state_from.state()

    async def notify(self, title: str, message: str, *, image: str = "") -> None:
        """Show a message on the TV through the first child that can (Kodi, typically)."""
        for backend in self._backends.values():
            if isinstance(backend, Notifier):
                await backend.notify(title, message, image=image)
                return
        raise ButtonNotSupported("no backend of this router can show a message on the TV")

    def state_changes(self) -> AsyncIterator[TvState]:
        return self._state_from.state_changes()

"""The LIRC backend: buttons become IR blasts through lircd.

press → `SEND_ONCE remote key`; hold → `SEND_START` on enter and `SEND_STOP` on exit (lircd
repeats the code natively). Start-up checks with `LIST` that every remote and key the
backend would send exists, and says which do not.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from agent.backends.base import (
    BackendRefused,
    BackendUnavailable,
    ButtonNotSupported,
    TvState,
)
from agent.backends.common import StateHub
from agent.backends.keymap import KeyMap, KeyMapError, check_button
from agent.backends.lirc.client import (
    ClientEvent,
    Connected,
    Disconnected,
    LircClient,
    LircUnavailable,
)
from agent.backends.lirc.config import LircConfig
from agent.backends.lirc.protocol import Sighup
from agent.buttons.catalogue import ALL_BUTTONS

log = logging.getLogger(__name__)

Target = tuple[str, str]  # (remote, key)


class LircValidationError(Exception):
    """lircd does not know remotes or keys the configuration relies on."""


def client_for(config: LircConfig) -> LircClient:
    return LircClient(
        config.address,
        command_timeout=config.command_timeout,
        backoff_initial=config.backoff_initial,
        backoff_max=config.backoff_max,
    )


class LircBackend:
    """Implements the Backend protocol by sending IR through lircd.

    IR is one-way: the state carries only availability (lircd reachable and the key map
    valid); volume, playback etc. stay unknown.
    """

    name = "lirc"

    def __init__(self, config: LircConfig, client: LircClient | None = None) -> None:
        self._config = config
        self.client = client or client_for(config)
        self.keymap = KeyMap(config.remote, config.keys)
        for button in config.buttons:
            check_button(button, "lirc.buttons")
        self._targets = self.keymap.send_targets(config.buttons or ALL_BUTTONS)
        if missing := [b for b in config.buttons if b not in self._targets]:
            raise KeyMapError(
                f"lirc.buttons: no remote/key for {', '.join(missing)}; "
                "set lirc.remote or add [[lirc.keys]] entries for them"
            )
        # Without an explicit button list, the remote decides: buttons whose key it lacks are
        # dropped at validation instead of failing it.
        self._strict = bool(config.buttons)
        self._usable: dict[str, Target] = dict(self._targets)
        self._hub = StateHub(TvState(available=False, status_message="connecting to lircd"))
        self._valid = False
        #: Holds whose SEND_STOP could not be sent (lircd was away): stopped on reconnect,
        #: since lircd keeps repeating a started code after its client disconnects.
        self._pending_stops: set[Target] = set()

    # -- Backend protocol -------------------------------------------------------------------

    def buttons(self) -> frozenset[str]:
        return frozenset(self._usable)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Raises LircValidationError (unwrapped, before `started`) when lircd is reachable at
        start-up and lacks remotes/keys the configuration needs."""
        events = self.client.subscribe()
        startup_problem = ""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.client.run)
            with trio.move_on_after(self._config.startup_timeout):
                await self.client.wait_connected()
            if self.client.connected:
                startup_problem = await self._validate()
            else:
                self._hub.update(available=False, status_message=self.client.last_error)
            if startup_problem:
                nursery.cancel_scope.cancel()
            else:
                task_status.started()
                await self._follow(events)
        if startup_problem:
            raise LircValidationError(startup_problem)

    async def _follow(self, events: trio.MemoryReceiveChannel[ClientEvent]) -> None:
        async for event in events:
            if isinstance(event, Connected | Sighup):
                if problem := await self._validate():
                    log.error("%s", problem)
                await self._send_pending_stops()
            elif isinstance(event, Disconnected):
                self._valid = False
                self._hub.update(available=False, status_message=event.reason)

    async def press(self, button: str) -> None:
        await self._send("SEND_ONCE", self._target(button))

    def hold(self, button: str) -> AbstractAsyncContextManager[None]:
        return self._hold(self._target(button))

    async def send_text(self, text: str, *, submit: bool = True) -> None:
        await trio.lowlevel.checkpoint()
        raise ButtonNotSupported("an IR remote cannot type text; route text to another backend")

    def state(self) -> TvState:
        return self._hub.current

    def state_changes(self) -> AsyncIterator[TvState]:
        return self._hub.changes()

    # -- sending ------------------------------------------------------------------------------

    def _target(self, button: str) -> Target:
        target = self._usable.get(button)
        if target is None:
            raise ButtonNotSupported(f"no IR key is configured for {button!r}")
        return target

    async def _send(self, directive: str, target: Target) -> None:
        if not self._valid:
            raise BackendUnavailable(self._hub.current.status_message or "lircd is unavailable")
        try:
            reply = await self.client.command(directive, *target)
        except LircUnavailable as exc:
            raise BackendUnavailable(str(exc)) from None
        if not reply.success:
            raise BackendRefused(f"lircd refused {directive} {' '.join(target)}: {reply.message}")

    @asynccontextmanager
    async def _hold(self, target: Target) -> AsyncIterator[None]:
        await self._send("SEND_START", target)
        try:
            yield
        finally:
            # Stop even when cancelled: otherwise lircd repeats the key until repeat-max.
            with trio.CancelScope(shield=True):
                await self._stop(target)

    async def _stop(self, target: Target) -> None:
        try:
            reply = await self.client.command("SEND_STOP", *target)
        except LircUnavailable as exc:
            log.warning("could not stop IR repeat of %s (%s); retrying on reconnect", target, exc)
            self._pending_stops.add(target)
            return
        if not reply.success:
            log.warning("lircd refused SEND_STOP %s: %s", " ".join(target), reply.message)

    async def _send_pending_stops(self) -> None:
        for target in sorted(self._pending_stops):
            try:
                await self.client.command("SEND_STOP", *target)  # "not repeating" is fine
            except LircUnavailable:
                return
            self._pending_stops.discard(target)

    # -- validation ---------------------------------------------------------------------------

    async def _validate(self) -> str:
        """Check the key map against lircd; returns the problem ("" if none)."""
        try:
            problems = await self._find_problems()
        except LircUnavailable as exc:
            self._valid = False
            self._hub.update(available=False, status_message=str(exc))
            return ""  # not a configuration problem: retried on reconnect
        if problems:
            message = (
                f"lircd at {self.client.address} does not know {'; '.join(problems)}. "
                "Fix lircd.conf or the [lirc] remote/buttons/keys settings."
            )
            self._valid = False
            self._hub.update(available=False, status_message=message)
            return message
        self._valid = True
        self._hub.update(available=True, status_message="")
        return ""

    async def _find_problems(self) -> list[str]:
        """Check every target against lircd's LIST; narrow `_usable` in non-strict mode."""
        remotes = await self._list()
        keys_by_remote: dict[str, set[str]] = {}
        for remote in sorted({remote for remote, _ in self._targets.values()}):
            if remote in remotes:
                keys_by_remote[remote] = {line.split()[-1] for line in await self._list(remote)}
        problems: list[str] = []
        usable: dict[str, Target] = {}
        missing_remotes: dict[str, list[str]] = {}
        missing_keys: list[str] = []
        for button, (remote, key) in self._targets.items():
            if remote not in keys_by_remote:
                missing_remotes.setdefault(remote, []).append(button)
            elif key not in keys_by_remote[remote]:
                missing_keys.append(f"{key} on remote {remote!r} (for {button})")
            else:
                usable[button] = (remote, key)
        for remote, buttons in sorted(missing_remotes.items()):
            known = ", ".join(sorted(remotes)) or "none"
            problems.append(
                f"remote {remote!r} (for {', '.join(sorted(buttons))}; it knows: {known})"
            )
        if self._strict:
            problems.extend(f"key {text}" for text in sorted(missing_keys))
        elif missing_keys:
            log.info("IR buttons left out, their keys are not in lircd.conf: %s", missing_keys)
        self._usable = usable if not problems else self._usable
        return problems

    async def _list(self, *remote: str) -> list[str]:
        reply = await self.client.command("LIST", *remote)
        if not reply.success:
            raise LircUnavailable(f"lircd refused LIST {' '.join(remote)}: {reply.message}")
        return list(reply.data)

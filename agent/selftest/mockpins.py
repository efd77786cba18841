"""Mock GPIO pins that another process drives: the `--gpio-mock-control` socket.

gpiozero's MockFactory pins live in the memory of the process that made them, and the selftest
runs the agent as a separate, real process. So that process (agent/selftest/agent_process.py)
owns the MockFactory and serves this small line protocol on a unix socket; the test drives the
pair button and reads the LED through it:

    {"op": "drive", "pin": "GPIO27", "high": false}  → {"ok": true}
    {"op": "read", "pin": "GPIO22"}                  → {"ok": true, "high": true}
    {"op": "history", "pin": "GPIO22"}               → {"ok": true, "states": [[dt, high], …]}

(`history` is MockPin's record since the previous `history`: the level then, followed by every
change, each with the seconds since the one before; the record then restarts.) Pins are
driven from a worker thread, so gpiozero's callbacks arrive from a foreign thread exactly as
lgpio's do on a Pi. Errors come back as {"ok": false, "error": …}.
"""

from __future__ import annotations

import json
from typing import Any

import trio

MAX_LINE = 4096


class PinControlError(Exception):
    pass


async def serve_pin_control(
    factory: Any, path: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the protocol for `factory`'s pins on the unix socket `path` until cancelled."""
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await listener.bind(path)
    listener.listen(4)
    async with trio.SocketListener(listener) as listeners, trio.open_nursery() as nursery:
        task_status.started()
        while True:
            stream = await listeners.accept()
            nursery.start_soon(_serve_client, factory, stream)


async def _serve_client(factory: Any, stream: trio.abc.Stream) -> None:
    async with stream:
        buffer = b""
        while True:
            chunk = await stream.receive_some(MAX_LINE)
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > MAX_LINE and b"\n" not in buffer:
                await stream.send_all(b'{"ok": false, "error": "line too long"}\n')
                return
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = await _answer(factory, line)
                await stream.send_all(json.dumps(reply).encode() + b"\n")


async def _answer(factory: Any, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        op, pin_name = request["op"], str(request["pin"])
    except (ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": f"bad request {line[:80]!r}: {exc}"}
    pin = factory.pin(pin_name)
    match op:
        case "drive":
            high = bool(request.get("high"))
            await trio.to_thread.run_sync(pin.drive_high if high else pin.drive_low)
            return {"ok": True}
        case "read":
            return {"ok": True, "high": bool(pin.state)}
        case "history":
            states = [[change.timestamp, bool(change.state)] for change in list(pin.states)]
            pin.clear_states()
            return {"ok": True, "states": states}
    return {"ok": False, "error": f"unknown op {op!r}"}


class PinControlClient:
    """The test's end of the socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = b""
        self._lock = trio.Lock()

    @classmethod
    async def connect(cls, path: str) -> PinControlClient:
        return cls(await trio.open_unix_socket(path))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def request(self, **fields: Any) -> dict[str, Any]:
        async with self._lock:
            await self._stream.send_all(json.dumps(fields).encode() + b"\n")
            with trio.fail_after(10):
                while b"\n" not in self._buffer:
                    chunk = await self._stream.receive_some(MAX_LINE)
                    if not chunk:
                        raise PinControlError("the agent closed the pin control socket")
                    self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise PinControlError(str(reply.get("error")))
        return reply

    async def drive(self, pin: str, *, high: bool) -> None:
        await self.request(op="drive", pin=pin, high=high)

    async def read(self, pin: str) -> bool:
        return bool((await self.request(op="read", pin=pin))["high"])

    async def history(self, pin: str) -> list[tuple[float, bool]]:
        states = (await self.request(op="history", pin=pin))["states"]
        return [(float(dt), bool(high)) for dt, high in states]

"""Run a real, headless Kodi for tests, benchmarks and on-device checks.

`HeadlessKodi` starts Debian's `kodi` under `xvfb-run` with a throwaway HOME whose settings
enable JSON-RPC over TCP (loopback only) and the web server (with a random password, since
it listens on every interface), on free ports, so several can coexist with a user's Kodi. It
waits for `JSONRPC.Ping` with a bounded loop, dismisses the first-run dialog, and stops Kodi
with `Application.Quit`, then by signalling the process group it started.

Synchronous on purpose: a pytest session fixture (and a shell) can use it directly.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import trio

from agent.backends.base import Backend, TvState
from agent.backends.kodi.rpc import (
    ErrorResponse,
    JsonStreamSplitter,
    Response,
    encode_request,
    parse_message,
)
from agent.config import KodiConfig

_T = TypeVar("_T")

LOOPBACK = "127.0.0.1"
HOME_WINDOW = 10000
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


class KodiLaunchError(Exception):
    pass


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], _T | None], *, timeout: float, interval: float = 0.05, what: str
) -> _T:
    """Poll `check` until it returns something not None (bounded); raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def eventually(check: Callable[[], Awaitable[_T | None]], *, interval: float = 0.01) -> _T:
    """Await `check` until it returns something not None. Bound it with `trio.fail_after`.

    For effects that show up a frame later (Kodi's GUI): poll, never sleep a fixed time."""
    while True:
        result = await check()
        if result is not None:
            return result
        await trio.sleep(interval)


async def wait_for_state(backend: Backend, predicate: Callable[[TvState], bool]) -> TvState:
    """The first state (current or future) that satisfies `predicate`. Bound it with
    `trio.fail_after`."""
    async for state in backend.state_changes():
        if predicate(state):
            return state
    raise AssertionError("state_changes() ended")  # it never does


class KodiRpcFailed(Exception):
    def __init__(self, method: str, error: ErrorResponse) -> None:
        super().__init__(f"{method}: {error.describe()}")
        self.error = error


class SyncKodiClient:
    """A blocking JSON-RPC client on Kodi's TCP socket, for harness code (not for the agent)."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._splitter = JsonStreamSplitter()
        self._next_id = 0

    def close(self) -> None:
        self._sock.close()

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        self._next_id += 1
        request_id = self._next_id
        self._sock.sendall(encode_request(request_id, method, params))
        while True:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("Kodi closed the connection")
            for raw in self._splitter.feed(data):
                for event in parse_message(raw):
                    if isinstance(event, Response) and event.id == request_id:
                        return event.result
                    if isinstance(event, ErrorResponse) and event.id in (request_id, None):
                        raise KodiRpcFailed(method, event)


class HeadlessKodi:
    def __init__(
        self,
        *,
        home: Path | None = None,
        tcp_port: int | None = None,
        http_port: int | None = None,
        username: str = "kodi",
        password: str | None = None,
        kodi_command: tuple[str, ...] = ("kodi", "--standalone"),
        null_audio: bool = True,
        webserver: bool = True,
    ) -> None:
        self._own_home = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="kodi-home-"))
        self.host = LOOPBACK
        self.tcp_port = tcp_port or free_port()
        self.http_port = http_port or free_port()
        self._event_server_port = free_port(socket.SOCK_DGRAM)
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self._command = kodi_command
        self._null_audio = null_audio
        self._webserver = webserver  # off: nothing listens beyond loopback
        self._process: subprocess.Popen[bytes] | None = None
        self._client: SyncKodiClient | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> HeadlessKodi:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.home / ".kodi" / "temp" / "kodi.log"

    def start(self, *, timeout: float = READY_TIMEOUT) -> None:
        if self.running:
            raise KodiLaunchError("this Kodi is already running")
        if shutil.which("xvfb-run") is None or shutil.which(self._command[0]) is None:
            raise KodiLaunchError("Kodi tests need Debian packages: apt-get install -y kodi xvfb")
        self._write_settings()
        output = (self.home / "launcher.log").open("ab")
        self._process = subprocess.Popen(
            ["xvfb-run", "-a", "-s", "-screen 0 1280x720x24", *self._command],
            env={**os.environ, "HOME": str(self.home)},
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals all of it
        )
        output.close()
        try:
            wait_until(self._ping, timeout=timeout, interval=0.2, what="Kodi's JSONRPC.Ping")
        except TimeoutError as exc:
            self.kill()
            raise KodiLaunchError(f"{exc}; see {self.log_path}") from None

    def _ping(self) -> bool | None:
        if self._process is not None and self._process.poll() is not None:
            raise KodiLaunchError(
                f"Kodi exited with code {self._process.returncode}; "
                f"see {self.home / 'launcher.log'} and {self.log_path}"
            )
        try:
            return self.call("JSONRPC.Ping") == "pong" or None
        except OSError:
            self._drop_client()
            return None

    def stop(self) -> None:
        """Ask Kodi to quit; if it does not, kill it. Either way nothing it started is left."""
        if self._process is None:
            return
        if self.running:
            with contextlib.suppress(OSError, KodiRpcFailed):
                self.call("Application.Quit")
        self._drop_client()
        try:
            self._process.wait(timeout=STOP_TIMEOUT)
            self._process = None
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL kodi.bin, as a crash would end it, and wait for xvfb-run to clean up."""
        self._drop_client()
        if self._process is None:
            return
        for pid in self._group_pids(command="kodi.bin"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            # xvfb-run notices, stops Xvfb and removes its display lock file.
            self._process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=STOP_TIMEOUT)
        self._process = None

    def _group_pids(self, *, command: str) -> list[int]:
        """Processes named `command` in the process group we started."""
        assert self._process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid pgrp …": comm may contain spaces, so split after ')'.
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            pgrp = int(stat[stat.rindex(")") + 2 :].split()[2])
            if pgrp == self._process.pid and comm == command:
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        self.stop()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _write_settings(self) -> None:
        userdata = self.home / ".kodi" / "userdata"
        userdata.mkdir(parents=True, exist_ok=True)
        settings = {
            "services.webserver": "true" if self._webserver else "false",
            "services.webserverport": str(self.http_port),
            "services.webserverauthentication": "true",
            "services.webserverusername": self.username,
            "services.webserverpassword": self.password,
            "services.esenabled": "true",  # this also enables JSON-RPC over TCP
            "services.esallinterfaces": "false",  # … on loopback only
            "services.esport": str(self._event_server_port),
            "services.zeroconf": "false",
            "services.upnp": "false",
            "services.airplay": "false",
        }
        lines = [f'  <setting id="{key}">{value}</setting>' for key, value in settings.items()]
        (userdata / "guisettings.xml").write_text(
            '<settings version="2">\n' + "\n".join(lines) + "\n</settings>\n", encoding="utf-8"
        )
        if self._null_audio:
            # Without a working ALSA device (CI has no sound card) Kodi's audio engine keeps
            # retrying to open one, and JSON-RPC stalls ~10 s after every Player.Stop. ALSA's
            # null device accepts audio instantly: playback then runs ~30x faster than real
            # time, so tests play long files.
            (self.home / ".asoundrc").write_text("pcm.!default {\n  type null\n}\n")
        (userdata / "advancedsettings.xml").write_text(
            '<advancedsettings version="1.0">\n'
            f"  <jsonrpc><tcpport>{self.tcp_port}</tcpport></jsonrpc>\n"
            "</advancedsettings>\n",
            encoding="utf-8",
        )

    # -- talking to it ----------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        if self._client is None:
            self._client = SyncKodiClient(self.host, self.tcp_port)
        try:
            return self._client.call(method, params)
        except OSError:
            self._drop_client()
            raise

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def current_window(self) -> int:
        window = self.call("GUI.GetProperties", {"properties": ["currentwindow"]})
        return int(window["currentwindow"]["id"])

    def reset(self, *, volume: int = 50, timeout: float = 15.0) -> None:
        """Back to a known state: nothing playing, unmuted, `volume`, Home with no dialog."""
        if self.call("Player.GetActivePlayers"):
            self.call(
                "Player.Stop", {"playerid": self.call("Player.GetActivePlayers")[0]["playerid"]}
            )
            wait_until(
                lambda: True if not self.call("Player.GetActivePlayers") else None,
                timeout=timeout,
                what="the player to stop",
            )
        self.call("Application.SetMute", {"mute": False})
        self.call("Application.SetVolume", {"volume": volume})

        def at_home() -> bool | None:
            if self.current_window() == HOME_WINDOW:
                return True
            self.call("Input.Back")  # closes dialogs and the keyboard; Home alone does not
            self.call("Input.Home")
            return None

        wait_until(at_home, timeout=timeout, interval=0.2, what="Kodi's Home window")

    def kodi_config(self, **changes: Any) -> KodiConfig:
        """A KodiConfig pointing at this Kodi (TCP transport unless changed)."""
        fields: dict[str, Any] = {
            "host": self.host,
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "username": self.username,
            "password": self.password,
        }
        return KodiConfig(**{**fields, **changes})


@contextlib.contextmanager
def headless_kodi(**options: Any) -> Iterator[HeadlessKodi]:
    kodi = HeadlessKodi(**options)
    try:
        kodi.start()
        yield kodi
    finally:
        kodi.close()

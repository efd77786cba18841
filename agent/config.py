"""Configuration: a TOML file plus command-line overrides, parsed once into frozen dataclasses.

Every problem is reported as a ConfigError that names the file, the key, what was expected
and how to fix it. Nothing here is global: the parsed Config is passed down explicitly.
"""

from __future__ import annotations

import dataclasses
import difflib
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from agent.backends.lirc.config import LircConfig
from agent.backends.router import RouterConfig
from agent.hw.gpio import GpioConfig
from agent.ir_pins import IrConfig
from agent.web.config import WebConfig
from agent.wifi import WifiConfig

_T = TypeVar("_T")
BackendName = Literal["virtual", "kodi", "lirc", "router"]

DEFAULT_CONFIG_PATH = Path("/etc/buttons-agent/agent.toml")
DEMO_CONFIG_PATH = Path(__file__).with_name("demo.toml")


class ConfigError(Exception):
    def __init__(self, source: str, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{source}: key '{key}': {problem}. Fix: {fix}")
        self.source = source
        self.key = key


@dataclass(frozen=True, slots=True)
class KodiConfig:
    host: str = "127.0.0.1"
    #: Find Kodi by its mDNS announcement instead of host/port (follows it to a new address).
    discover: bool = False
    #: With `discover`: which Kodi, by its device name or TXT uuid ("": the only one).
    instance: str = ""
    #: Kodi's raw TCP JSON-RPC port (Settings → Services → Control → "Allow remote control").
    tcp_port: int = 9090
    #: Kodi's web server port, used for HTTP /jsonrpc.
    http_port: int = 8080
    #: "tcp": the persistent socket (fast, with notifications); "http": HTTP /jsonrpc only.
    transport: Literal["tcp", "http"] = "tcp"
    username: str = ""
    password: str = ""
    call_timeout: float = 5.0
    repeat_interval: float = 0.12
    #: What `power` does: a Kodi Input.ExecuteAction action name, or "" for unsupported.
    power_action: str = ""


@dataclass(frozen=True, slots=True)
class XmppAccountConfig:
    """`[xmpp_account]`: the server account hybrid mode logs in with (off while `jid` is "")."""

    jid: str = ""
    password: str = ""
    #: Read the password from this file instead (first line); wins over `password`.
    password_file: str = ""
    #: Server host override; default: the JID's domain.
    host: str = ""
    port: int = 5222
    #: "required" (STARTTLS, verified) or "none" (plaintext: only for a server on loopback).
    tls: Literal["required", "none"] = "required"
    #: PEM file of a CA or self-signed server certificate to trust instead of the system store.
    ca_file: str = ""
    ping_interval: float = 60.0
    ping_timeout: float = 20.0

    @property
    def enabled(self) -> bool:
        return bool(self.jid)


@dataclass(frozen=True, slots=True)
class Config:
    #: The user part of our XEP-0174 instance name `name@host`.
    name: str = "buttons"
    #: The host part; defaults to this machine's host name.
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    #: The friendly name phones show (TXT `nick` and `1st`).
    nick: str = "TV"
    #: TCP port of the link-local XMPP listener (XEP-0174 `port.p2pj`). 0 picks a free one.
    port: int = 5298
    #: Addresses the listener binds; IPv4 and IPv6 wildcard by default.
    listen: list[str] = field(default_factory=lambda: ["0.0.0.0", "::"])
    #: IP addresses zeroconf announces and browses on; empty means all interfaces.
    mdns_interfaces: list[str] = field(default_factory=list)
    #: "router" composes the others per button (see the [router] table).
    backend: BackendName = "virtual"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Close a stream that sent nothing (not even whitespace keepalive) for this long.
    idle_timeout: float = 300.0
    #: Close a stream that has not sent its stream header within this time.
    handshake_timeout: float = 10.0
    max_streams_per_peer: int = 8
    max_stanza_bytes: int = 65536
    #: Close a stream whose TLS handshake (after <proceed/>) has not finished in this time.
    tls_handshake_timeout: float = 10.0
    #: New connections per address: `connection_burst` at once, then this many per second.
    connections_per_second: float = 2.0
    connection_burst: int = 20
    #: Where the agent keeps its key, certificate and paired devices (systemd StateDirectory).
    state_dir: str = "/var/lib/buttons-agent"
    #: Plain chat clients (no TLS, no pairing): "off", or "pin" = type the pairing PIN into
    #: the chat first; that chat may then use the TV until its stream ends.
    chat_fallback: Literal["off", "pin"] = "off"
    #: Phones may open a pairing window only within 120 s after the pair button was pressed.
    pairing_requires_button: bool = False
    #: Release a held button this long after `hold start` if `stop` never arrives.
    hold_timeout: float = 10.0
    kodi: KodiConfig = field(default_factory=KodiConfig)
    lirc: LircConfig = field(default_factory=LircConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    web: WebConfig = field(default_factory=WebConfig)
    xmpp_account: XmppAccountConfig = field(default_factory=XmppAccountConfig)
    #: Read only by `python -m agent.service wifi` (the Pi image runs it at boot).
    wifi: WifiConfig = field(default_factory=WifiConfig)
    #: Read only by `python -m agent.service ir-pins` (the Pi image runs it at boot).
    ir: IrConfig = field(default_factory=IrConfig)

    @property
    def jid(self) -> str:
        return f"{self.name}@{self.host}"


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (if given) and apply `overrides` (dotted keys → values) on top."""
    table: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                source, "-", "the file does not exist", "create it or pass --config PATH"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                source, "-", f"not valid TOML ({exc})", "correct the syntax"
            ) from None
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = table
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return _build(Config, table, source, prefix="")


def _build(cls: type[_T], table: dict[str, Any], source: str, prefix: str) -> _T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        dotted = prefix + key
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else "remove it"
            known = ", ".join(sorted(fields))
            raise ConfigError(source, dotted, f"unknown key (known here: {known})", hint)
        kwargs[key] = _convert(hints[key], value, source, dotted)
    return cls(**kwargs)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    def wrong() -> ConfigError:
        return ConfigError(
            source,
            key,
            f"expected {_describe(tp)}, got {type(value).__name__} {value!r}",
            f"set it to {_describe(tp)}",
        )

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong()
        return _build(tp, value, source, prefix=key + ".")  # type: ignore[arg-type]
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise wrong()
        return value
    if origin is list:
        if not isinstance(value, list):
            raise wrong()
        (item,) = typing.get_args(tp)
        return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            try:
                return _convert(option, value, source, key)
            except ConfigError:
                continue
        raise wrong()
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise wrong()
    if not isinstance(value, tp):
        raise wrong()
    return value

"""The `[web]` table of the agent's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WebConfig:
    #: Serve the web remote (page + XMPP over WebSocket) next to the link-local listener.
    enabled: bool = True
    #: TCP port of the page and the WebSocket endpoint. 0 picks a free one.
    port: int = 8181
    #: Addresses the web listener binds; IPv4 and IPv6 wildcard by default.
    listen: list[str] = field(default_factory=lambda: ["0.0.0.0", "::"])
    #: Announce the page by mDNS as `_http._tcp` (named after the agent's `nick`).
    announce: bool = True
    #: Host names the page may be loaded from besides the one in each request's `Host`
    #: header, e.g. ["tv.local:8181"]; WebSocket upgrades from any other Origin are refused.
    allowed_origins: list[str] = field(default_factory=list)
    #: HTTPS: a PEM certificate chain and its key. Both empty serves plain HTTP.
    certfile: str = ""
    keyfile: str = ""
    #: Open WebSockets allowed per client address (as `max_streams_per_peer` for streams).
    max_sockets_per_address: int = 8
    #: HTTP requests (page, assets, upgrades) per address: a burst, refilled per second.
    requests_burst: int = 60
    requests_per_second: float = 10.0
    #: Pairing attempts (token redemptions) per address: a burst, refilled per minute.
    pairing_burst: int = 5
    pairing_per_minute: float = 5.0
    #: Lifetime of the browser's credential cookie, in days (revocation ends it sooner).
    credential_days: int = 365
    #: Close a WebSocket that sent nothing (the page pings every 30 s) for this long.
    idle_timeout: float = 120.0

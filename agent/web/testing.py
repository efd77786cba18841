"""An agent (virtual TV) with the web server next to it on 127.0.0.1: tests and the bench."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from agent.app import Agent
from agent.backends.virtual import VirtualTV
from agent.testing.agents import open_agent
from agent.web.auth import TrustStoreWebAuth
from agent.web.server import WebServer

HOST = "127.0.0.1"


@dataclass
class WebAgent:
    agent: Agent
    tv: VirtualTV
    server: WebServer
    auth: TrustStoreWebAuth

    @property
    def port(self) -> int:
        return self.server.ports[0]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    async def token(self) -> str:
        self.agent.pairing.open()
        token = await self.auth.issue_token()
        assert token is not None
        return token


@asynccontextmanager
async def open_web_agent(
    agent_settings: dict[str, Any] | None = None, **web: Any
) -> AsyncIterator[WebAgent]:
    """`web` are WebConfig fields; `agent_settings` go to open_agent as config overrides."""
    tv = VirtualTV(repeat_interval=0.05)
    web_settings = {"enabled": True, "port": 0, "listen": [HOST], "announce": False, **web}
    async with open_agent(tv, **{**(agent_settings or {}), "web": web_settings}) as agent:
        yield WebAgent(agent, tv, agent.web, agent.web_auth)

"""Building the configured backend (and finding the parts other features need)."""

from __future__ import annotations

from agent.backends.base import Backend
from agent.backends.lirc import LircBackend
from agent.backends.router import RouterBackend
from agent.backends.virtual import VirtualTV
from agent.config import Config


def make_single(kind: str, config: Config) -> Backend:
    if kind == "kodi":
        from agent.backends.kodi import KodiBackend

        return KodiBackend(config.kodi, mdns_interfaces=config.mdns_interfaces or None)
    if kind == "lirc":
        return LircBackend(config.lirc)
    if kind == "virtual":
        return VirtualTV()
    raise ValueError(f"no backend called {kind!r}")


def router_children(config: Config) -> list[str]:
    """The backends the [router] table refers to, in the order they are first named."""
    router = config.router
    names = [router.default, router.state_from, router.text_to]
    names += [route.backend for route in router.routes]
    ordered = list(dict.fromkeys(name for name in names if name))
    return ordered or ["virtual"]


def make_backend(config: Config) -> Backend:
    if config.backend != "router":
        return make_single(config.backend, config)
    children = {name: make_single(name, config) for name in router_children(config)}
    return RouterBackend(children, config.router)


def find_lirc(backend: Backend) -> LircBackend | None:
    """The LIRC backend inside `backend` (itself, or a router's child), if any."""
    if isinstance(backend, LircBackend):
        return backend
    if isinstance(backend, RouterBackend):
        for child in backend.children.values():
            if isinstance(child, LircBackend):
                return child
    return None

"""The Kodi backend: Buttons → Kodi JSON-RPC (raw TCP or HTTP), live state from notifications."""

from agent.backends.kodi.backend import KodiBackend

__all__ = ["KodiBackend"]

"""The TV's status as presence: one mapping for the mDNS TXT record and the server account."""

from __future__ import annotations

from agent.backends.base import TvState


def presence_status(state: TvState) -> tuple[str, str]:
    """(XEP-0174 status, msg) for a backend state: `dnd` while the TV cannot be driven."""
    if not state.available:
        return "dnd", state.status_message or "the TV is not reachable"
    if state.playback == "playing" and state.title:
        return "avail", f"Playing: {state.title}"
    return "avail", ""

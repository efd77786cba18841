"""The web remote: a touch page served by the agent, talking XMPP over WebSocket (RFC 7395)."""

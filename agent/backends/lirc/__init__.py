"""IR through lircd: the sans-IO protocol, a trio client, and the LIRC backend."""

from agent.backends.lirc.backend import LircBackend, LircValidationError
from agent.backends.lirc.client import LircClient, LircUnavailable
from agent.backends.lirc.config import LircConfig, PassthroughConfig

__all__ = [
    "LircBackend",
    "LircClient",
    "LircConfig",
    "LircUnavailable",
    "LircValidationError",
    "PassthroughConfig",
]

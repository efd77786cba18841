"""The phone's credentials: its own identity and the agents it paired with (pinned keys).

They live in the user's config directory (platformdirs: ~/.config/buttons on Linux);
`BUTTONS_HOME` (or the `--home` flag) points elsewhere, and tests set `home_override`.
"""

from __future__ import annotations

import getpass
import os
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from agent.security.keys import Identity, load_or_create
from agent.security.truststore import TrustStore

HOME_ENV = "BUTTONS_HOME"
AGENTS_FILE = "agents.json"
#: Where this task's credentials live, over the environment and the platform default.
home_override: ContextVar[Path | None] = ContextVar("buttons_home_override", default=None)


def default_device_name() -> str:
    return f"{getpass.getuser()}@{socket.gethostname().split('.')[0]}"


def phone_home() -> Path:
    if (override := home_override.get()) is not None:
        return override
    if env := os.environ.get(HOME_ENV):
        return Path(env)
    return Path(platformdirs.user_config_dir("buttons"))


@dataclass(frozen=True, slots=True)
class PhoneCredentials:
    identity: Identity
    #: Agents paired with, by instance name; only the fingerprint matters.
    agents: TrustStore


def load_credentials(home: Path | None = None) -> PhoneCredentials:
    home = home or phone_home()
    identity = load_or_create(home, default_device_name(), server=False)
    return PhoneCredentials(identity, TrustStore(home / AGENTS_FILE))

"""The phone's credentials: its own identity, the agents it paired with (pinned keys), and
its XMPP server account with the signed-command counter (the server path, linking.py).

They live in the user's config directory (platformdirs: ~/.config/buttons on Linux);
`BUTTONS_HOME` (or the `--home` flag) points elsewhere, and tests set `home_override`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.security.atomic import atomic_write
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


# -- the phone's server account (hybrid path) ------------------------------------------------

ACCOUNT_FILE = "account.json"
PASSWORD_FILE = "account.password"
COUNTER_FILE = "counter"


class AccountError(Exception):
    """The stored account is missing or unusable; the message says what to run."""


@dataclass(frozen=True, slots=True)
class PhoneAccount:
    """The phone's own XMPP account: where signed commands are sent from."""

    jid: str
    #: Server host override (default: the JID's domain), port, and TLS like `[xmpp_account]`.
    host: str = ""
    port: int = 5222
    tls: str = "required"
    ca_file: str = ""


def save_account(home: Path, account: PhoneAccount, password: str) -> None:
    """Store the account; the password goes into its own 0600 file."""
    atomic_write(home / PASSWORD_FILE, password.encode("utf-8") + b"\n", mode=0o600)
    data = json.dumps(asdict(account), indent=2, sort_keys=True).encode("utf-8") + b"\n"
    atomic_write(home / ACCOUNT_FILE, data, mode=0o600)


def load_account(home: Path) -> PhoneAccount | None:
    try:
        document = json.loads((home / ACCOUNT_FILE).read_text(encoding="utf-8"))
        return PhoneAccount(**document)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        path = home / ACCOUNT_FILE
        raise AccountError(f"{path} is unreadable ({exc}); run: buttons account add") from None


def account_password(home: Path) -> str:
    path = home / PASSWORD_FILE
    try:
        if os.stat(path).st_mode & 0o077:
            raise AccountError(f"{path} is readable by others; run: chmod 600 {path}")
        return path.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError) as exc:
        raise AccountError(f"cannot read the account password {path}: {exc}") from None


def remove_account(home: Path) -> bool:
    removed = False
    for name in (ACCOUNT_FILE, PASSWORD_FILE):
        with contextlib.suppress(FileNotFoundError):
            (home / name).unlink()
            removed = True
    return removed


#: Counters reserved per write of the counter file: a phone that presses through the server
#: writes (and fsyncs) once per block, not once per press.
COUNTER_BLOCK = 64


class CounterReservation:
    """Signed-command counters for this device, reserved in blocks saved before use.

    The counter file holds the highest counter ever reserved. A block starts above it and
    never below the clock in milliseconds, so neither a crash (the rest of a block is
    skipped, never reused) nor a lost counter file (same key) yields a counter the agent
    already accepted.
    """

    def __init__(self, home: Path, block: int = COUNTER_BLOCK) -> None:
        self.path = home / COUNTER_FILE
        self.block = block
        self._next = 1
        self._ceiling = 0  # nothing reserved by this object yet

    def take(self) -> int:
        if self._next > self._ceiling:
            self._reserve()
        counter = self._next
        self._next += 1
        return counter

    def _reserve(self) -> None:
        try:
            last = int(self.path.read_text(encoding="ascii").strip() or "0")
        except FileNotFoundError:
            last = 0
        except (OSError, ValueError) as exc:
            raise AccountError(f"the counter file {self.path} is unreadable: {exc}") from None
        start = max(last + 1, int(time.time() * 1000))
        ceiling = start + self.block - 1
        atomic_write(self.path, f"{ceiling}\n".encode("ascii"), mode=0o600)
        self._next, self._ceiling = start, ceiling


def load_signing_key(identity: Identity) -> ec.EllipticCurvePrivateKey:
    """This device's private key: it signs server-path commands (linking.py)."""
    try:
        key = serialization.load_pem_private_key(identity.key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise AccountError(f"cannot load {identity.key_path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AccountError(f"{identity.key_path} is not an ECDSA key")
    return key

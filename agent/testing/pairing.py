"""Pairing without the PIN dance, for tests and the on-device self-test.

`pair_directly` writes both trust stores the way a successful pairing would: the agent
trusts the phone's certificate, the phone pins the agent's. Pairing itself (SPAKE2 and all)
is tested in tests/security/; everything else starts from an already paired phone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from agent.app import Agent
from agent.security.phone import PhoneCredentials, home_override, load_credentials

TEST_PHONE_NAME = "test-phone"


def make_phone(home: Path) -> PhoneCredentials:
    """A phone identity (key + certificate) and an empty list of paired agents in `home`."""
    return load_credentials(home)


def pair_directly(agent: Agent, phone: PhoneCredentials, *, name: str = TEST_PHONE_NAME) -> None:
    agent.trusted.add(name, phone.identity.cert_der)
    phone.agents.forget_name(agent.instance)
    phone.agents.add(agent.instance, agent.identity.cert_der, keep_cert=False)


@contextmanager
def default_phone(agent: Agent, *, paired: bool = True) -> Iterator[PhoneCredentials]:
    """A fresh phone made the default for `agent.client.connect()` in this context."""
    with TemporaryDirectory(prefix="buttons-phone-") as home:
        phone = make_phone(Path(home))
        if paired:
            pair_directly(agent, phone)
        token = home_override.set(phone.identity.directory)
        try:
            yield phone
        finally:
            home_override.reset(token)

"""`[xmpp_account]` checks and the reconnect backoff (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import XmppAccountConfig
from agent.hybrid import account_settings
from agent.net.c2s import Backoff


def test_off_without_a_jid() -> None:
    assert not XmppAccountConfig().enabled
    assert XmppAccountConfig(jid="tv@example.org", password="pw").enabled


def test_password_file_wins_and_only_its_first_line_counts(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n", encoding="utf-8")
    config = XmppAccountConfig(jid="tv@example.org", password="inline", password_file=str(secret))
    assert account_settings(config).password == "from-file"


def test_tls_is_the_default_and_none_means_plaintext() -> None:
    assert account_settings(XmppAccountConfig(jid="tv@example.org", password="pw")).tls is not None
    plain = account_settings(XmppAccountConfig(jid="tv@example.org", password="pw", tls="none"))
    assert plain.tls is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (XmppAccountConfig(jid="tv@example.org"), "needs password"),
        (XmppAccountConfig(jid="tv@example.org", password_file="/nonexistent/pw"), "cannot read"),
        (XmppAccountConfig(jid="not a jid", password="pw"), "not a JID"),
    ],
)
def test_bad_settings_are_clear_errors(config: XmppAccountConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        account_settings(config)


def test_backoff_grows_to_its_maximum_and_resets_after_a_good_stream() -> None:
    next_delay = Backoff(initial=1, maximum=8, factor=2).delays()
    delays = [next_delay(False) for _ in range(6)]
    assert 0.5 <= delays[0] <= 1
    assert all(4 <= d <= 8 for d in delays[4:])
    assert next_delay(True) <= 1

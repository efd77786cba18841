"""Pairing tokens, credentials and rate limits, with trio's MockClock for time."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trio
import trio.testing

from agent.pairing import PairingWindow
from agent.security.truststore import TrustStore
from agent.web.auth import MemoryWebAuth, TrustStoreWebAuth
from agent.web.qr import pairing_url, print_to_terminal, show_pairing_codes, terminal_art
from agent.web.ratelimit import RateLimiter


async def test_no_token_without_an_open_pairing_window() -> None:
    auth = MemoryWebAuth(PairingWindow())
    assert await auth.issue_token() is None


async def test_a_token_pairs_once_and_the_credential_names_the_peer() -> None:
    window = PairingWindow()
    window.open()
    auth = MemoryWebAuth(window)
    token = await auth.issue_token()
    assert token is not None
    credential = await auth.redeem(token, "Firefox on Android")
    assert credential is not None
    assert await auth.check(credential.secret) == credential.peer
    assert auth.labels[credential.peer] == "Firefox on Android"
    assert await auth.redeem(token, "again") is None
    assert await auth.check("forged") is None


async def test_tokens_expire_with_the_window_even_if_it_reopens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    window = PairingWindow(seconds=60)
    window.open()
    auth = MemoryWebAuth(window)
    token = await auth.issue_token()
    assert token is not None
    await trio.sleep(61)
    window.open()  # a new window: old codes stay dead
    assert await auth.redeem(token, "late") is None


async def test_revoking_forgets_the_credential() -> None:
    window = PairingWindow()
    window.open()
    auth = MemoryWebAuth(window)
    token = await auth.issue_token()
    assert token is not None
    credential = await auth.redeem(token, "phone")
    assert credential is not None
    assert await auth.revoke(credential.peer)
    assert await auth.check(credential.secret) is None
    assert not await auth.revoke(credential.peer)


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(burst=2, rate=1.0, clock=lambda: now[0])
    assert [limiter.allow("a"), limiter.allow("a"), limiter.allow("a")] == [True, True, False]
    assert limiter.allow("b")  # per address
    now[0] = 1.0
    assert limiter.allow("a")
    assert not limiter.allow("a")


def test_rate_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(burst=0, rate=1.0, clock=lambda: 0.0)


def test_the_code_carries_the_token_in_the_fragment() -> None:
    url = pairing_url("http://tv.local:8181/", "abc")
    assert url == "http://tv.local:8181/#pair=abc"
    out = io.StringIO()
    print_to_terminal(url, terminal_art(url), out)
    assert "█" in out.getvalue() or "▀" in out.getvalue()
    assert url in out.getvalue()


async def test_the_tv_shows_a_fresh_code_each_time_pairing_opens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    window = PairingWindow(seconds=30)
    auth = MemoryWebAuth(window)
    shown: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: show_pairing_codes(
                window, auth, "http://tv.local:8181", show=lambda url, art: shown.append(url)
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        assert shown == []
        window.open()
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(31)  # the window closes by itself
        window.open()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(shown) == 2
    assert shown[0] != shown[1]
    assert all(url.startswith("http://tv.local:8181/#pair=") for url in shown)


async def test_paired_browsers_live_in_the_agents_trust_store(tmp_path: Path) -> None:
    window = PairingWindow()
    window.open()
    store_path = tmp_path / "peers.json"
    auth = TrustStoreWebAuth(window, TrustStore(store_path))
    token = await auth.issue_token()
    assert token is not None
    credential = await auth.redeem(token, "phone")
    assert credential is not None
    # Another process (`buttons-agent peers list`) reads the same file and sees the browser.
    listed = TrustStore(store_path)
    entry = listed.find_name(credential.peer)
    assert entry is not None
    assert entry.cert == ""  # never a TLS trust anchor
    assert credential.secret not in store_path.read_text()  # only its digest is stored
    # It survives a restart of the agent (a fresh auth on the same file) …
    restarted = TrustStoreWebAuth(PairingWindow(), TrustStore(store_path))
    assert await restarted.check(credential.secret) == credential.peer
    assert restarted.peers == [credential.peer]
    # … and `peers revoke NAME` from elsewhere refuses it from then on.
    assert listed.revoke(credential.peer)
    assert await restarted.check(credential.secret) is None

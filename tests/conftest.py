"""Session-wide test harness: the whole pytest run happens in a private network namespace.

mDNS tests multicast for real, and Kodi/lircd helpers open real sockets; none of that may
reach the machine's real network. So before any test (or thread) exists, pytest_configure
moves this process into a fresh network namespace (agent/testing/netns.py). If that fails the
session stops with the reason. Setting BUTTONS_TEST_NETNS=off runs without isolation: tests
marked `netns` then skip, saying so.
"""

from __future__ import annotations

import pytest

from agent.testing import netns

_isolation: netns.PrivateNetns | None = None
_skip_reason = ""


def pytest_configure(config: pytest.Config) -> None:
    global _isolation, _skip_reason
    if netns.opted_out():
        _skip_reason = (
            f"{netns.OPT_OUT_ENV}=off: no private network namespace, so this test "
            "may not multicast or open real network services"
        )
        return
    try:
        _isolation = netns.enter_private_netns()
    except netns.NetnsError as exc:
        raise pytest.UsageError(
            f"cannot isolate the tests in a private network namespace: {exc}\n"
            f"(set {netns.OPT_OUT_ENV}=off to run anyway; tests marked 'netns' then skip)"
        ) from exc


def pytest_report_header(config: pytest.Config) -> str:
    if _isolation is not None:
        return f"buttons-agent: {_isolation.describe()}"
    return f"buttons-agent: NOT isolated ({_skip_reason})"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is None:
        return
    if _skip_reason:
        pytest.skip(_skip_reason)
    # Belt and braces: never let a netns test run on the real network.
    if not netns.isolation_active():
        pytest.fail("this test needs the private network namespace, but it is not active")

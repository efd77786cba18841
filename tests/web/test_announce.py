"""The web remote's `_http._tcp` announcement, with real multicast in the test namespace."""

from __future__ import annotations

import pytest
import trio

from agent.net import mdns
from agent.web.announce import HTTP_TYPE, open_http_announcement

LOOPBACK = ["127.0.0.1"]


@pytest.mark.netns
async def test_the_page_is_announced_as_http_with_its_port_and_path() -> None:
    async with (
        open_http_announcement(
            name="Living room TV", host="tvhost", port=8181, interfaces=LOOPBACK
        ),
        mdns._open_zeroconf(LOOPBACK) as zc,
    ):
        name = f"Living room TV.{HTTP_TYPE}"
        with trio.fail_after(20):
            info = await trio.to_thread.run_sync(zc.get_service_info, HTTP_TYPE, name, 5000)
    assert info is not None
    assert info.port == 8181
    assert info.server == "tvhost.local."
    assert info.parsed_addresses() == ["127.0.0.1"]
    assert info.decoded_properties == {"path": "/"}

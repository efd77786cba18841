"""With Kodi as the TV, the pairing QR code is shown on the TV itself (a Kodi notification
carrying the code's picture), not in a terminal."""

from __future__ import annotations

import trio

from agent.backends.kodi import KodiBackend
from agent.testing.agents import eventually, open_agent
from agent.testing.fake_kodi import FakeKodi

WEB = {"enabled": True, "port": 0, "listen": ["127.0.0.1"], "announce": False}


async def test_the_qr_code_goes_to_kodi(nursery: trio.Nursery) -> None:
    fake: FakeKodi = await nursery.start(FakeKodi().serve)
    async with open_agent(KodiBackend(fake.kodi_config()), web=WEB) as agent:
        agent.pairing.open()

        def qr_shown() -> bool:
            return any(
                m == "GUI.ShowNotification" and "#pair=" in p["message"] for m, p in fake.calls
            )

        await eventually(qr_shown)
        params = next(p for m, p in fake.calls if m == "GUI.ShowNotification" and "image" in p)
        picture = trio.Path(params["image"])
        assert (await picture.read_bytes()).startswith(b"\x89PNG")
        assert params["message"].startswith(f"http://test.local:{agent.web_port}/#pair=")

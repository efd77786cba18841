"""The page in a real browser (headless Chromium) against an agent running in-process."""

from __future__ import annotations

import pytest
import trio

from agent.web.chromium import PHONE, SCREENSHOTS, Browser, open_browser
from agent.web.qr import pairing_url, write_png
from agent.web.testing import WebAgent, open_web_agent


async def connected(browser: Browser) -> bool:
    return await browser.text("#status") == "Connected"


async def pair_browser(web: WebAgent, browser: Browser) -> None:
    await browser.get(pairing_url(web.url, await web.token()))
    await browser.until(lambda: connected(browser))


@pytest.mark.usefixtures("chromium")
async def test_pair_press_hold_state_and_text_in_a_real_browser() -> None:
    async with open_web_agent() as web, open_browser() as browser:
        await pair_browser(web, browser)
        assert (
            await browser.run(lambda: browser.driver.execute_script("return location.hash")) == ""
        )

        # A press goes through to the TV.
        await browser.click("[data-button='volume_up']")
        await browser.until(lambda: trio_true(web.tv.history == ["volume_up"]))
        await browser.until(lambda: text_is(browser, "#np-volume", "Volume 55"))

        # A state push from the TV updates the now-playing card.
        web.tv.start_playing("Sintel")
        await browser.until(lambda: text_is(browser, "#np-title", "Sintel"))
        assert await browser.text("#np-state") == "PLAYING"

        # Holding a repeatable button repeats; releasing stops the repeats.
        before = len(web.tv.history)
        await browser.hold("[data-button='down']", 1.0)
        # Repeats come every 0.05 s while held: six intervals without one means they stopped.
        await browser.until(lambda: history_settles(web, 0.3))
        held = web.tv.history[before:]
        assert held.count("down") >= 3, held
        assert set(held) == {"down"}

        # The TV asks for text: the prompt opens by itself; typing + Enter sends it.
        web.tv.request_input("Search movies")
        await browser.until(lambda: browser.visible("#text-dialog"))
        assert await browser.text("#text-title") == "Search movies"
        await browser.screenshot("web-text-prompt.png")
        await browser.type("#text-input", "big buck\n")
        await browser.until(lambda: trio_true("big buck" in web.tv.texts))
        await browser.until(lambda: not_visible(browser, "#text-dialog"))
        await browser.screenshot("web-remote.png")


@pytest.mark.usefixtures("chromium")
async def test_an_unpaired_browser_is_refused_and_a_revoked_one_on_its_next_connection() -> None:
    async with open_web_agent() as web, open_browser() as browser:
        await browser.get(web.url)
        await browser.until(lambda: browser.visible("#pairing"))
        assert await browser.text("#status") == "Not paired"
        assert web.server.open_sockets == 0
        await browser.screenshot("web-pairing.png")

        await pair_browser(web, browser)
        (peer,) = web.auth.peers
        assert await web.auth.revoke(peer)
        await browser.run(browser.driver.refresh)
        await browser.until(lambda: browser.visible("#pairing"))
        assert await browser.text("#status") == "Not paired"
        await browser.click("#pairing")  # nothing to press: the remote is not on the page
        assert not await browser.visible("#remote")


@pytest.mark.usefixtures("chromium")
async def test_a_used_token_does_not_pair_a_second_browser() -> None:
    async with open_web_agent() as web:
        url = pairing_url(web.url, await web.token())
        async with open_browser() as first:
            await first.get(url)
            await first.until(lambda: connected(first))
        async with open_browser() as second:
            await second.get(url)
            await second.until(lambda: second.visible("#pairing-error"))
            assert "did not work" in await second.text("#pairing-error")


async def test_the_pairing_qr_code_the_tv_shows() -> None:
    async with open_web_agent() as web:
        url = pairing_url(web.url, await web.token())
        write_png(url, SCREENSHOTS / "web-pairing-qr.png")
        assert (SCREENSHOTS / "web-pairing-qr.png").read_bytes().startswith(b"\x89PNG")


async def trio_true(value: bool) -> bool:
    await trio.lowlevel.checkpoint()
    return value


async def history_settles(web: WebAgent, seconds: float) -> bool:
    before = len(web.tv.history)
    await trio.sleep(seconds)
    return len(web.tv.history) == before


async def text_is(browser: Browser, css: str, expected: str) -> bool:
    return await browser.text(css) == expected


async def not_visible(browser: Browser, css: str) -> bool:
    return not await browser.visible(css)


@pytest.mark.usefixtures("chromium")
async def test_landscape_fits_the_screen_and_keeps_the_controls_in_reach() -> None:
    width, height = PHONE[1], PHONE[0]  # the same phone turned sideways
    async with open_web_agent() as web, open_browser((width, height)) as browser:
        await pair_browser(web, browser)
        # Every key lies wholly inside the screen (none cut off at the edge, none scrolled to)
        # and stays a comfortable touch target. The phone's width, not innerWidth: a mobile
        # layout viewport grows to fit content that overflows.
        outside = await browser.run(
            lambda: browser.driver.execute_script(
                "return [...document.querySelectorAll('.remote [data-button]')]"
                ".map(k => [k.dataset.button, k.getBoundingClientRect()])"
                ".filter(([, r]) => r.width > 0 && (r.left < 0 || r.right > arguments[0]"
                " || r.width < 48 || r.height < 48)).map(([name]) => name)",
                width,
            )
        )
        assert outside == []
        for control in ("[data-button='select']", "[data-button='volume_up']",
                        "[data-button='play_pause']"):  # fmt: skip
            assert await browser.visible(control)
        await browser.click("[data-button='select']")
        await browser.until(lambda: trio_true(web.tv.history == ["select"]))
        await browser.screenshot("web-remote-landscape.png")

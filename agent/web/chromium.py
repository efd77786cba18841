"""Driving Debian's headless Chromium with Selenium from trio (the web remote's test harness).

Needs the dev dependency `selenium` and Debian's `chromium` + `chromium-driver`; nothing in
the agent imports this module. Selenium is blocking, so every call goes through
`trio.to_thread.run_sync` (the one place these tests use a thread) while the agent keeps
running in the test's trio loop.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = (390, 844)  # CSS pixels of a common phone, portrait
#: Where screenshots go: a scratch directory, so a test run leaves the checkout clean;
#: `make screenshots` points it at docs/screenshots to refresh the documentation's pictures.
SCREENSHOTS = Path(
    os.environ.get("BUTTONS_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "buttons-agent-screenshots"
)

_T = TypeVar("_T")


class ChromiumMissing(Exception):
    """Debian's chromium / chromium-driver are not installed (tests skip with this text)."""


def require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        raise ChromiumMissing(
            f"needs {', '.join(missing)}: apt-get install -y chromium chromium-driver"
        )


def _start(user_data_dir: str, size: tuple[int, int]) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={user_data_dir}",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    # Headless windows are at least 500 px wide; emulation gives the exact phone viewport.
    metrics = {"width": size[0], "height": size[1], "pixelRatio": 2}
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class Browser:
    """One Chromium with a fresh profile; every method runs Selenium in a worker thread."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def run(self, call: Callable[..., _T], *args: Any) -> _T:
        return await trio.to_thread.run_sync(partial(call, *args))

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def find(self, css: str) -> WebElement:
        return await self.run(self.driver.find_element, By.CSS_SELECTOR, css)

    async def text(self, css: str) -> str:
        element = await self.find(css)
        return str(await self.run(lambda: element.text))

    async def visible(self, css: str) -> bool:
        element = await self.find(css)
        return bool(await self.run(element.is_displayed))

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self.run(element.click)

    async def hold(self, css: str, seconds: float) -> None:
        """Pointer down on the element, wait, pointer up: a real press-and-hold."""
        element = await self.find(css)
        actions = webdriver.ActionChains(self.driver)
        await self.run(actions.click_and_hold(element).perform)
        await trio.sleep(seconds)
        await self.run(webdriver.ActionChains(self.driver).release(element).perform)

    async def type(self, css: str, text: str) -> None:
        element = await self.find(css)
        await self.run(element.send_keys, text)

    async def until(self, check: Callable[[], Any], *, seconds: float = 10.0) -> None:
        """Poll an async check until it holds (fails the test after `seconds`)."""
        with trio.fail_after(seconds):
            while not await check():  # noqa: ASYNC110 - the browser has no event to wait on
                await trio.sleep(0.05)

    async def screenshot(self, name: str) -> Path:
        await trio.Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        await self.run(self.driver.save_screenshot, str(path))
        return path


@asynccontextmanager
async def open_browser(size: tuple[int, int] = PHONE) -> AsyncIterator[Browser]:
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="buttons-chromium-") as profile:
        driver = await trio.to_thread.run_sync(_start, profile, size)
        try:
            yield Browser(driver)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(driver.quit)

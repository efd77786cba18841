"""Browser tests skip (saying why) where Debian's chromium is not installed."""

from __future__ import annotations

import pytest

from agent.web.chromium import ChromiumMissing, require_chromium


@pytest.fixture
def chromium() -> None:
    try:
        require_chromium()
    except ChromiumMissing as exc:
        pytest.skip(str(exc))

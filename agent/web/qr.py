"""The pairing code the TV shows: page URL + single-use token, as a QR code (segno).

The token rides in the URL's fragment (`#pair=…`): browsers never send a fragment to the
server or in a Referer, so it shows up in no log; the page posts it to /pair itself.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TextIO

import segno

from agent.backends.base import BackendError
from agent.logs import kv
from agent.pairing import PairingWindow
from agent.web.auth import WebAuth

log = logging.getLogger(__name__)


def pairing_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/#pair={token}"


def _code(url: str) -> segno.QRCode:
    return segno.make_qr(url, error="m")


def terminal_art(url: str) -> str:
    """The code as Unicode half blocks, for a terminal (the virtual TV's screen)."""
    out = io.StringIO()
    _code(url).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def write_png(url: str, path: Path, *, scale: int = 8) -> None:
    """The code as a PNG (what a TV shows in a dialog; also the docs' screenshot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _code(url).save(str(path), kind="png", scale=scale, border=4, dark="#000", light="#fff")


def print_to_terminal(url: str, art: str, out: TextIO = sys.stdout) -> None:
    out.write("\nScan to pair a phone with this TV (single use, while pairing is open):\n")
    out.write(art)
    out.write(f"{url}\n\n")
    out.flush()


async def show_pairing_codes(
    window: PairingWindow,
    auth: WebAuth,
    base_url: str,
    *,
    show: Callable[[str, str], None] = print_to_terminal,
    png_path: Path | None = None,
    show_on_tv: Callable[[str, Path], Awaitable[None]] | None = None,
) -> NoReturn:
    """Each time the pairing window opens, issue a token and show its code on the "TV".

    With `show_on_tv` (a TV that can show an image, e.g. Kodi's notification) the PNG goes
    there; otherwise the code is drawn in the terminal (the virtual TV's screen).
    """
    while True:
        if window.is_open and (token := await auth.issue_token()) is not None:
            url = pairing_url(base_url, token)
            if png_path is not None:
                write_png(url, png_path)
            if show_on_tv is not None and png_path is not None:
                try:
                    await show_on_tv(url, png_path)
                except BackendError as exc:
                    log.warning(kv("web-pairing-code-not-shown", reason=exc.reason))
                    show(url, terminal_art(url))
            else:
                show(url, terminal_art(url))
            log.info(kv("web-pairing-code-shown", png=png_path or "-"))
        await window.wait_changed()

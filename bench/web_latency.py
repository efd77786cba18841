"""Press round trip: the web remote's WebSocket (RFC 7395) vs the link-local XMPP stream.

One agent (virtual TV, so the backend costs next to nothing and the transports are what is
measured) serves both paths in the same run; presses alternate between the two paths in a
random order so they share conditions. A round trip is: iq with <press/> sent → iq result
received, over loopback, client and agent in this one process. Both clients are paired
first, as real ones are: the link-local phone by PIN (its stream runs over TLS), the
"browser" by a pairing token (plain HTTP, as the web remote serves by default).

    python -m bench.web_latency [--presses 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from agent import client
from agent.buttons import codec
from agent.net.stream import StreamFailed
from agent.security import pair_client
from agent.security.phone import PhoneCredentials, load_credentials
from agent.web.client import WebStream, open_web_stream, pair
from agent.web.testing import HOST, WebAgent, open_web_agent

PATHS = ("link-local (TLS)", "WebSocket (plain)")
BUTTONS = ("volume_up", "volume_down")
TIMEOUT = 60.0


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def web_press(stream: WebStream, button: str) -> Callable[[], Awaitable[object]]:
    async def press() -> None:
        reply = await stream.request(codec.Press(button))
        if reply.get("type") != "result":
            raise RuntimeError(f"press refused: {reply.get('type')}")

    return press


async def measure(presses: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="buttons-bench-") as scratch:
        return await _measure(presses, Path(scratch))


async def _pair_phone(web: WebAgent, home: Path) -> PhoneCredentials:
    """Pair a link-local phone the way `buttons pair` does, reading the PIN off the "TV"."""
    credentials = load_credentials(home)

    async def read_pin_off_the_tv(seconds: float) -> str:
        await trio.lowlevel.checkpoint()
        return web.agent.pairing.current_pin or ""

    await pair_client.pair(
        HOST,
        web.agent.port,
        agent=web.agent.instance,
        credentials=credentials,
        ask_pin=read_pin_off_the_tv,
    )
    return credentials


async def _measure(presses: int, scratch: Path) -> dict[str, list[float]]:
    async with open_web_agent({"state_dir": str(scratch / "agent")}) as web:
        credential = await pair(HOST, web.port, await web.token())
        async with open_web_stream(HOST, web.port, credential) as browser:
            paths: dict[str, Callable[[str], Callable[[], Awaitable[object]]]] = {
                PATHS[1]: partial(web_press, browser)
            }
            try:
                credentials = await _pair_phone(web, scratch / "phone")
                phone_stream = client.connect(
                    HOST, web.agent.port, agent=web.agent.instance, credentials=credentials
                )
                phone = await phone_stream.__aenter__()
            except (StreamFailed, pair_client.PairingFailed) as exc:
                print(f"link-local path not measured: {exc}")
            else:
                paths[PATHS[0]] = lambda button: partial(phone.press, button)
            try:
                return await _run(paths, presses)
            finally:
                if PATHS[0] in paths:
                    await phone_stream.__aexit__(None, None, None)


async def _run(
    paths: dict[str, Callable[[str], Callable[[], Awaitable[object]]]], presses: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {path: [] for path in sorted(paths)}
    with trio.fail_after(TIMEOUT):
        for i in range(50):  # warm-up, not recorded
            for make in paths.values():
                await make(BUTTONS[i % 2])()
        for i in range(presses):
            # Random order, so neither path always runs right after the other.
            for path in random.sample(list(paths), k=len(paths)):
                samples[path].append(await timed(paths[path](BUTTONS[i % 2])))
    return samples


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def print_table(results: dict[str, list[float]], presses: int) -> None:
    print(f"press round trip (iq → result), {presses} presses per path, milliseconds (loopback)")
    print(f"{'path':<24}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    for path, samples in results.items():
        row = [percentile(samples, 50), percentile(samples, 90), percentile(samples, 99)]
        cells = "".join(f"{value * 1e3:9.3f}" for value in [*row, max(samples)])
        print(f"{path:<24}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=2000)
    args = parser.parse_args()
    if args.presses < 2:
        parser.error("--presses must be at least 2")
    print_table(trio.run(measure, args.presses), args.presses)


if __name__ == "__main__":
    main()

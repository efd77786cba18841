"""Press → Kodi acted: latency through the agent vs a direct JSON-RPC call (the floor).

All paths drive the same headless Kodi in the same run. Paths are measured in two blocks,
each interleaved press by press with its own direct call (the floor), so each comparison
shares its conditions: the link-local block (the agent, `KodiBackend.press`, the direct call
with and without QUICKACK) and the server block (the agent via Prosody, the direct call).
They are not interleaved with each other: on a 2-core machine Prosody's work after each relayed
press overlapped the next measurement, and slowed every path measured right after it,
the direct call included (its p50 doubled). "Acted" is Kodi's JSON-RPC reply (Kodi answers
once the action is queued).
Two kinds of press: `volume_up`/`volume_down` (each call also triggers a Kodi notification, the
case that hits Nagle + delayed ACK) and `left`/`right` (plain navigation). Paths: the phone
through the agent (XMPP stream, dispatcher, backend), the same agent reached through a private
Prosody (hybrid mode: the phone's account, a signed command, the agent's server link),
`KodiBackend.press` alone, a direct JSON-RPC call (the floor), and the direct call without
re-arming TCP_QUICKACK (what the transport avoids). The phone, the agent and the direct
client share this one process; Prosody runs beside it on loopback.

    python -m bench.kodi_latency [--presses 300] [--host H --port P]

Without --port it starts its own headless Kodi (web server off: nothing but loopback).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from agent import client
from agent.backends.kodi import KodiBackend
from agent.backends.kodi.mapping import BUTTON_CALLS
from agent.backends.kodi.transport import TcpConnection, open_tcp_connection
from agent.client_server import connect_via_server, server_route
from agent.config import KodiConfig
from agent.testing.hybrid import open_hybrid_agent, register_users
from agent.testing.kodi import HeadlessKodi, wait_for_state
from agent.testing.prosody import PrivateProsody
from bench import prosody_path

BLOCKS = {
    "link-local": ("agent", "KodiBackend.press", "direct", "direct, no QUICKACK"),
    "server": ("agent via server", "direct"),
}
PAIRS = {"volume": ("volume_down", "volume_up"), "navigation": ("left", "right")}
TIMEOUT = 30.0


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def agent_press(phone: client.ButtonsClient, button: str) -> Callable[[], Awaitable[object]]:
    return lambda: phone.press(button)


def backend_press(backend: KodiBackend, button: str) -> Callable[[], Awaitable[object]]:
    return lambda: backend.press(button)


def direct_press(connection: TcpConnection, button: str) -> Callable[[], Awaitable[object]]:
    kodi_call = BUTTON_CALLS[button]
    return lambda: connection.call(kodi_call.method, kodi_call.params)


Results = dict[tuple[str, str], dict[str, list[float]]]  # (press kind, block) → path → samples


async def measure(config: KodiConfig, presses: int, server: PrivateProsody) -> Results:
    results: Results = {}
    backend = KodiBackend(config)
    await trio.to_thread.run_sync(register_users, server)
    async with (
        open_hybrid_agent(server, backend, name="bench") as (agent, credentials),
        client.connect("127.0.0.1", agent.port, agent=agent.instance) as phone,
        connect_via_server(credentials, server_route(credentials, None)) as away,
        open_tcp_connection(config.host, config.tcp_port, call_timeout=TIMEOUT) as direct,
        open_tcp_connection(
            config.host, config.tcp_port, call_timeout=TIMEOUT, quickack=False
        ) as plain,
    ):
        with trio.fail_after(TIMEOUT):
            await wait_for_state(backend, lambda s: s.available)
        for kind, pair in PAIRS.items():
            for block, names in BLOCKS.items():
                samples: dict[str, list[float]] = {path: [] for path in names}
                for i in range(20):  # warm-up, not recorded
                    await (away if block == "server" else phone).press(pair[i % 2])
                with trio.fail_after(TIMEOUT + presses * 1.0):
                    for i in range(presses):
                        button = pair[i % 2]
                        paths = {
                            "agent": agent_press(phone, button),
                            "agent via server": agent_press(away, button),
                            "KodiBackend.press": backend_press(backend, button),
                            "direct": direct_press(direct, button),
                            "direct, no QUICKACK": direct_press(plain, button),
                        }
                        # Random order: Kodi acts on its own main-loop clock, so a fixed order
                        # would give each path a fixed phase of that loop, not a fair share.
                        for path in random.sample(names, k=len(names)):
                            samples[path].append(await timed(paths[path]))
                results[kind, block] = samples
    return results


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def print_baseline(agent: list[float], server: list[float]) -> None:
    """The link-local agent path against the server-mediated one (navigation presses)."""
    agent_p50, server_p50 = percentile(agent, 50), percentile(server, 50)
    print(
        f"{'navigation':<12}{'via Prosody (slixmpp)':<22}{server_p50 * 1e3:9.3f}"
        f"{percentile(server, 99) * 1e3:9.3f}{max(server) * 1e3:9.3f}"
        f"   (agent path is {server_p50 / agent_p50:.1f}x faster at p50)"
    )


def print_table(results: Results, presses: int) -> None:
    print(f"press → Kodi acted, {presses} presses per path, milliseconds (loopback)")
    print(f"{'press':<12}{'path':<22}{'p50':>9}{'p99':>9}{'max':>9}")
    for (kind, block), by_path in results.items():
        print(f"-- {kind} presses, {block} block")
        floor = percentile(by_path["direct"], 50)
        for path, samples in by_path.items():
            p50 = percentile(samples, 50)
            line = f"{kind:<12}{path:<22}{p50 * 1e3:9.3f}"
            line += f"{percentile(samples, 99) * 1e3:9.3f}{max(samples) * 1e3:9.3f}"
            if path in ("agent", "agent via server", "KodiBackend.press"):
                line += f"   (floor + {(p50 - floor) * 1e3:.3f} ms)"
            print(line)


def run(config: KodiConfig, presses: int) -> tuple[Results, list[float]]:
    """The agent's paths (its own private Prosody for hybrid mode), then the slixmpp baseline."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        PrivateProsody(Path(tmp), log_level="warn") as server,
    ):
        results = trio.run(measure, config, presses, server)
    baseline = prosody_path.measure(config.host, config.tcp_port, presses, PAIRS["navigation"])
    return results, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=300)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="a running Kodi's JSON-RPC TCP port")
    args = parser.parse_args()
    if args.presses < 2:
        parser.error("--presses must be at least 2")
    if args.port:
        results, server_path = run(KodiConfig(host=args.host, tcp_port=args.port), args.presses)
    else:
        with HeadlessKodi(webserver=False) as kodi:
            kodi.reset()
            results, server_path = run(kodi.kodi_config(), args.presses)
    print_table(results, args.presses)
    print_baseline(results["navigation", "link-local"]["agent"], server_path)


if __name__ == "__main__":
    main()

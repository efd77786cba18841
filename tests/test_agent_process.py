"""The `buttons-agent` program itself: start-up on IPv4 and IPv6, and SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from agent.testing.rawpeer import open_raw_stream, raw_peer

pytestmark = pytest.mark.netns
READY = re.compile(rb"on port (\d+)")
AGENT_MAIN = "import sys; from agent.cli import agent_main; sys.exit(agent_main())"


async def read_port(process: trio.Process) -> int:
    assert process.stderr is not None
    seen = b""
    with trio.fail_after(20):
        while (match := READY.search(seen)) is None:
            chunk = await process.stderr.receive_some(4096)
            assert chunk, f"the agent exited before it was ready: {seen.decode()}"
            seen += chunk
    return int(match.group(1))


async def test_sigterm_says_goodbye_on_ipv4_and_ipv6_and_exits_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('name = "sig"\nhost = "proc"\n[web]\nenabled = false\n')
    command = [
        sys.executable, "-c", AGENT_MAIN,
        "--config", str(config), "--port", "0", "--listen", "127.0.0.1", "--listen", "::1",
        "--mdns-interface", "127.0.0.1", "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    try:
        port = await read_port(process)
        async with raw_peer(port, "127.0.0.1") as v4, raw_peer(port, "::1") as v6:
            for peer in (v4, v6):
                await open_raw_stream(peer, "to='sig@proc' version='1.0'")
            process.send_signal(signal.SIGTERM)
            for peer in (v4, v6):
                await peer.read_until(lambda p: p.ended or p.eof)
                assert peer.ended  # a proper </stream:stream>, not a dropped connection
                await peer.send("</stream:stream>")
        with trio.fail_after(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

"""A private, real lircd for tests and the hardware-in-the-loop harness.

lircd 0.10.1 has no dummy driver; the `file` driver needs no IR hardware: it accepts sends
and writes the pulse/space timings it would transmit to `--device` (captured sends). Each
instance has its own directory with socket, pidfile, log and an options file passed with `-O`
(so /etc/lirc is never read), and `--allow-simulate` so tests can inject received keys.
It listens only on its unix socket: nothing touches the network.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

LIRCD = "lircd"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

#: A NEC-style remote named `test_tv` with the keys the tests and the demo use.
TEST_REMOTE = "test_tv"
TEST_KEYS = {
    "KEY_POWER": 0x40BF,
    "KEY_VOLUMEUP": 0xE01F,
    "KEY_VOLUMEDOWN": 0xD02F,
    "KEY_MUTE": 0xF00F,
    "KEY_UP": 0x06F9,
    "KEY_DOWN": 0x8679,
    "KEY_LEFT": 0xA659,
    "KEY_RIGHT": 0x46B9,
    "KEY_OK": 0x16E9,
    "KEY_BACK": 0x1AE5,
    "KEY_PLAYPAUSE": 0xE21D,
}


def remote_conf(name: str = TEST_REMOTE, keys: dict[str, int] | None = None) -> str:
    """lircd.conf text for one NEC-style remote."""
    codes = "\n".join(f"    {key:<20} 0x{code:04X}" for key, code in (keys or TEST_KEYS).items())
    return f"""begin remote
  name  {name}
  bits  16
  flags SPACE_ENC|CONST_LENGTH
  eps   30
  aeps  100
  header  4500 4500
  one     560 1690
  zero    560 560
  ptrail  560
  pre_data_bits 16
  pre_data 0xE0E0
  gap     108000
  begin codes
{codes}
  end codes
end remote
"""


class TestLircd:
    """A running lircd; see `open_test_lircd`."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, conf_text: str) -> None:
        self.directory = directory
        self.socket_path = directory / "lircd.sock"
        self.sent_path = directory / "sent.txt"
        self.log_path = directory / "lircd.log"
        self.conf_path = directory / "lircd.conf"
        self.pid_path = directory / "lircd.pid"
        self.options_path = directory / "lirc_options.conf"
        self.conf_path.write_text(conf_text, encoding="utf-8")
        # lircd still reads an options file; ours says nothing so only the command line counts.
        self.options_path.write_text("[lircd]\nnodaemon = True\n", encoding="utf-8")
        self._process: trio.Process | None = None

    @property
    def address(self) -> str:
        return str(self.socket_path)

    def command_line(self) -> list[str]:
        return [
            LIRCD,
            "-O",
            str(self.options_path),
            "--nodaemon",
            "--immediate-init",
            "--driver=file",
            f"--device={self.sent_path}",  # without it the driver writes a stray ./auto
            "--allow-simulate",
            f"--output={self.socket_path}",
            f"--pidfile={self.pid_path}",
            f"--logfile={self.log_path}",
            str(self.conf_path),
        ]

    async def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("this lircd is already running")
        if shutil.which(LIRCD) is None:
            raise RuntimeError("lircd is not installed (Debian package: lirc)")
        # A socket left by a killed lircd would make us connect to nothing.
        self.socket_path.unlink(missing_ok=True)
        self.pid_path.unlink(missing_ok=True)
        self._process = await trio.lowlevel.open_process(
            self.command_line(),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # our own process group: signals reach only lircd
        )
        try:
            with trio.fail_after(READY_TIMEOUT):
                await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        assert self._process is not None
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"lircd exited with {self._process.returncode}; log:\n{self.log_text()}"
                )
            try:
                stream = await trio.open_unix_socket(str(self.socket_path))
            except OSError:
                await trio.sleep(0.02)
                continue
            await stream.aclose()
            return

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_TIMEOUT) as scope:
                await process.wait()
            if scope.cancelled_caught:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()

    async def kill(self) -> None:
        """Kill lircd abruptly (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def reload(self) -> None:
        """SIGHUP: lircd rereads lircd.conf and tells every client `BEGIN SIGHUP END`."""
        if self._process is None:
            raise RuntimeError("lircd is not running")
        self._process.send_signal(signal.SIGHUP)

    async def command(self, line: str) -> str:
        """Send one command on a fresh connection; return lircd's raw reply block."""
        stream = await trio.open_unix_socket(str(self.socket_path))
        async with stream:
            await stream.send_all(line.encode() + b"\n")  # one write: lircd needs whole lines
            received = b""
            with trio.fail_after(STOP_TIMEOUT):
                while not received.endswith(b"END\n"):
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    received += chunk
        return received.decode()

    async def simulate(
        self, key: str, remote: str = TEST_REMOTE, *, repeat: int = 0, code: int = 1
    ) -> None:
        """Make lircd broadcast a received key to every client, as if the IR receiver saw it."""
        reply = await self.command(f"SIMULATE {code:016x} {repeat:02x} {key} {remote}")
        if "\nSUCCESS\n" not in reply:
            raise RuntimeError(f"lircd refused SIMULATE: {reply!r}")

    def sent_text(self) -> str:
        """Everything the file driver transmitted so far (pulse/space lines)."""
        try:
            return self.sent_path.read_text(encoding="ascii")
        except FileNotFoundError:
            return ""

    def sent_timings(self) -> list[tuple[str, int]]:
        return [
            (kind, int(value))
            for kind, value in (line.split() for line in self.sent_text().splitlines())
        ]

    def clear_sent(self) -> None:
        self.sent_path.write_text("", encoding="ascii")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@asynccontextmanager
async def open_test_lircd(
    directory: Path, conf_text: str | None = None
) -> AsyncIterator[TestLircd]:
    """Start a private lircd in `directory` (created if needed); stop it on exit."""
    await trio.Path(directory).mkdir(parents=True, exist_ok=True)
    lircd = TestLircd(directory, conf_text if conf_text is not None else remote_conf())
    await lircd.start()
    try:
        yield lircd
    finally:
        with trio.CancelScope(shield=True):
            await lircd.stop()

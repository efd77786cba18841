"""A real libpurple Bonjour (XEP-0174) chat client — finch — for interop tests.

libpurple's Bonjour protocol needs avahi-daemon, and avahi needs a system D-Bus. Both run in
the test's network namespace (so their multicast never reaches the real network) and in a
private mount namespace whose `/run` is a fresh tmpfs (so the bus socket and avahi's pid file
never clash with, or touch, the host's). finch then runs in a detached tmux session inside
that mount namespace, with a throwaway HOME holding a Bonjour account set to log in at start.
The test drives it like a person: keys in with `send-keys`, the screen out with
`capture-pane`.

Layout of the processes `open_finch` starts (all stopped again on exit):

    unshare --mount  ->  sh (mount tmpfs /run)  ->  exec dbus-daemon   (holds the mount ns)
    nsenter --mount  ->  exec avahi-daemon      (only on the given interface)
    nsenter --mount  ->  tmux server            ->  finch

Facts this relies on (docs/interop.md has the details):
- avahi ignores loopback, and two ends of a veth pair inside one namespace cannot hear each
  other (each end drops the other's packets: their source is a local address). So avahi and
  the agent's zeroconf must share one veth end; they meet through multicast loopback.
- finch reads keys through its own terminfo table: arrow keys sent by tmux do not always
  match it, while Ctrl-N (next row) always does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import trio

#: Commands `open_finch` runs; a test skips when one is missing.
REQUIRED_COMMANDS = ("finch", "avahi-daemon", "dbus-daemon", "tmux", "unshare", "nsenter")
#: The Debian packages that provide them (unshare/nsenter come with util-linux).
APT_PACKAGES = ("finch", "avahi-daemon", "dbus", "tmux")

START_SECONDS = 15.0
STOP_SECONDS = 5.0
_POLL_SECONDS = 0.1
_SESSION = "purple"
_SCREEN_COLUMNS, _SCREEN_ROWS = 120, 40

_DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

_AVAHI_CONFIG = """[server]
host-name={host}
use-ipv4=yes
use-ipv6=no
allow-interfaces={interface}
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
publish-aaaa-on-ipv4=no
[reflector]
enable-reflector=no
[rlimits]
"""

# Inside the new mount namespace: a private /run, then the bus takes over this process.
_HOLDER_SCRIPT = (
    "set -e; mount -t tmpfs -o mode=0755,size=1m purple-run /run; "
    "mkdir -p /run/dbus /run/avahi-daemon; "
    'exec dbus-daemon --config-file="$1" --nofork --nopidfile --print-address=1'
)


class PurpleError(RuntimeError):
    """finch or one of its daemons did not start, or the screen never showed what we waited
    for. The message carries the screen and log tails needed to see why."""


def missing_commands() -> list[str]:
    return [name for name in REQUIRED_COMMANDS if shutil.which(name) is None]


@dataclass(frozen=True, slots=True)
class PurpleAccount:
    """finch's Bonjour account. `host` is also avahi's host name (libpurple uses it)."""

    user: str = "tester"
    host: str = "purplehost"
    first: str = "Test"
    last: str = "Client"

    @property
    def name(self) -> str:
        return f"{self.user}@{self.host}"


def accounts_xml(account: PurpleAccount) -> str:
    """~/.purple/accounts.xml: one Bonjour account that finch enables at start."""
    return (
        "<?xml version='1.0' encoding='UTF-8' ?>\n"
        "<account version='1.0'><account>"
        "<protocol>prpl-bonjour</protocol>"
        f"<name>{escape(account.name)}</name>"
        "<settings>"
        f"<setting name='first' type='string'>{escape(account.first)}</setting>"
        f"<setting name='last' type='string'>{escape(account.last)}</setting>"
        "</settings>"
        "<settings ui='gnt-purple'>"
        "<setting name='auto-login' type='bool'>1</setting>"
        "</settings>"
        "</account></account>\n"
    )


class Finch:
    """finch's screen in its tmux pane: read it, wait for text, open a chat, type into it."""

    def __init__(self, tmux: list[str], account: PurpleAccount, logs: Callable[[], str]) -> None:
        self._tmux = tmux
        self.account = account
        self._logs = logs

    async def screen(self) -> str:
        return await _run_bounded([*self._tmux, "capture-pane", "-p", "-t", _SESSION])

    async def wait_for(
        self, what: str, found: Callable[[str], bool], *, seconds: float = START_SECONDS
    ) -> str:
        """Poll the screen until `found(screen)`; PurpleError (with the screen) after `seconds`."""
        screen = ""
        with trio.move_on_after(seconds):
            while True:
                screen = await self.screen()
                if found(screen):
                    return screen
                await trio.sleep(_POLL_SECONDS)
        raise PurpleError(
            f"finch did not show {what} within {seconds} s. Screen:\n{screen}\n{self._logs()}"
        )

    async def wait_for_text(self, text: str, *, seconds: float = START_SECONDS) -> str:
        return await self.wait_for(repr(text), lambda screen: text in screen, seconds=seconds)

    async def wait_for_buddy(self, label: str, *, seconds: float = START_SECONDS) -> int:
        """Wait until the buddy list shows `label`; returns its row number in the list."""
        screen = await self.wait_for(
            f"the buddy {label!r}",
            lambda screen: buddy_row(screen, label) is not None,
            seconds=seconds,
        )
        row = buddy_row(screen, label)
        assert row is not None
        return row

    async def open_conversation(self, label: str, *, seconds: float = START_SECONDS) -> None:
        """Select the buddy `label` in a freshly started buddy list and open a chat with it."""
        row = await self.wait_for_buddy(label, seconds=seconds)
        # The list starts with its first row (a group) selected; each Ctrl-N moves one down.
        for _ in range(row - 1):
            await self.keys("C-n")
        await self.keys("Enter")
        await self.wait_for_text(f"{label} ({self.account.name}", seconds=seconds)

    async def say(self, text: str) -> None:
        """Type `text` into the focused conversation and send it."""
        await _run_bounded([*self._tmux, "send-keys", "-t", _SESSION, "-l", "--", text])
        await self.keys("Enter")

    async def keys(self, *names: str) -> None:
        """tmux key names, e.g. "C-n", "Enter"."""
        await _run_bounded([*self._tmux, "send-keys", "-t", _SESSION, *names])


def buddy_row(screen: str, label: str) -> int | None:
    """Row of `label` inside the buddy list (row 1 = first list row), or None.

    A buddy row looks like `│   ◯ TV   …`: the left frame, indentation, a status glyph, the
    label, then padding (a tooltip may cover the right part, never the label's start).
    """
    pattern = re.compile(rf"^│ +\S {re.escape(label)}(?: |$)")
    for number, line in enumerate(screen.splitlines()):
        if pattern.match(line):
            return number
    return None


@asynccontextmanager
async def open_finch(
    workdir: Path, *, interface: str, account: PurpleAccount | None = None
) -> AsyncIterator[Finch]:
    """Start a private D-Bus, avahi-daemon on `interface` and finch; stop them all on exit.

    Must run inside a network namespace made for the test (avahi multicasts on `interface`).
    `workdir` receives the configs, the logs and finch's HOME.
    """
    missing = missing_commands()
    if missing:
        raise PurpleError(
            f"missing commands {', '.join(missing)}; apt-get install -y {' '.join(APT_PACKAGES)}"
        )
    account = account or PurpleAccount()
    files = _write_files(workdir, account, interface)
    async with AsyncExitStack() as stack:
        new_namespace = ["unshare", "--mount", "--propagation", "private", "--"]
        holder = ["sh", "-c", _HOLDER_SCRIPT, "purple-holder", str(files.dbus_config)]
        bus = await stack.enter_async_context(
            _daemon([*new_namespace, *holder], files.dbus_log, ready="unix:path=")
        )
        in_namespace = ["nsenter", f"--target={bus.pid}", "--mount", "--"]
        avahi = ["avahi-daemon", "-f", str(files.avahi_config), "--no-drop-root", "--no-chroot"]
        await stack.enter_async_context(
            _daemon(
                [*in_namespace, *avahi, "--no-proc-title", "--debug"],
                files.avahi_log,
                ready="Server startup complete",
            )
        )
        tmux = ["tmux", "-S", str(workdir / "tmux.sock"), "-f", "/dev/null"]
        finch = Finch(tmux, account, files.describe_logs)
        await stack.enter_async_context(_finch_session([*in_namespace, *tmux], files))
        await finch.wait_for_text("Buddy List")
        yield finch


@dataclass(frozen=True, slots=True)
class _Files:
    home: Path
    dbus_config: Path
    dbus_log: Path
    avahi_config: Path
    avahi_log: Path

    def describe_logs(self) -> str:
        return "\n".join(
            f"--- {path.name} (last lines):\n{_tail(path)}"
            for path in (self.avahi_log, self.dbus_log)
        )


def _write_files(workdir: Path, account: PurpleAccount, interface: str) -> _Files:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", interface):
        raise PurpleError(f"{interface!r} is not a network interface name")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,63}", account.host):
        raise PurpleError(f"{account.host!r} is not a valid host name label for avahi")
    files = _Files(
        home=workdir / "home",
        dbus_config=workdir / "dbus.conf",
        dbus_log=workdir / "dbus-daemon.log",
        avahi_config=workdir / "avahi-daemon.conf",
        avahi_log=workdir / "avahi-daemon.log",
    )
    purple_dir = files.home / ".purple"
    purple_dir.mkdir(parents=True, exist_ok=True)
    (purple_dir / "accounts.xml").write_text(accounts_xml(account), encoding="utf-8")
    files.dbus_config.write_text(_DBUS_CONFIG, encoding="utf-8")
    files.avahi_config.write_text(
        _AVAHI_CONFIG.format(host=account.host, interface=interface), encoding="utf-8"
    )
    return files


@asynccontextmanager
async def _daemon(argv: list[str], log: Path, *, ready: str) -> AsyncIterator[trio.Process]:
    """Run a foreground daemon with its output in `log`; ready once `ready` appears there."""
    with log.open("wb") as output:
        process = await trio.lowlevel.open_process(argv, stdout=output, stderr=output)
    try:
        with trio.move_on_after(START_SECONDS) as waiting:
            while ready not in await trio.Path(log).read_text(encoding="utf-8", errors="replace"):
                if process.poll() is not None:
                    raise PurpleError(
                        f"{log.stem} exited with {process.returncode} before it was ready:\n"
                        f"{_tail(log)}"
                    )
                await trio.sleep(_POLL_SECONDS)
        if waiting.cancelled_caught:
            raise PurpleError(f"no {ready!r} in {log} within {START_SECONDS} s:\n{_tail(log)}")
        yield process
    finally:
        await _stop(process)


async def _stop(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_SECONDS):
                await process.wait()
        if process.poll() is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def _finch_session(tmux: list[str], files: _Files) -> AsyncIterator[None]:
    """finch in a detached tmux session inside the mount namespace; killed with the server."""
    environment = {
        "HOME": str(files.home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TERM": "xterm",
        # libpurple also wants a session bus: give it the private one, never the user's.
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/dbus/system_bus_socket",
    }
    size = ["-x", str(_SCREEN_COLUMNS), "-y", str(_SCREEN_ROWS)]
    await _run_bounded(
        [*tmux, "new-session", "-d", "-s", _SESSION, *size, "finch"], env=environment
    )
    pane_pid = await _run_bounded([*tmux, "display-message", "-p", "-t", _SESSION, "#{pane_pid}"])
    finch_pid = int(pane_pid)
    try:
        yield
    finally:
        with trio.CancelScope(shield=True):
            await _run_bounded([*tmux, "kill-server"], check=False)
            with trio.move_on_after(STOP_SECONDS):
                while _alive(finch_pid):  # noqa: ASYNC110 - not our child: nothing to wait on
                    await trio.sleep(_POLL_SECONDS)
            if _alive(finch_pid):
                # tmux made the pane its own session and process group: take all of it.
                os.killpg(finch_pid, signal.SIGKILL)


async def _run_bounded(
    argv: list[str], *, env: dict[str, str] | None = None, check: bool = True
) -> str:
    with trio.fail_after(STOP_SECONDS):
        done = await trio.run_process(
            argv, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    if check and done.returncode != 0:
        raise PurpleError(
            f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
        )
    return done.stdout.decode("utf-8", errors="replace")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"

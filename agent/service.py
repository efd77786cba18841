"""Running under systemd: sd_notify (READY, STATUS, WATCHDOG, STOPPING), an in-loop watchdog,
a boot-partition config with safe fallbacks, and a test mode that wedges the loop on demand.

Everything is a no-op outside systemd (no `$NOTIFY_SOCKET`), so the same code path serves a
developer's terminal and the Pi. `python -m agent.service run …` takes the same options as
`buttons-agent`; the unit in systemd/ starts it that way.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import trio

from agent import config as config_module
from agent.app import Agent
from agent.backends.base import TvState
from agent.logs import kv

log = logging.getLogger(__name__)

#: Set to "1" (tests only) to let SIGUSR2 wedge the event loop, so the watchdog fires.
FREEZE_ENV = "BUTTONS_AGENT_TEST_FREEZE"
FREEZE_SIGNAL = signal.SIGUSR2
#: Config candidates, first readable + valid wins; the boot partition first (user-editable).
SERVICE_CONFIG_CANDIDATES = (
    Path("/boot/firmware/buttons-agent.toml"),
    config_module.DEFAULT_CONFIG_PATH,
)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Notifier:
    """sd_notify(3) over the datagram socket systemd names in `$NOTIFY_SOCKET`."""

    def __init__(self, address: str | None) -> None:
        # A leading "@" is the abstract namespace (a NUL byte on the wire).
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self._socket: socket.socket | None = None

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> None:
        """One datagram `KEY=value\\n…`; never raises (systemd going away must not kill us)."""
        if self.address is None:
            return
        message = "".join(f"{key}={value}\n" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning(kv("sd-notify-failed", error=exc))

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def stopping(self, status: str) -> None:
        self.send(STOPPING="1", STATUS=status)

    def pet(self) -> None:
        self.send(WATCHDOG="1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pets (half of `WatchdogSec=`, as sd_watchdog_enabled(3) advises), or
    None when systemd set no watchdog for this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were started by a wrapper)
    return int(usec) / 2_000_000


async def run_watchdog(notifier: Notifier, interval: float) -> None:
    """Pet systemd's watchdog from a trio task: it runs only while the event loop turns,
    so a wedged loop (a blocking call, a busy task that never yields) stops the pets and
    systemd restarts us."""
    while True:
        notifier.pet()
        await trio.sleep(interval)


async def freeze_on_signal() -> None:
    """Test mode: on SIGUSR2 block the whole event loop, as a wedged agent would."""
    with trio.open_signal_receiver(FREEZE_SIGNAL) as signals:
        async for _signum in signals:
            log.warning(kv("test-freeze", note="blocking the event loop on purpose"))
            # The point is to block the loop, so a blocking sleep is exactly right here.
            time.sleep(10**6)  # noqa: ASYNC251


def describe_ready(agent: Agent) -> str:
    return f"Serving {agent.instance} on port {agent.port} ({agent.backend.name} backend)"


def describe_backend(agent: Agent, state: TvState) -> str:
    if state.available:
        return describe_ready(agent)
    why = state.status_message or "the TV is not reachable"
    return f"{describe_ready(agent)}; backend down: {why}"


async def _report_backend_status(agent: Agent, notifier: Notifier) -> None:
    async for state in agent.backend.state_changes():
        notifier.status(describe_backend(agent, state))


async def run_service(
    agent: Agent,
    on_ready: Callable[[], None] | None = None,
    *,
    notifier: Notifier | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run the agent as a service: READY=1 once it listens and mDNS registration succeeded,
    STATUS= lines as the backend comes and goes, the watchdog, and a graceful stop
    (streams closed, mDNS goodbye) on SIGTERM/SIGINT."""
    env = os.environ if environ is None else environ
    notifier = notifier or Notifier.from_environment()
    notifier.status("Starting backend and listener")
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as helpers:
                interval = watchdog_interval(env)
                if interval is not None:
                    helpers.start_soon(run_watchdog, notifier, interval)
                if env.get(FREEZE_ENV) == "1":
                    helpers.start_soon(freeze_on_signal)
                # This nursery ends when agent.run has closed streams and said mDNS goodbye.
                async with trio.open_nursery() as running:
                    await running.start(agent.run)
                    notifier.ready(describe_ready(agent))
                    helpers.start_soon(_report_backend_status, agent, notifier)
                    if on_ready is not None:
                        on_ready()
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        log.info(kv("agent-stopping", signal=name))
                        notifier.stopping(f"Stopping ({name}): closing streams, mDNS goodbye")
                        agent.stop()
                        break
                helpers.cancel_scope.cancel()
    finally:
        notifier.close()


# -- configuration with safe fallbacks --------------------------------------------------------


def load_with_fallback(
    candidates: Sequence[Path], overrides: dict[str, object] | None = None
) -> tuple[config_module.Config, Path | None, list[str]]:
    """The first candidate that exists and is valid, else built-in defaults — never an error.

    Returns (config, the file used or None, problems found on the way) so a bad edit on the
    boot partition is reported and the agent still comes up instead of boot-looping.
    """
    problems: list[str] = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            return config_module.load(path, dict(overrides or {})), path, problems
        except config_module.ConfigError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc.strerror})")
    try:
        return config_module.load(None, dict(overrides or {})), None, problems
    except config_module.ConfigError as exc:
        problems.append(str(exc))
        return config_module.load(None, None), None, problems


# -- command line: python -m agent.service run|selftest ---------------------------------------


def run_main(argv: Sequence[str]) -> int:
    """The agent as a systemd service; same options as `buttons-agent`.

    Without --config the first valid file of SERVICE_CONFIG_CANDIDATES is used, and a broken
    one is logged and skipped (safe defaults rather than a restart loop).
    """
    from agent.cli import _agent_parser, config_overrides

    args = _agent_parser().parse_args(argv)
    overrides = config_overrides(args)
    if args.config is not None:
        try:
            config = config_module.load(args.config, overrides)
        except config_module.ConfigError as exc:
            print(f"buttons-agent: {exc}", file=sys.stderr)
            return EXIT_USAGE
        used, problems = args.config, list[str]()
    else:
        config, used, problems = load_with_fallback(SERVICE_CONFIG_CANDIDATES, overrides)
    return serve(config, config_file=used, problems=problems)


def serve(
    config: config_module.Config,
    on_ready: Callable[[Agent], None] | None = None,
    *,
    config_file: Path | None = None,
    problems: Sequence[str] = (),
) -> int:
    """Build the agent from `config` and run it as a service until SIGTERM/SIGINT; the exit
    code for the command line. Shared by `buttons-agent` and `python -m agent.service run`."""
    from agent import logs
    from agent.security.keys import IdentityError
    from agent.security.truststore import TrustStoreError

    logs.setup(config.log_level)
    # systemd's watchdog kills with SIGABRT: print where the wedged loop was stuck.
    faulthandler.enable()
    for problem in problems:
        log.error(kv("config-rejected", problem=problem, action="using the next candidate"))
    log.info(kv("config", file=config_file or "<built-in defaults>"))
    try:
        agent = Agent(config)
    except (IdentityError, TrustStoreError, OSError) as exc:
        print(f"buttons-agent: {exc} (state_dir = {config.state_dir})", file=sys.stderr)
        return EXIT_FAILED
    try:
        ready = None if on_ready is None else partial(on_ready, agent)
        trio.run(run_service, agent, ready)
    except OSError as exc:
        print(f"buttons-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _load_for_boot(command: str, config: Path | None) -> tuple[config_module.Config, str, bool]:
    """(config, where it came from, whether a file was skipped) for a boot-time command; each
    skipped file is reported on stderr, for the journal."""
    candidates = [config] if config else SERVICE_CONFIG_CANDIDATES
    loaded, used, problems = load_with_fallback(candidates)
    for problem in problems:
        print(f"buttons-agent {command}: skipped: {problem}", file=sys.stderr)
    return loaded, str(used) if used else "the built-in defaults", bool(problems)


def _boot_parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m agent.service {command}", description=description
    )
    parser.add_argument("--config", type=Path, help="read this file instead of the candidates")
    return parser


def wifi_main(argv: Sequence[str]) -> int:
    """Write the wpa_supplicant file from the `[wifi]` table of the first valid config file.

    If a file had to be skipped for a mistake, an existing Wi-Fi file is kept rather than
    removed: a typo elsewhere in the boot file must not take the device off the network.
    """
    from agent import wifi

    parser = _boot_parser(
        "wifi", "Write the wpa_supplicant file from the [wifi] table of the config."
    )
    parser.add_argument("--output", type=Path, default=wifi.WPA_CONF_PATH)
    args = parser.parse_args(list(argv))
    config, source, skipped = _load_for_boot("wifi", args.config)
    if skipped and not config.wifi.enabled:
        print(f"buttons-agent wifi: kept {args.output} as it was (see above)")
        return EXIT_OK
    try:
        print(f"buttons-agent wifi: {wifi.apply(config.wifi, source, args.output)}")
    except (wifi.WifiSettingError, OSError) as exc:
        print(f"buttons-agent wifi: {source}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def ir_pins_main(argv: Sequence[str]) -> int:
    """Write config.txt's IR overlay lines from the `[ir]` table of the first valid config
    file; with --reboot, reboot once when config.txt changed (the firmware reads it only at
    power-on).

    If a file had to be skipped for a mistake, the lines are kept: a typo elsewhere in the
    boot file must not move the pins back to the defaults.
    """
    from agent import ir_pins

    parser = _boot_parser("ir-pins", "Set config.txt's IR overlays from the [ir] table.")
    parser.add_argument("--config-txt", type=Path, default=ir_pins.CONFIG_TXT_PATH)
    parser.add_argument("--firmware-custom", type=Path, default=ir_pins.FIRMWARE_CUSTOM_PATH)
    parser.add_argument("--reboot", action="store_true", help="reboot if config.txt changed")
    parser.add_argument("--reboot-marker", type=Path, default=ir_pins.REBOOT_MARKER_PATH)
    parser.add_argument("--reboot-command", default="systemctl --no-block reboot")
    args = parser.parse_args(list(argv))
    config, source, skipped = _load_for_boot("ir-pins", args.config)
    if skipped:
        print(f"buttons-agent ir-pins: kept the IR overlay lines of {args.config_txt} (see above)")
        return EXIT_OK
    gpio = config.gpio
    taken = {
        "gpio.pair_button_pin": gpio.pair_button_pin,
        "gpio.status_led_pin": gpio.status_led_pin,
    }
    try:
        applied = ir_pins.apply(
            config.ir, source, taken if gpio.enabled else {}, args.config_txt, args.firmware_custom
        )
        print(f"buttons-agent ir-pins: {applied.message}")
        if args.reboot and ir_pins.may_reboot_for(applied, args.reboot_marker):
            print("buttons-agent ir-pins: rebooting once for the firmware to apply it")
            subprocess.run(shlex.split(args.reboot_command), check=True)
        elif args.reboot and applied.changed:
            print(
                f"buttons-agent ir-pins: {args.config_txt} lost these lines since the last "
                "reboot for them: not rebooting again",
                file=sys.stderr,
            )
            return EXIT_FAILED
    except (ir_pins.IrSettingError, OSError, subprocess.CalledProcessError) as exc:
        print(f"buttons-agent ir-pins: {source}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[Sequence[str]], int]] = {
        "run": run_main,
        "wifi": wifi_main,
        "ir-pins": ir_pins_main,
    }
    from agent.selftest.runner import selftest_main

    commands["selftest"] = selftest_main
    if not args or args[0] not in commands:
        print(f"usage: python -m agent.service {{{'|'.join(commands)}}} [options]", file=sys.stderr)
        return EXIT_USAGE
    return commands[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())

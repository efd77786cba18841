"""A private Prosody for tests and benchmarks: loopback only, its own data dir and port.

The server-mediated path (phone → XMPP server → bot → TV) is the baseline the link-local
path is measured against, and hybrid mode's tests need a real server too.

XEP-0198 stream management (mod_smacks, shipped with Prosody 0.12) is on for the VirtualHost:
a host-level `modules_enabled` adds to the global list, which subclasses may rewrite.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

READY_TIMEOUT = 15.0
DOMAIN = "localhost"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _lua_string(value: str) -> str:
    if any(c in value for c in '"\\\n'):
        raise ValueError(f"refusing to put {value!r} into a Prosody config string")
    return f'"{value}"'


class PrivateProsody:
    """`with PrivateProsody(tmpdir) as server: server.register("anna", "secret")`."""

    def __init__(
        self,
        directory: Path,
        *,
        require_encryption: bool = False,
        log_level: str = "info",
        hibernation_seconds: int = 600,
    ) -> None:
        if shutil.which("prosody") is None:
            raise RuntimeError("prosody is not installed (Debian package 'prosody')")
        self.directory = directory
        self.port = free_port()
        self.domain = DOMAIN
        self.require_encryption = require_encryption
        if log_level not in ("debug", "info", "warn", "error"):
            raise ValueError(f"not a Prosody log level: {log_level!r}")
        self.log_level = log_level
        #: How long a dropped XEP-0198 session waits for its client to resume it.
        self.hibernation_seconds = int(hibernation_seconds)
        self.config_path = directory / "prosody.cfg.lua"
        self.log_path = directory / "prosody.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        encryption = "true" if self.require_encryption else "false"
        lines = [
            f"data_path = {_lua_string(str(data))}",
            f"pidfile = {_lua_string(str(self.directory / 'prosody.pid'))}",
            "run_as_root = true",
            f"log = {{ {self.log_level} = {_lua_string(str(self.log_path))} }}",
            'c2s_interfaces = { "127.0.0.1" }',
            f"c2s_ports = {{ {self.port} }}",
            "s2s_ports = { }",
            "http_ports = { }",
            "https_ports = { }",
            "c2s_direct_tls_ports = { }",
            f"c2s_require_encryption = {encryption}",
            "allow_unencrypted_plain_auth = true",
            'authentication = "internal_plain"',
            'modules_enabled = { "roster", "saslauth", "disco", "ping", "posix" }',
            'modules_disabled = { "s2s", "http", "tls" }',
            "daemonize = false",
            f"smacks_hibernation_time = {self.hibernation_seconds}",
            f"VirtualHost {_lua_string(self.domain)}",
            '    modules_enabled = { "smacks" }',
        ]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self) -> None:
        self._write_config()
        self._process = subprocess.Popen(
            ["prosody", "--config", str(self.config_path), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prosody exited at start; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"prosody did not listen on {self.port} in {READY_TIMEOUT:.0f} s")

    def register(self, user: str, password: str) -> str:
        """Create an account; returns its JID."""
        subprocess.run(
            [
                "prosodyctl",
                "--config",
                str(self.config_path),
                "register",
                user,
                self.domain,
                password,
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return f"{user}@{self.domain}"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL, as in a crash: no stream errors, no closing tags, sessions forgotten."""
        process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        self.stop()  # reaps the process

    def __enter__(self) -> PrivateProsody:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

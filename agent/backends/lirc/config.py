"""Configuration of the LIRC backend and the IR passthrough (the `[lirc]` table)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.backends.keymap import KeyBinding


@dataclass(frozen=True, slots=True)
class PassthroughConfig:
    """Keys from a physical remote, decoded by lircd, pressed as Buttons (`[lirc.passthrough]`).

    Exactly one consumer may act on a key: enable this only if Kodi's own LIRC support (or
    anything else reading lircd) is off, or every key fires twice.
    """

    enabled: bool = False
    #: lircd.conf remote names to accept; empty accepts every remote.
    remotes: list[str] = field(default_factory=list)
    #: A held key repeats only after it has been down this long (kernel default 0.5 s).
    repeat_delay: float = 0.5
    #: At most one repeated press per this many seconds.
    repeat_interval: float = 0.125
    #: A fresh press of the same key within this many seconds of its previous frame is a
    #: duplicate (Harmony-style remotes send a code 3–4 times; RC6 toggles look like presses).
    min_gap: float = 0.2


@dataclass(frozen=True, slots=True)
class LircConfig:
    #: lircd's socket: a path (`/var/run/lirc/lircd`) or `host:port` for `lircd --listen`.
    address: str = "/var/run/lirc/lircd"
    #: The lircd.conf remote that IR blasts use for buttons without their own binding.
    remote: str = ""
    #: Buttons this backend sends. Empty: every button of the key map that the remote has
    #: (checked with LIST). Listed buttons must all exist, or start-up fails naming them.
    buttons: list[str] = field(default_factory=list)
    #: Extra or overriding key bindings (`[[lirc.keys]] button = "power" key = "KEY_POWER2"`).
    keys: list[KeyBinding] = field(default_factory=list)
    command_timeout: float = 3.0
    #: How long start-up waits for lircd before going on with the backend unavailable.
    startup_timeout: float = 5.0
    #: Reconnect delays double from `backoff_initial` up to `backoff_max` seconds.
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    passthrough: PassthroughConfig = field(default_factory=PassthroughConfig)

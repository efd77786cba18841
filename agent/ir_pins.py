"""IR pins from the agent's config file: the `[ir]` table → the Pi's config.txt overlays.

The IR receiver module and the IR LED are kernel drivers (gpio-ir-recv, gpio-ir-tx) bound to
device-tree nodes that the Pi's firmware adds at power-on from config.txt's `dtoverlay=` lines
(the image's overlays `buttons-ir-receiver` and `buttons-ir-transmitter`, parameter
`gpio_pin`). So that the pins are set where every other setting is, in `buttons-agent.toml`
on the boot partition, the Pi image runs `python -m agent.service ir-pins` early at boot: it
rewrites those two lines in config.txt and in /etc/default/raspi-firmware-custom (from which
Debian's raspi-firmware rewrites config.txt on every kernel update), and the firmware uses
them from the next power-on: the unit reboots once when config.txt changed.

Only the lines of our two overlays are touched; every other line of both files stays as the
user left it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.security.atomic import atomic_write

CONFIG_TXT_PATH = Path("/boot/firmware/config.txt")
FIRMWARE_CUSTOM_PATH = Path("/etc/default/raspi-firmware-custom")
#: The overlay lines a reboot was last made for: never a second reboot for the same lines.
REBOOT_MARKER_PATH = Path("/var/lib/buttons-image/ir-pins-rebooted-for")
RECEIVER_OVERLAY = "buttons-ir-receiver"
TRANSMITTER_OVERLAY = "buttons-ir-transmitter"
#: The pins the overlays use without a gpio_pin parameter (image/overlays/*.dts).
DEFAULT_PINS = {RECEIVER_OVERLAY: 18, TRANSMITTER_OVERLAY: 17}
_OUR_LINE = re.compile(rf"dtoverlay=({RECEIVER_OVERLAY}|{TRANSMITTER_OVERLAY})(,.*)?")
_PIN_NAME = re.compile(r"GPIO(\d{1,2})")
#: BCM GPIO2–27 are on the 40-pin header; 0 and 1 belong to the HAT ID EEPROM.
_HEADER_PINS = range(2, 28)


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply` did: the overlay lines, whether config.txt changed, a sentence for logs."""

    lines: list[str]
    changed: bool
    message: str


@dataclass(frozen=True, slots=True)
class IrConfig:
    """`[ir]`: where the IR receiver module and the IR LED are wired (BCM names; "" = none)."""

    #: The receiver module's output (TSOP38238 or similar).
    receiver_pin: str = "GPIO18"
    #: The IR LED's driver transistor.
    transmitter_pin: str = "GPIO17"


class IrSettingError(ValueError):
    """An `[ir]` value the overlays cannot take; names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"key 'ir.{key}': {problem}. Fix: {fix}")
        self.key = key


def _pin_number(key: str, name: str) -> int | None:
    if name == "":
        return None
    match = _PIN_NAME.fullmatch(name)
    if match is None or int(match.group(1)) not in _HEADER_PINS:
        raise IrSettingError(
            key,
            f"{name!r} is not a GPIO pin of the 40-pin header",
            'give its BCM name, "GPIO2" to "GPIO27" (e.g. "GPIO23"), or "" for none',
        )
    return int(match.group(1))


def overlay_lines(ir: IrConfig, taken: dict[str, str] | None = None) -> list[str]:
    """config.txt's lines for `ir`: a receiver, then a transmitter, each unless disabled.

    `taken` maps other settings' keys to the pins they use ("gpio.pair_button_pin": "GPIO27"):
    a pin shared with one of them, or by both IR devices, is refused.
    """
    users = dict(taken or {})
    lines = []
    for key, overlay in (
        ("receiver_pin", RECEIVER_OVERLAY),
        ("transmitter_pin", TRANSMITTER_OVERLAY),
    ):
        name = getattr(ir, key)
        pin = _pin_number(key, name)
        if pin is None:
            continue
        clash = next((other for other, used in users.items() if used == name), None)
        if clash is not None:
            raise IrSettingError(key, f"{name} is also {clash}", "wire them to different pins")
        users[f"ir.{key}"] = name
        suffix = "" if pin == DEFAULT_PINS[overlay] else f",gpio_pin={pin}"
        lines.append(f"dtoverlay={overlay}{suffix}")
    return lines


def with_overlays(text: str, lines: list[str]) -> str:
    """`text` (a config.txt) with our overlay lines replaced by `lines`, where they were.

    Where the file had none of ours, `lines` go at its end.
    """
    kept: list[str] = []
    insert_at: int | None = None
    for line in text.splitlines():
        if _OUR_LINE.fullmatch(line.strip()):
            insert_at = len(kept) if insert_at is None else insert_at
            continue
        kept.append(line)
    at = len(kept) if insert_at is None else insert_at
    new = [*kept[:at], *lines, *kept[at:]]
    return "\n".join(new) + "\n" if new else ""


def apply(
    ir: IrConfig,
    source: str,
    taken: dict[str, str] | None = None,
    config_txt: Path = CONFIG_TXT_PATH,
    firmware_custom: Path = FIRMWARE_CUSTOM_PATH,
) -> Applied:
    """Write the overlay lines into both files.

    Raises IrSettingError before writing anything if a value is wrong.
    """
    lines = overlay_lines(ir, taken)
    changed = False
    for path in (firmware_custom, config_txt):
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = with_overlays(old, lines)
        if new != old:
            # The file's own mode: on the FAT boot partition it is fixed by the mount options,
            # and a chmod to anything else fails.
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
            atomic_write(path, new.encode(), mode=mode)
            changed = changed or path == config_txt
    wanted = ", ".join(lines) or "no IR overlays"
    if changed:
        said = f"{config_txt} now has {wanted} (from {source}); the firmware reads it at boot"
    else:
        said = f"{config_txt} already has {wanted} (from {source})"
    return Applied(lines, changed, said)


def may_reboot_for(applied: Applied, marker: Path = REBOOT_MARKER_PATH) -> bool:
    """Whether to reboot for `applied`; records the lines, so that the same lines never get a
    second reboot (a config.txt that does not keep our lines must not make a boot loop)."""
    wanted = "\n".join(applied.lines) + "\n"
    if not applied.changed or (marker.exists() and marker.read_text(encoding="utf-8") == wanted):
        return False
    atomic_write(marker, wanted.encode(), mode=0o644)
    return True

"""Wi-Fi from the agent's config file: the `[wifi]` table → a wpa_supplicant configuration.

On the Pi image the user types the network name and passphrase into `buttons-agent.toml` on
the SD card's FAT partition; at boot, before `wpa_supplicant@wlan0`, the image runs
`python -m agent.service wifi`, which writes `/etc/wpa_supplicant/wpa_supplicant-wlan0.conf`.

The file never holds the passphrase: it holds the 256-bit PSK derived from it (IEEE 802.11i
PBKDF2, what `wpa_passphrase` computes), and the SSID in hex, so no quoting rule of the
wpa_supplicant format can be broken by a name with quotes or newlines.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from agent.security.atomic import atomic_write

WPA_CONF_PATH = Path("/etc/wpa_supplicant/wpa_supplicant-wlan0.conf")
#: The first line of every file we write; a file without it is the user's and is left alone.
MARKER = "# Written by buttons-agent from the [wifi] table"
_HEX_PSK = re.compile(r"[0-9a-fA-F]{64}")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True, slots=True)
class WifiConfig:
    """`[wifi]`: the wireless network the device joins (none while `ssid` is "")."""

    #: The network name, as phones show it.
    ssid: str = ""
    #: WPA2 passphrase (8–63 characters) or the 64-hex-digit PSK; "" for an open network.
    psk: str = ""
    #: ISO 3166 country code (e.g. "DE"): which channels the radio may use.
    country: str = ""
    #: The network does not broadcast its name.
    hidden: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.ssid)


class WifiSettingError(ValueError):
    """A `[wifi]` value wpa_supplicant would reject; names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"key 'wifi.{key}': {problem}. Fix: {fix}")
        self.key = key


def derive_psk(passphrase: str, ssid: str) -> str:
    """The WPA2 pre-shared key for a passphrase (IEEE 802.11i-2004 H.4: PBKDF2-HMAC-SHA1)."""
    key = hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32)
    return key.hex()


def _checked_psk(wifi: WifiConfig) -> str | None:
    """The PSK in hex, or None for an open network."""
    if not wifi.psk:
        return None
    if _HEX_PSK.fullmatch(wifi.psk):
        return wifi.psk.lower()
    if not 8 <= len(wifi.psk) <= 63 or not all(" " <= c <= "~" for c in wifi.psk):
        raise WifiSettingError(
            "psk",
            f"a WPA2 passphrase is 8-63 printable ASCII characters (got {len(wifi.psk)})",
            "copy it from the router's label, or give the 64-hex-digit key",
        )
    return derive_psk(wifi.psk, wifi.ssid)


def wpa_supplicant_conf(wifi: WifiConfig, source: str) -> str:
    """The wpa_supplicant configuration for `wifi` (which must be enabled)."""
    ssid = wifi.ssid.encode()
    if not 1 <= len(ssid) <= 32:
        raise WifiSettingError(
            "ssid", f"a network name is 1-32 bytes (got {len(ssid)})", "check the name"
        )
    if wifi.country and not _COUNTRY.fullmatch(wifi.country):
        raise WifiSettingError(
            "country", f"{wifi.country!r} is not a two-letter country code", 'e.g. "DE" or "US"'
        )
    psk = _checked_psk(wifi)
    lines = [
        MARKER,
        f"# ({source}); edit that file, not this one: it is rewritten at every boot.",
        "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev",
        "update_config=0",
    ]
    if wifi.country:
        lines.append(f"country={wifi.country}")
    network = [f"ssid={ssid.hex()}"]
    network += [f"psk={psk}", "key_mgmt=WPA-PSK"] if psk else ["key_mgmt=NONE"]
    if wifi.hidden:
        network.append("scan_ssid=1")
    lines += ["network={", *(f"\t{line}" for line in network), "}"]
    return "\n".join(lines) + "\n"


def apply(wifi: WifiConfig, source: str, path: Path = WPA_CONF_PATH) -> str:
    """Write (or, without an SSID, remove our) wpa_supplicant file; returns what was done.

    A file the user wrote by hand (no MARKER) is never overwritten or removed.
    """
    ours = not path.exists() or path.read_text(encoding="utf-8").startswith(MARKER)
    if not wifi.enabled:
        if path.exists() and ours:
            path.unlink()
            return f"no [wifi] in {source}: removed {path}"
        return f"no [wifi] in {source}: nothing to do"
    conf = wpa_supplicant_conf(wifi, source)
    if not ours:
        return f"{path} was written by hand: left alone (remove it to use [wifi] from {source})"
    atomic_write(path, conf.encode(), mode=0o600)
    security = "open network" if "key_mgmt=NONE" in conf else "WPA2-PSK"
    return f"wrote {path} for network {wifi.ssid!r} ({security}) from {source}"

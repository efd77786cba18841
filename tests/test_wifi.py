"""`[wifi]` → wpa_supplicant file, checked against Debian's wpa_passphrase and wpa_supplicant."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from agent import service, wifi
from agent.wifi import WifiConfig, WifiSettingError

# Debian's wpasupplicant (`make test` installs it).
WPA_PASSPHRASE = shutil.which("wpa_passphrase") or "/usr/bin/wpa_passphrase"
WPA_SUPPLICANT = shutil.which("wpa_supplicant") or "/usr/sbin/wpa_supplicant"


def test_psk_matches_the_ieee_802_11i_test_vector() -> None:
    # IEEE 802.11i-2004, H.4.1.
    assert derive("password", "IEEE") == (
        "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
    )


def derive(passphrase: str, ssid: str) -> str:
    return wifi.derive_psk(passphrase, ssid)


@settings(max_examples=15, deadline=None)
@given(
    passphrase=hs.text(
        hs.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=63
    ),
    ssid=hs.text(hs.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32),
)
def test_psk_is_what_wpa_passphrase_computes(passphrase: str, ssid: str) -> None:
    printed = subprocess.run(
        [WPA_PASSPHRASE, ssid, passphrase], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    match = re.search(r"^\tpsk=([0-9a-f]{64})$", printed, re.MULTILINE)
    assert match is not None, printed
    assert derive(passphrase, ssid) == match.group(1)


def accepted_by_wpa_supplicant(conf: Path) -> str:
    """wpa_supplicant's debug output for `conf` (driver none on loopback: parse, don't join)."""
    result = subprocess.run(
        ["timeout", "3", WPA_SUPPLICANT, "-D", "none", "-i", "lo", "-c", str(conf), "-dd"],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Failed to read or parse configuration" not in output, output
    return output


@pytest.mark.parametrize(
    "network",
    [
        WifiConfig(ssid="Home", psk="correct horse battery", country="DE"),
        WifiConfig(ssid='quote " and\nnewline', psk="a" * 64, hidden=True),
        WifiConfig(ssid="Café open"),
    ],
    ids=["wpa2", "awkward-name-hex-key", "open"],
)
def test_wpa_supplicant_reads_the_file_and_sees_the_network(
    tmp_path: Path, network: WifiConfig
) -> None:
    conf = tmp_path / "wpa.conf"
    print(wifi.apply(network, "test.toml", conf))
    assert conf.stat().st_mode & 0o777 == 0o600
    text = conf.read_text(encoding="utf-8")
    assert "correct horse" not in text  # the passphrase itself is never written
    output = accepted_by_wpa_supplicant(conf)
    assert "id=0 ssid=" in output
    assert ("key_mgmt: 0x2" in output) == bool(network.psk)  # WPA-PSK
    assert ("scan_ssid=1" in output) == network.hidden


@pytest.mark.parametrize(
    ("network", "key"),
    [
        (WifiConfig(ssid="x" * 33, psk="long enough"), "ssid"),
        (WifiConfig(ssid="Home", psk="short"), "psk"),
        (WifiConfig(ssid="Home", psk="x" * 64), "psk"),  # 64 characters but not hex
        (WifiConfig(ssid="Home", psk="caf\u00e9 au lait"), "psk"),
        (WifiConfig(ssid="Home", psk="long enough", country="Germany"), "country"),
    ],
)
def test_bad_values_name_the_key_and_write_nothing(
    tmp_path: Path, network: WifiConfig, key: str
) -> None:
    conf = tmp_path / "wpa.conf"
    with pytest.raises(WifiSettingError, match=f"wifi.{key}.*Fix: ") as raised:
        wifi.apply(network, "test.toml", conf)
    assert raised.value.key == key
    assert not conf.exists()


def test_no_ssid_removes_our_file_but_never_a_hand_written_one(tmp_path: Path) -> None:
    conf = tmp_path / "wpa.conf"
    wifi.apply(WifiConfig(ssid="Home", psk="long enough"), "test.toml", conf)
    assert "removed" in wifi.apply(WifiConfig(), "test.toml", conf)
    assert not conf.exists()
    conf.write_text('network={\n\tssid="mine"\n}\n', encoding="utf-8")
    assert "left alone" in wifi.apply(WifiConfig(ssid="Home", psk="long enough"), "t", conf)
    assert "nothing to do" in wifi.apply(WifiConfig(), "test.toml", conf)
    assert "mine" in conf.read_text(encoding="utf-8")


def test_the_boot_command_reads_the_wifi_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = tmp_path / "buttons-agent.toml"
    boot.write_text('name = "tv"\n[wifi]\nssid = "Home"\npsk = "long enough"\n', "utf-8")
    conf = tmp_path / "wpa.conf"
    assert service.main(["wifi", "--config", str(boot), "--output", str(conf)]) == 0
    assert f"ssid={b'Home'.hex()}" in conf.read_text(encoding="utf-8")
    assert "wrote" in capsys.readouterr().out


def test_a_typo_elsewhere_in_the_boot_file_keeps_the_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = tmp_path / "buttons-agent.toml"
    conf = tmp_path / "wpa.conf"
    wifi.apply(WifiConfig(ssid="Home", psk="long enough"), str(boot), conf)
    before = conf.read_text(encoding="utf-8")
    boot.write_text('nmae = "tv"\n[wifi]\nssid = "Home"\npsk = "long enough"\n', "utf-8")
    assert service.main(["wifi", "--config", str(boot), "--output", str(conf)]) == 0
    assert conf.read_text(encoding="utf-8") == before
    err = capsys.readouterr().err
    assert "nmae" in err
    assert "did you mean 'name'" in err


def test_a_bad_wifi_value_fails_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = tmp_path / "buttons-agent.toml"
    boot.write_text('[wifi]\nssid = "Home"\npsk = "short"\n', "utf-8")
    conf = tmp_path / "wpa.conf"
    assert service.main(["wifi", "--config", str(boot), "--output", str(conf)]) == 1
    err = capsys.readouterr().err
    assert str(boot) in err
    assert "wifi.psk" in err
    assert not conf.exists()

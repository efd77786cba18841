"""`[ir]` → config.txt's overlay lines (agent/ir_pins.py) and the boot command around it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent import ir_pins, service
from agent.ir_pins import IrConfig, IrSettingError

OVERLAYS = Path(__file__).parents[1] / "image" / "overlays"
# config.txt as Debian's raspi-firmware writes it, with the image's custom lines appended.
CONFIG_TXT = """\
# Do not modify this file!
arm_64bit=1
enable_uart=1
kernel=vmlinuz-6.1.0-50-arm64
initramfs initrd.img-6.1.0-50-arm64
# buttons-agent: IR receiver and LED
dtoverlay=buttons-ir-receiver
dtoverlay=buttons-ir-transmitter
dtoverlay=vc4-kms-v3d
"""


def test_default_pins_need_no_parameters() -> None:
    assert ir_pins.overlay_lines(IrConfig()) == [
        "dtoverlay=buttons-ir-receiver",
        "dtoverlay=buttons-ir-transmitter",
    ]


def test_other_pins_become_the_overlays_gpio_pin_parameter() -> None:
    lines = ir_pins.overlay_lines(IrConfig(receiver_pin="GPIO23", transmitter_pin="GPIO24"))
    assert lines == [
        "dtoverlay=buttons-ir-receiver,gpio_pin=23",
        "dtoverlay=buttons-ir-transmitter,gpio_pin=24",
    ]


def test_an_empty_pin_means_no_such_device() -> None:
    assert ir_pins.overlay_lines(IrConfig(transmitter_pin="")) == ["dtoverlay=buttons-ir-receiver"]
    assert ir_pins.overlay_lines(IrConfig(receiver_pin="", transmitter_pin="")) == []


@pytest.mark.parametrize("name", ["18", "gpio18", "GPIO1", "GPIO28", "BOARD12", "GPIO 18"])
def test_a_pin_that_is_not_on_the_header_names_the_key_and_the_fix(name: str) -> None:
    with pytest.raises(IrSettingError) as caught:
        ir_pins.overlay_lines(IrConfig(receiver_pin=name))
    assert caught.value.key == "receiver_pin"
    assert "key 'ir.receiver_pin'" in str(caught.value)
    assert '"GPIO2" to "GPIO27"' in str(caught.value)


def test_one_pin_for_two_devices_is_refused() -> None:
    with pytest.raises(IrSettingError, match=r"GPIO18 is also ir\.receiver_pin"):
        ir_pins.overlay_lines(IrConfig(transmitter_pin="GPIO18"))
    taken = {"gpio.pair_button_pin": "GPIO27", "gpio.status_led_pin": "GPIO17"}
    with pytest.raises(IrSettingError, match=r"GPIO17 is also gpio\.status_led_pin"):
        ir_pins.overlay_lines(IrConfig(), taken)


def test_only_our_lines_change_and_they_stay_where_they_were() -> None:
    lines = ["dtoverlay=buttons-ir-receiver,gpio_pin=23"]
    new = ir_pins.with_overlays(CONFIG_TXT, lines)
    assert new.splitlines() == [
        "# Do not modify this file!",
        "arm_64bit=1",
        "enable_uart=1",
        "kernel=vmlinuz-6.1.0-50-arm64",
        "initramfs initrd.img-6.1.0-50-arm64",
        "# buttons-agent: IR receiver and LED",
        "dtoverlay=buttons-ir-receiver,gpio_pin=23",
        "dtoverlay=vc4-kms-v3d",
    ]
    assert ir_pins.with_overlays(new, lines) == new


def test_a_file_without_our_lines_gets_them_at_the_end() -> None:
    assert ir_pins.with_overlays("arm_64bit=1\n", ["dtoverlay=buttons-ir-receiver"]) == (
        "arm_64bit=1\ndtoverlay=buttons-ir-receiver\n"
    )
    assert ir_pins.with_overlays("", []) == ""


def write_files(tmp_path: Path) -> tuple[Path, Path]:
    config_txt = tmp_path / "config.txt"
    config_txt.write_text(CONFIG_TXT)
    config_txt.chmod(0o755)  # as on the FAT boot partition (umask=0022)
    custom = tmp_path / "raspi-firmware-custom"
    custom.write_text("dtoverlay=buttons-ir-receiver\ndtoverlay=buttons-ir-transmitter\n")
    custom.chmod(0o644)
    return config_txt, custom


def test_apply_writes_both_files_and_keeps_their_modes(tmp_path: Path) -> None:
    config_txt, custom = write_files(tmp_path)
    moved = IrConfig(receiver_pin="GPIO23")
    applied = ir_pins.apply(moved, "boot.toml", None, config_txt, custom)
    assert applied.changed
    assert applied.lines == [
        "dtoverlay=buttons-ir-receiver,gpio_pin=23",
        "dtoverlay=buttons-ir-transmitter",
    ]
    assert "dtoverlay=buttons-ir-receiver,gpio_pin=23" in config_txt.read_text().splitlines()
    assert custom.read_text().splitlines()[0] == "dtoverlay=buttons-ir-receiver,gpio_pin=23"
    assert (config_txt.stat().st_mode & 0o777, custom.stat().st_mode & 0o777) == (0o755, 0o644)
    assert not ir_pins.apply(moved, "boot.toml", None, config_txt, custom).changed


def test_a_bad_value_writes_nothing(tmp_path: Path) -> None:
    config_txt, custom = write_files(tmp_path)
    with pytest.raises(IrSettingError):
        ir_pins.apply(IrConfig(transmitter_pin="GPIO99"), "boot.toml", None, config_txt, custom)
    assert config_txt.read_text() == CONFIG_TXT


@pytest.mark.parametrize("overlay", [ir_pins.RECEIVER_OVERLAY, ir_pins.TRANSMITTER_OVERLAY])
def test_the_parameter_we_write_is_one_the_overlay_has(overlay: str, tmp_path: Path) -> None:
    if shutil.which("dtc") is None:
        pytest.fail("dtc is missing (Debian package: device-tree-compiler)")
    dtbo = tmp_path / f"{overlay}.dtbo"
    compiled = subprocess.run(
        ["dtc", "-@", "-I", "dts", "-O", "dtb", "-o", dtbo, OVERLAYS / f"{overlay}.dts"],
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr
    parameters = subprocess.run(
        ["fdtget", "-p", dtbo, "/__overrides__"], capture_output=True, text=True, check=True
    ).stdout.split()
    line = next(
        line
        for line in ir_pins.overlay_lines(IrConfig(receiver_pin="GPIO5", transmitter_pin="GPIO6"))
        if line.startswith(f"dtoverlay={overlay},")
    )
    for parameter in line.split(",")[1:]:
        assert parameter.split("=")[0] in parameters
    # And the pin it moves from is the one the overlay uses without it.
    cells = subprocess.run(
        ["fdtget", "-t", "u", dtbo, f"/fragment@1/__overlay__/{overlay}", "gpios"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(cells[1]) == ir_pins.DEFAULT_PINS[overlay]


def boot_command(tmp_path: Path, toml: str, *extra: str) -> tuple[int, Path, Path]:
    config_txt, custom = (tmp_path / "config.txt", tmp_path / "raspi-firmware-custom")
    if not config_txt.exists():
        config_txt, custom = write_files(tmp_path)
    boot = tmp_path / "buttons-agent.toml"
    boot.write_text(toml)
    args = ["ir-pins", "--config", str(boot), "--config-txt", str(config_txt)]
    args += ["--firmware-custom", str(custom), *extra]
    return service.main(args), config_txt, custom


def test_boot_command_reboots_once_for_new_pins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rebooted = tmp_path / "rebooted"
    reboot = ["--reboot", "--reboot-marker", str(tmp_path / "marker")]
    reboot += ["--reboot-command", f"touch {rebooted}"]
    moved = '[ir]\ntransmitter_pin = "GPIO24"\n'
    code, config_txt, _ = boot_command(tmp_path, moved, *reboot)
    assert code == 0
    assert rebooted.exists()
    assert "dtoverlay=buttons-ir-transmitter,gpio_pin=24" in config_txt.read_text()
    assert "rebooting once" in capsys.readouterr().out
    # The next boot finds the lines in place: no second reboot.
    rebooted.unlink()
    assert boot_command(tmp_path, moved, *reboot)[0] == 0
    assert not rebooted.exists()
    # Something put the old lines back (not us): rebooting again would loop, so it fails.
    config_txt.write_text(CONFIG_TXT)
    assert boot_command(tmp_path, moved, *reboot)[0] == 1
    assert not rebooted.exists()
    assert "not rebooting again" in capsys.readouterr().err


def test_boot_command_with_default_pins_changes_nothing(tmp_path: Path) -> None:
    rebooted = tmp_path / "rebooted"
    code, config_txt, _ = boot_command(
        tmp_path, 'name = "tv"\n', "--reboot", "--reboot-marker", str(tmp_path / "m"),
        "--reboot-command", f"touch {rebooted}",
    )  # fmt: skip
    assert code == 0
    assert config_txt.read_text() == CONFIG_TXT
    assert not rebooted.exists()


def test_a_typo_elsewhere_in_the_boot_file_keeps_the_pins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, config_txt, _ = boot_command(tmp_path, '[ir]\nreceiver_pin = "GPIO23"\nnmae = "x"\n')
    assert code == 0
    assert config_txt.read_text() == CONFIG_TXT
    assert "kept the IR overlay lines" in capsys.readouterr().out


def test_a_bad_pin_fails_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, config_txt, _ = boot_command(tmp_path, '[ir]\nreceiver_pin = "GPIO40"\n')
    assert code == 1
    assert config_txt.read_text() == CONFIG_TXT
    err = capsys.readouterr().err
    assert "buttons-agent.toml" in err
    assert "key 'ir.receiver_pin'" in err


def test_the_pair_button_pin_is_checked_only_when_gpio_is_on(tmp_path: Path) -> None:
    toml = '[ir]\nreceiver_pin = "GPIO27"\ntransmitter_pin = ""\n'
    assert boot_command(tmp_path, toml)[0] == 0
    assert boot_command(tmp_path, toml + "[gpio]\nenabled = true\n")[0] == 1

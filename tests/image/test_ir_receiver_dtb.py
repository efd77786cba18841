"""image/buttons-ir-receiver-dtb: the IR receiver node it writes into Raspberry Pi DTBs.

The device trees here are compiled by `dtc` from a small source with the same shape as the
Pi's (the GPIO controller at /soc/gpio@7e200000, referred to by phandle). The image build
checks the real Debian DTBs the same way after running the script on them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "image" / "buttons-ir-receiver-dtb"

PI_LIKE = """/dts-v1/;
/ {
    compatible = "raspberrypi,3-model-b", "brcm,bcm2837";
    #address-cells = <1>;
    #size-cells = <1>;
    soc {
        #address-cells = <1>;
        #size-cells = <1>;
        gpio: gpio@7e200000 {
            compatible = "brcm,bcm2835-gpio";
            reg = <0x7e200000 0xb4>;
            gpio-controller;
            #gpio-cells = <2>;
            %s
        };
    };
    leds {
        compatible = "gpio-leds";
        led-act { gpios = <&gpio 29 0>; };
    };
};
"""


def compile_dtb(directory: Path, name: str, *, controller_extra: str = "") -> Path:
    source = directory / (name + ".dts")
    source.write_text(PI_LIKE % controller_extra, encoding="utf-8")
    dtb = directory / name
    subprocess.run(["dtc", "-I", "dts", "-O", "dtb", "-o", dtb, source], check=True)
    source.unlink()
    return dtb


def fdtget(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    return subprocess.run(
        ["fdtget", "-t", kind, dtb, node, prop], check=True, capture_output=True, text=True
    ).stdout.strip()


def run_script(firmware: Path, defaults: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BUTTONS_IR_DEFAULTS": str(defaults or firmware / "no-such-file")}
    return subprocess.run([SCRIPT, firmware], capture_output=True, text=True, env=env)


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    compile_dtb(tmp_path, "bcm2837-rpi-3-b.dtb")
    compile_dtb(tmp_path, "bcm2711-rpi-4-b.dtb")
    return tmp_path


def test_every_pi_dtb_gets_a_receiver_on_the_controllers_phandle(firmware: Path) -> None:
    result = run_script(firmware)
    assert result.returncode == 0, result.stderr
    assert "IR receiver on GPIO18 in 2 device trees" in result.stdout
    for dtb in firmware.glob("*.dtb"):
        phandle = fdtget(dtb, "/soc/gpio@7e200000", "phandle", "u")
        assert fdtget(dtb, "/ir-receiver", "compatible") == "gpio-ir-receiver"
        assert fdtget(dtb, "/ir-receiver", "gpios", "u") == f"{phandle} 18 1"
        # What was there is untouched.
        assert fdtget(dtb, "/leds/led-act", "gpios", "u") == f"{phandle} 29 0"


def test_running_again_changes_nothing(firmware: Path) -> None:
    assert run_script(firmware).returncode == 0
    first = {dtb.name: dtb.read_bytes() for dtb in firmware.glob("*.dtb")}
    assert run_script(firmware).returncode == 0
    assert {dtb.name: dtb.read_bytes() for dtb in firmware.glob("*.dtb")} == first


def test_the_pin_comes_from_the_defaults_file(firmware: Path, tmp_path: Path) -> None:
    defaults = tmp_path / "buttons-ir"
    defaults.write_text("IR_RECEIVER_GPIO=23\n", encoding="utf-8")
    assert run_script(firmware, defaults).returncode == 0
    dtb = firmware / "bcm2711-rpi-4-b.dtb"
    assert fdtget(dtb, "/ir-receiver", "gpios", "u").split()[1:] == ["23", "1"]


@pytest.mark.parametrize("pin", ["28", "GPIO18", ""])
def test_a_bad_pin_is_refused_with_the_file_and_the_fix(
    firmware: Path, tmp_path: Path, pin: str
) -> None:
    defaults = tmp_path / "buttons-ir"
    defaults.write_text(f"IR_RECEIVER_GPIO={pin}\n", encoding="utf-8")
    before = (firmware / "bcm2711-rpi-4-b.dtb").read_bytes()
    result = run_script(firmware, defaults)
    assert result.returncode == 1
    assert "IR_RECEIVER_GPIO" in result.stderr
    assert (firmware / "bcm2711-rpi-4-b.dtb").read_bytes() == before


def test_no_pi_dtbs_is_an_error(tmp_path: Path) -> None:
    result = run_script(tmp_path)
    assert result.returncode == 1
    assert "no Raspberry Pi DTBs" in result.stderr


def test_a_dtb_without_the_pi_gpio_controller_is_an_error(tmp_path: Path) -> None:
    dtb = compile_dtb(tmp_path, "bcm2837-rpi-3-b.dtb")
    subprocess.run(["fdtput", "-t", "s", dtb, "/soc/gpio@7e200000", "compatible", "x"], check=True)
    result = run_script(tmp_path)
    assert result.returncode == 1
    assert "has no BCM GPIO controller" in result.stderr

"""The image's device-tree overlays (image/overlays/*.dts) on Debian's own Raspberry Pi DTBs.

On a Pi the firmware applies config.txt's `dtoverlay=` lines to the board's DTB before the
kernel starts, resolving the overlay's labels through the DTB's __symbols__; here libfdt's
`fdtoverlay` does the same. Debian builds its DTBs without __symbols__, which
image/buttons-dtb-symbols adds; these tests run it on copies of the real DTBs first.

The DTBs are the ones in Debian bookworm's arm64 kernel package: image/debian-dtbs.sh fetches
them once into build/debian-dtbs/ (image/build.sh leaves a copy there too). The test session
runs in a private network namespace without the Debian mirror, so when nothing is cached the
tests fail and say to run that script first.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).parents[2]
OVERLAYS = PROJECT / "image" / "overlays"
SYMBOLS_HOOK = PROJECT / "image" / "buttons-dtb-symbols"
FETCH = PROJECT / "image" / "debian-dtbs.sh"
GPIO = "/soc/gpio@7e200000"
RECEIVER = "/buttons-ir-receiver"
RECEIVER_PINS = f"{GPIO}/buttons-ir-receiver-pins"
# The boards the image is for: the DTB set must cover them.
BOARDS = {
    "bcm2711-rpi-4-b.dtb",
    "bcm2711-rpi-400.dtb",
    "bcm2711-rpi-cm4-io.dtb",
    "bcm2837-rpi-3-b.dtb",
    "bcm2837-rpi-3-b-plus.dtb",
    "bcm2837-rpi-3-a-plus.dtb",
    "bcm2837-rpi-zero-2-w.dtb",
}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


def fdtget(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    result = run("fdtget", "-t", kind, dtb, node, prop)
    assert result.returncode == 0, f"fdtget {dtb.name} {node} {prop}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="session")
def debian_dtbs() -> Path:
    for tool in ("dtc", "fdtoverlay", "fdtget", "fdtput"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (Debian package: device-tree-compiler)")
    result = run(FETCH)
    if result.returncode != 0:
        pytest.fail(
            f"Debian's Raspberry Pi DTBs are not cached in build/debian-dtbs/ and could not be "
            f"fetched from inside the tests' network namespace:\n{result.stderr.strip()}\n"
            f"Run `{FETCH.relative_to(PROJECT)}` once with network access (or image/build.sh)."
        )
    directory = Path(result.stdout.strip())
    missing = BOARDS - {dtb.name for dtb in directory.glob("*.dtb")}
    assert not missing, f"{directory} lacks {sorted(missing)}"
    return directory


@pytest.fixture(scope="session")
def receiver_overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_overlay(OVERLAYS / "buttons-ir-receiver.dts", tmp_path_factory.mktemp("dtbo"))


def compile_overlay(source: Path, directory: Path) -> Path:
    dtbo = directory / (source.stem + ".dtbo")
    result = run("dtc", "-@", "-I", "dts", "-O", "dtb", "-o", dtbo, source)
    assert result.returncode == 0, result.stderr
    # Warnings too: the build compiles the same way and a warning is a mistake in the source.
    assert result.stderr == "", result.stderr
    return dtbo


@pytest.fixture
def firmware(debian_dtbs: Path, tmp_path: Path) -> Path:
    """A copy of Debian's DTBs, as /boot/firmware has them after raspi-firmware's hook."""
    directory = tmp_path / "firmware"
    directory.mkdir()
    for dtb in debian_dtbs.glob("*.dtb"):
        shutil.copy(dtb, directory)
    return directory


def add_symbols(firmware: Path) -> subprocess.CompletedProcess[str]:
    return run(SYMBOLS_HOOK, firmware)


def apply(dtb: Path, dtbo: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return run("fdtoverlay", "-i", dtb, "-o", out, dtbo)


@pytest.mark.parametrize("source", sorted(OVERLAYS.glob("*.dts")), ids=lambda p: p.stem)
def test_every_overlay_compiles_without_warnings_and_with_symbols(
    source: Path, tmp_path: Path
) -> None:
    dtbo = compile_overlay(source, tmp_path)
    # -@: the labels it uses from the base DTB are left as fixups for the firmware.
    assert fdtget(dtbo, "/__fixups__", "gpio") != ""


def test_debian_dtbs_alone_cannot_take_an_overlay(
    firmware: Path, receiver_overlay: Path, tmp_path: Path
) -> None:
    # Why the image needs buttons-dtb-symbols: no __symbols__, so `gpio` cannot be resolved.
    # (Should a later Debian kernel build its DTBs with -@, this fails: the hook is then moot.)
    for dtb in sorted(firmware.glob("*.dtb")):
        assert run("fdtget", "-p", dtb, "/__symbols__").returncode != 0, dtb.name
        result = apply(dtb, receiver_overlay, tmp_path / "merged.dtb")
        assert result.returncode != 0, f"{dtb.name} took the overlay without our symbols"


def test_receiver_overlay_on_every_debian_pi_dtb(
    firmware: Path, receiver_overlay: Path, tmp_path: Path
) -> None:
    result = add_symbols(firmware)
    assert result.returncode == 0, result.stderr
    dtbs = sorted(firmware.glob("*.dtb"))
    assert f"added to {len(dtbs)} of {len(dtbs)} device trees" in result.stdout
    for dtb in dtbs:
        merged = tmp_path / dtb.name
        result = apply(dtb, receiver_overlay, merged)
        assert result.returncode == 0, f"{dtb.name}: {result.stderr}"
        gpio_phandle = fdtget(merged, GPIO, "phandle", "u")
        assert fdtget(merged, RECEIVER, "compatible") == "gpio-ir-receiver", dtb.name
        # GPIO18 on the SoC's GPIO controller, active low.
        assert fdtget(merged, RECEIVER, "gpios", "u") == f"{gpio_phandle} 18 1", dtb.name
        assert fdtget(merged, RECEIVER, "status") == "okay"
        # The pin set up as an input with its pull-up, through the controller's pinctrl.
        pins_phandle = fdtget(merged, RECEIVER_PINS, "phandle", "u")
        assert fdtget(merged, RECEIVER, "pinctrl-0", "u") == pins_phandle
        assert fdtget(merged, RECEIVER_PINS, "brcm,pins", "u") == "18"
        assert fdtget(merged, RECEIVER_PINS, "brcm,function", "u") == "0"
        assert fdtget(merged, RECEIVER_PINS, "brcm,pull", "u") == "2"
        # The board's own tree is still all there.
        before = set(run("fdtget", "-l", dtb, "/").stdout.split())
        assert before <= set(run("fdtget", "-l", merged, "/").stdout.split()), dtb.name


def overrides(dtbo: Path, name: str) -> list[tuple[int, str]]:
    """The (phandle, "property:offset") pairs of an __overrides__ parameter."""
    raw = bytes(int(byte, 16) for byte in fdtget(dtbo, "/__overrides__", name, "bx").split())
    pairs = []
    while raw:
        phandle = int.from_bytes(raw[:4], "big")
        target, _, raw = raw[4:].partition(b"\0")
        pairs.append((phandle, target.decode()))
    return pairs


def test_gpio_pin_parameter_moves_both_the_driver_and_the_pin_setup(
    firmware: Path, receiver_overlay: Path, tmp_path: Path
) -> None:
    receiver = "/fragment@1/__overlay__/buttons-ir-receiver"
    pins = "/fragment@0/__overlay__/buttons-ir-receiver-pins"
    phandle = {
        node: int(fdtget(receiver_overlay, node, "phandle", "u")) for node in (receiver, pins)
    }
    assert overrides(receiver_overlay, "gpio_pin") == [
        (phandle[receiver], "gpios:4"),
        (phandle[pins], "brcm,pins:0"),
    ]
    # What the firmware does for `dtoverlay=buttons-ir-receiver,gpio_pin=23`: write 23 into
    # each 32-bit cell at those byte offsets, then apply the overlay.
    moved = tmp_path / "moved.dtbo"
    shutil.copy(receiver_overlay, moved)
    for node, target in ((receiver, "gpios:4"), (pins, "brcm,pins:0")):
        prop, offset = target.split(":")
        cells = fdtget(moved, node, prop, "u").split()
        cells[int(offset) // 4] = "23"
        assert run("fdtput", "-t", "u", moved, node, prop, *cells).returncode == 0
    assert add_symbols(firmware).returncode == 0
    merged = tmp_path / "merged.dtb"
    assert apply(firmware / "bcm2711-rpi-4-b.dtb", moved, merged).returncode == 0
    assert fdtget(merged, RECEIVER, "gpios", "u").split()[1:] == ["23", "1"]
    assert fdtget(merged, RECEIVER_PINS, "brcm,pins", "u") == "23"


def test_symbols_hook_runs_again_without_changing_anything(firmware: Path) -> None:
    assert add_symbols(firmware).returncode == 0
    first = {dtb.name: dtb.read_bytes() for dtb in firmware.glob("*.dtb")}
    result = add_symbols(firmware)
    assert result.returncode == 0, result.stderr
    assert "added to 0 of" in result.stdout
    assert {dtb.name: dtb.read_bytes() for dtb in firmware.glob("*.dtb")} == first


def test_symbols_hook_leaves_a_dtb_with_its_own_gpio_symbol_alone(firmware: Path) -> None:
    # A DTB built with dtc -@ (Raspberry Pi's own) has the label already: keep whatever it says.
    dtb = firmware / "bcm2711-rpi-4-b.dtb"
    assert run("fdtput", "-c", dtb, "/__symbols__").returncode == 0
    assert run("fdtput", "-t", "s", dtb, "/__symbols__", "gpio", "/soc/elsewhere").returncode == 0
    before = dtb.read_bytes()
    assert add_symbols(firmware).returncode == 0
    assert dtb.read_bytes() == before


def test_symbols_hook_refuses_a_dtb_without_the_pi_gpio_controller(firmware: Path) -> None:
    dtb = firmware / "bcm2837-rpi-3-b.dtb"
    assert run("fdtput", "-t", "s", dtb, GPIO, "compatible", "x").returncode == 0
    result = add_symbols(firmware)
    assert result.returncode == 1
    assert "has no BCM GPIO controller" in result.stderr


def test_symbols_hook_without_pi_dtbs_is_an_error(tmp_path: Path) -> None:
    result = add_symbols(tmp_path)
    assert result.returncode == 1
    assert "no Raspberry Pi DTBs" in result.stderr

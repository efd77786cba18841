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
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).parents[2]
OVERLAYS = PROJECT / "image" / "overlays"
SYMBOLS_HOOK = PROJECT / "image" / "buttons-dtb-symbols"
FETCH = PROJECT / "image" / "debian-dtbs.sh"
GPIO = "/soc/gpio@7e200000"


@dataclass(frozen=True)
class Overlay:
    """One of image/overlays/: the node it adds, its driver and how it sets up its pin."""

    name: str
    compatible: str
    pin: int
    gpio_flags: int  # 0 active high, 1 active low
    function: int  # BCM pin function: 0 input, 1 output
    pull: int  # 0 none, 2 pull-up

    @property
    def node(self) -> str:
        return f"/{self.name}"

    @property
    def pins(self) -> str:
        return f"{GPIO}/{self.name}-pins"

    @property
    def source(self) -> Path:
        return OVERLAYS / f"{self.name}.dts"


RECEIVER = Overlay("buttons-ir-receiver", "gpio-ir-receiver", 18, 1, 0, 2)
TRANSMITTER = Overlay("buttons-ir-transmitter", "gpio-ir-tx", 17, 0, 1, 0)
IR_OVERLAYS = [RECEIVER, TRANSMITTER]
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
    return compile_overlay(RECEIVER.source, tmp_path_factory.mktemp("dtbo"))


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


def assert_overlay_applied(merged: Path, overlay: Overlay, pin: int, board: str) -> None:
    gpio_phandle = fdtget(merged, GPIO, "phandle", "u")
    assert fdtget(merged, overlay.node, "compatible") == overlay.compatible, board
    # The pin on the SoC's GPIO controller, with the overlay's polarity.
    assert (
        fdtget(merged, overlay.node, "gpios", "u") == f"{gpio_phandle} {pin} {overlay.gpio_flags}"
    )
    assert fdtget(merged, overlay.node, "status") == "okay"
    # The pin's function and pull set through the controller's pinctrl.
    assert fdtget(merged, overlay.node, "pinctrl-0", "u") == fdtget(
        merged, overlay.pins, "phandle", "u"
    )
    assert fdtget(merged, overlay.pins, "brcm,pins", "u") == str(pin)
    assert fdtget(merged, overlay.pins, "brcm,function", "u") == str(overlay.function)
    assert fdtget(merged, overlay.pins, "brcm,pull", "u") == str(overlay.pull)


@pytest.mark.parametrize("overlay", IR_OVERLAYS, ids=lambda o: o.name)
def test_overlay_on_every_debian_pi_dtb(firmware: Path, overlay: Overlay, tmp_path: Path) -> None:
    dtbo = compile_overlay(overlay.source, tmp_path)
    result = add_symbols(firmware)
    assert result.returncode == 0, result.stderr
    dtbs = sorted(firmware.glob("*.dtb"))
    assert f"added to {len(dtbs)} of {len(dtbs)} device trees" in result.stdout
    for dtb in dtbs:
        merged = tmp_path / dtb.name
        result = apply(dtb, dtbo, merged)
        assert result.returncode == 0, f"{dtb.name}: {result.stderr}"
        assert_overlay_applied(merged, overlay, overlay.pin, dtb.name)
        # The board's own tree is still all there.
        before = set(run("fdtget", "-l", dtb, "/").stdout.split())
        assert before <= set(run("fdtget", "-l", merged, "/").stdout.split()), dtb.name


def test_receiver_and_transmitter_together(firmware: Path, tmp_path: Path) -> None:
    # config.txt names both: applied one after the other, each keeps its own pin.
    assert add_symbols(firmware).returncode == 0
    merged = tmp_path / "merged.dtb"
    shutil.copy(firmware / "bcm2837-rpi-3-b.dtb", merged)
    for overlay in IR_OVERLAYS:
        result = apply(merged, compile_overlay(overlay.source, tmp_path), merged)
        assert result.returncode == 0, result.stderr
    for overlay in IR_OVERLAYS:
        assert_overlay_applied(merged, overlay, overlay.pin, merged.name)


def overrides(dtbo: Path, name: str) -> list[tuple[int, str]]:
    """The (phandle, "property:offset") pairs of an __overrides__ parameter."""
    raw = bytes(int(byte, 16) for byte in fdtget(dtbo, "/__overrides__", name, "bx").split())
    pairs = []
    while raw:
        phandle = int.from_bytes(raw[:4], "big")
        target, _, raw = raw[4:].partition(b"\0")
        pairs.append((phandle, target.decode()))
    return pairs


@pytest.mark.parametrize("overlay", IR_OVERLAYS, ids=lambda o: o.name)
def test_gpio_pin_parameter_moves_both_the_driver_and_the_pin_setup(
    firmware: Path, overlay: Overlay, tmp_path: Path
) -> None:
    dtbo = compile_overlay(overlay.source, tmp_path)
    node = f"/fragment@1/__overlay__/{overlay.name}"
    pins = f"/fragment@0/__overlay__/{overlay.name}-pins"
    phandle = {path: int(fdtget(dtbo, path, "phandle", "u")) for path in (node, pins)}
    assert overrides(dtbo, "gpio_pin") == [
        (phandle[node], "gpios:4"),
        (phandle[pins], "brcm,pins:0"),
    ]
    # What the firmware does for `dtoverlay=<name>,gpio_pin=23`: write 23 into each 32-bit
    # cell at those byte offsets, then apply the overlay.
    for path, target in ((node, "gpios:4"), (pins, "brcm,pins:0")):
        prop, offset = target.split(":")
        cells = fdtget(dtbo, path, prop, "u").split()
        cells[int(offset) // 4] = "23"
        assert run("fdtput", "-t", "u", dtbo, path, prop, *cells).returncode == 0
    assert add_symbols(firmware).returncode == 0
    merged = tmp_path / "merged.dtb"
    assert apply(firmware / "bcm2711-rpi-4-b.dtb", dtbo, merged).returncode == 0
    assert_overlay_applied(merged, overlay, 23, merged.name)


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

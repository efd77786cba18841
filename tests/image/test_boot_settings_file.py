"""image/buttons-agent.toml, the settings file on the image's boot partition."""

from __future__ import annotations

import re
from pathlib import Path

from agent import config, ir_pins

BOOT_FILE = Path(__file__).parents[2] / "image" / "buttons-agent.toml"
BUILD = Path(__file__).parents[2] / "image" / "build.sh"
# A commented-out example: "# key = value" or "# [table]", before its own "# comment".
EXAMPLE = re.compile(r"# (\[\w+\]|\w+ = (?:\"[^\"]*\"|[^\s#]+))")


def test_as_shipped_it_is_all_defaults() -> None:
    assert config.load(BOOT_FILE) == config.load(None)


def test_every_example_uncommented_is_valid(tmp_path: Path) -> None:
    lines = [
        match.group(1)
        for line in BOOT_FILE.read_text().splitlines()
        if (match := EXAMPLE.match(line))
    ]
    assert "[ir]" in lines
    assert 'receiver_pin = "GPIO18"' in lines
    uncommented = tmp_path / "buttons-agent.toml"
    uncommented.write_text("\n".join(lines) + "\n")
    loaded = config.load(uncommented)
    assert loaded.name == "buttons"
    assert loaded.ir == ir_pins.IrConfig()


def test_the_ir_lines_the_image_is_built_with_are_the_defaults() -> None:
    # build.sh writes them; at first boot buttons-agent-ir-pins.service must find nothing to
    # change (no reboot) while [ir] is left commented out.
    built = [line for line in BUILD.read_text().splitlines() if line.startswith("dtoverlay=")]
    assert built == ir_pins.overlay_lines(ir_pins.IrConfig())

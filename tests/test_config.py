from __future__ import annotations

from pathlib import Path

import pytest

from agent import config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_demo_config_loads() -> None:
    loaded = config.load(config.DEMO_CONFIG_PATH)
    assert loaded.backend == "virtual"
    assert loaded.jid.startswith("buttons@")


def test_file_values_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'name = "den"\nport = 6000\n[kodi]\nhost = "10.0.0.5"\ncall_timeout = 2\n'
    )
    loaded = config.load(path, {"port": 7000, "kodi.transport": "http"})
    assert (loaded.name, loaded.port) == ("den", 7000)
    assert loaded.kodi.host == "10.0.0.5"
    assert loaded.kodi.call_timeout == 2.0  # an integer is a fine number
    assert loaded.kodi.transport == "http"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('port = "5298"', "port", ["expected an integer", "got str"]),
        ("port = true", "port", ["expected an integer"]),
        ('backend = "tivo"', "backend", ["one of 'virtual', 'kodi'"]),
        ('listen = "0.0.0.0"', "listen", ["a list of a string"]),
        ("prot = 1", "prot", ["unknown key", "did you mean 'port'"]),
        ('[kodi]\nhots = "x"', "kodi.hots", ["unknown key", "did you mean 'kodi.host'"]),
        ("kodi = 3", "kodi", ["expected a table"]),
    ],
)
def test_errors_name_file_key_and_fix(
    tmp_path: Path, text: str, key: str, words: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: key '{key}': ")
    assert "Fix: " in message
    for word in words:
        assert word in message


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "port = = 1"))

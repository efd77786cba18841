"""Identities on disk, and the trust store's atomic writes (crash between write and rename)."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.security.keys import IdentityError, load_or_create
from agent.security.truststore import TrustStore, TrustStoreError


def test_identity_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    home = tmp_path / "state"
    first = load_or_create(home, "buttons@tv", server=True)
    again = load_or_create(home, "buttons@tv", server=True)
    assert first.fingerprint == again.fingerprint
    assert len(first.fingerprint) == 64
    for path in (first.cert_path, first.key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_world_readable_key_is_refused(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path, "x", server=False)
    identity.key_path.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_or_create(tmp_path, "x", server=False)


def cert(tmp_path: Path, name: str) -> bytes:
    return load_or_create(tmp_path / name, name, server=False).cert_der


def test_add_find_revoke_by_name_and_fingerprint_prefix(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "peers.json")
    anna = store.add("anna", cert(tmp_path, "anna"))
    bob = store.add("bob", cert(tmp_path, "bob"))
    reopened = TrustStore(tmp_path / "peers.json")
    assert [p.name for p in reopened.peers] == ["anna", "bob"]
    assert reopened.find(anna.fingerprint) == anna
    assert reopened.revoke(bob.fingerprint[:12]) == [bob]
    assert reopened.revoke(bob.fingerprint[:4]) == []  # too short to be taken as a fingerprint
    assert reopened.revoke("anna") == [anna]
    assert reopened.peers == []
    assert store.reload_if_changed()
    assert store.peers == []


def test_a_crash_between_write_and_rename_leaves_the_old_store(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    store = TrustStore(path)
    store.add("anna", cert(tmp_path, "anna"))
    before = path.read_bytes()
    # A real crash: another process writes the new store and dies right before the rename.
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from agent.security.keys import load_or_create
        from agent.security.truststore import TrustStore
        store = TrustStore(Path({str(path)!r}))
        store.peers = []  # the new content would drop anna
        store.save(rename=lambda src, dst: os._exit(9))
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], check=False)
    assert crashed.returncode == 9
    assert path.read_bytes() == before
    assert [p.name for p in TrustStore(path).peers] == ["anna"]
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the crashed writer's temporary file is still there"
    store.add("bob", cert(tmp_path, "bob"))  # the next save cleans up after the crash
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert [p.name for p in TrustStore(path).peers] == ["anna", "bob"]


def test_an_exception_before_rename_leaves_the_old_store(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    store = TrustStore(path)
    store.add("anna", cert(tmp_path, "anna"))

    def power_cut(src: Path, dst: Path) -> None:
        raise OSError("power cut")

    store.peers = []
    with pytest.raises(OSError, match="power cut"):
        store.save(rename=power_cut)
    assert [p.name for p in TrustStore(path).peers] == ["anna"]


def test_a_corrupt_store_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    path.write_text("{not json")
    with pytest.raises(TrustStoreError, match="unreadable"):
        TrustStore(path)


def test_a_store_that_turns_unreadable_later_keeps_its_peers_until_it_reads_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "peers.json"
    store = TrustStore(path)
    store.add("anna", cert(tmp_path, "anna"))
    good = path.read_text()
    path.write_text("{half written")
    assert store.reload_if_changed() is False
    assert [p.name for p in store.peers] == ["anna"]
    path.write_text(good.replace('"name": "anna"', '"name": "bert"'))
    assert store.reload_if_changed() is True
    assert [p.name for p in store.peers] == ["bert"]

"""Signed-command counters: the phone reserves them in blocks, the agent spends each once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent.security import phone
from agent.security.linking import OLD_COUNTER, CounterStore, LinkError
from agent.security.phone import COUNTER_FILE, CounterReservation

FINGERPRINT = "ab" * 32


def saved_ceiling(home: Path) -> int:
    return int((home / COUNTER_FILE).read_text())


def frozen_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(phone.time, "time", lambda: seconds)


def test_a_block_is_written_once_and_handed_out_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen_clock(monkeypatch, 1000.0)  # 1 000 000 ms
    writes: list[Path] = []
    real_write = phone.atomic_write

    def counting_write(path: Path, *args: Any, **kwargs: Any) -> None:
        writes.append(path)
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(phone, "atomic_write", counting_write)
    reservation = CounterReservation(tmp_path, block=3)
    taken = [reservation.take() for _ in range(7)]
    assert taken == [1_000_000, 1_000_001, 1_000_002, 1_000_003, 1_000_004, 1_000_005, 1_000_006]
    assert len(writes) == 3  # blocks of 3: 7 counters need 3 reservations
    assert saved_ceiling(tmp_path) == 1_000_008  # reserved up to the end of the third block


def test_after_a_crash_the_unused_rest_of_a_block_is_skipped_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen_clock(monkeypatch, 1000.0)
    used = CounterReservation(tmp_path, block=10).take()
    restarted = CounterReservation(tmp_path, block=10)  # a new process, the same home
    assert restarted.take() == used + 10
    assert CounterReservation(tmp_path, block=1).take() == used + 20


def test_a_lost_counter_file_still_gives_counters_above_any_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen_clock(monkeypatch, 1000.0)
    earlier = CounterReservation(tmp_path).take()
    (tmp_path / COUNTER_FILE).unlink()
    frozen_clock(monkeypatch, 1001.0)  # a second later: the clock floor is above the block
    assert CounterReservation(tmp_path).take() > earlier


def test_an_unreadable_counter_file_is_an_error_not_a_reset(tmp_path: Path) -> None:
    (tmp_path / COUNTER_FILE).write_text("not a number\n")
    with pytest.raises(phone.AccountError, match="unreadable"):
        CounterReservation(tmp_path).take()


def test_the_agent_accepts_a_counter_once_even_from_racing_threads(tmp_path: Path) -> None:
    store = CounterStore(tmp_path / "counters.json")
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def spend() -> None:
        start.wait()
        try:
            store.accept(FINGERPRINT, 5)
            outcomes.append("accepted")
        except LinkError as exc:
            outcomes.append(exc.text)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["accepted"] + [OLD_COUNTER] * 7
    assert CounterStore(tmp_path / "counters.json").last(FINGERPRINT) == 5

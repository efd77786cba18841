"""SendLock: free → taken without a scheduler round trip; held → waiters in arrival order."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from agent.net.locks import SendLock


async def test_a_free_lock_is_taken_without_a_checkpoint() -> None:
    lock = SendLock()
    with trio.testing.assert_no_checkpoints():
        async with lock:
            pass
    # A plain trio.Lock does checkpoint: the reason SendLock exists.
    with pytest.raises(AssertionError), trio.testing.assert_no_checkpoints():
        async with trio.Lock():
            pass


async def test_holders_take_turns_in_arrival_order() -> None:
    lock = SendLock()
    order: list[str] = []

    async def writer(name: str) -> None:
        async with lock:
            order.append(f"{name} in")
            await trio.sleep(0.01)
            order.append(f"{name} out")

    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            nursery.start_soon(writer, name)
            await trio.testing.wait_all_tasks_blocked()
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]


async def test_a_semaphore_bounds_how_many_hold_it() -> None:
    bound = SendLock(trio.Semaphore(2))
    inside = most = 0

    async def call() -> None:
        nonlocal inside, most
        async with bound:
            inside += 1
            most = max(most, inside)
            await trio.sleep(0.01)
            inside -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(call)
    assert most == 2


async def test_a_lock_released_with_waiters_goes_to_the_first_waiter() -> None:
    lock = SendLock()
    got: list[str] = []

    async def waiter() -> None:
        async with lock:
            got.append("waiter")

    async with lock, trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        # Still ours; the waiter is queued. Once we let go, it must not be overtaken.
        await lock.__aexit__(None, None, None)
        with pytest.raises(trio.WouldBlock):
            lock._sync.acquire_nowait()
        await lock.__aenter__()  # waits its turn behind the waiter
        got.append("us again")
    assert got == ["waiter", "us again"]

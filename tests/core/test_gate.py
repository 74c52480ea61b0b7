"""The per-key admission gate (core/gate.py) that keeps a hot product's row lock queue short."""

from __future__ import annotations

import asyncio

import pytest

from payflow.core.gate import KeyedGate


async def test_at_most_limit_holders_per_key_and_keys_do_not_wait_for_each_other() -> None:
    gate = KeyedGate(limit=2)
    inside = {"hot": 0, "other": 0}
    most = {"hot": 0, "other": 0}
    release = asyncio.Event()

    async def hold(key: str) -> None:
        async with gate.admit(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            await release.wait()
            inside[key] -= 1

    holders = [asyncio.create_task(hold("hot")) for _ in range(10)]
    other = asyncio.create_task(hold("other"))
    for _ in range(20):  # let every task run up to where it waits (no clock involved)
        await asyncio.sleep(0)
    assert inside == {"hot": 2, "other": 1}  # 8 wait for "hot"; "other" went straight in
    release.set()
    await asyncio.gather(*holders, other)
    assert most == {"hot": 2, "other": 1}
    assert len(gate) == 0  # nothing is kept for idle keys


async def test_waiters_are_admitted_in_arrival_order() -> None:
    gate = KeyedGate(limit=1)
    order: list[int] = []
    release = asyncio.Event()

    async def hold(n: int) -> None:
        async with gate.admit("k"):
            order.append(n)
            await release.wait()

    tasks = []
    for n in range(5):
        tasks.append(asyncio.create_task(hold(n)))
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_a_failing_holder_frees_its_place() -> None:
    gate = KeyedGate(limit=1)
    with pytest.raises(RuntimeError):
        async with gate.admit("k"):
            raise RuntimeError("the purchase failed")
    async with asyncio.timeout(1):
        async with gate.admit("k"):
            pass
    assert len(gate) == 0


def test_a_gate_admits_someone() -> None:
    with pytest.raises(ValueError, match="at least one"):
        KeyedGate(limit=0)

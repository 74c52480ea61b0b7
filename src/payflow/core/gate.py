"""A per-key admission gate: at most N holders of one key at a time in this process.

Purchases of one product all need its row lock. Without a gate, every concurrent purchase of a hot
product waits in PostgreSQL's lock queue, and each commit wakes all the waiters to fight over the
row again: throughput falls as clients are added. With the gate, at most `limit` purchases per
process queue on the row and the others wait here, in FIFO order, costing nothing in the database.
The gate only orders work; correctness never depends on it (the row lock still decides).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Slot:
    semaphore: asyncio.Semaphore
    holders: int = 0  # admitted or waiting


class KeyedGate:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a gate must admit at least one holder")
        self._limit = limit
        self._slots: dict[Hashable, _Slot] = {}

    @contextlib.asynccontextmanager
    async def admit(self, key: Hashable) -> AsyncIterator[None]:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(asyncio.Semaphore(self._limit))
        slot.holders += 1
        try:
            async with slot.semaphore:
                yield
        finally:
            slot.holders -= 1
            if slot.holders == 0:
                del self._slots[key]

    def __len__(self) -> int:
        """How many keys are held or waited for now (0 when idle: nothing is kept)."""
        return len(self._slots)

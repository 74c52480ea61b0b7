"""The unit of work: one attempt at one write transaction.

`Database.transaction` makes a new `UnitOfWork` for every attempt (a conflict re-runs the work
from the start) and hands it to the work. It carries:

- `conn`, the transaction's connection;
- `after_commit(hook)`: work that must happen only once the transaction is durable (refresh a
  cache, count a metric, send a refund). Hooks run once, in order, after a successful commit, and
  never for an attempt that was rolled back or for an idempotent replay (which did no work).
  A failing hook is logged: the commit stands, so the caller still gets its result;
- `idempotency`, the request's idempotency guard when it has one: `Database.transaction` claims
  the key before the work and stores the response after it, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

AfterCommit = Callable[[], Awaitable[None]]

log = structlog.get_logger("payflow.db")


class IdempotencyGuard(Protocol):
    """What a transaction does with an idempotency key (core/idempotency/runner.py)."""

    async def enter(self, conn: AsyncConnection) -> None:
        """Claim the key, or raise the answer already stored under it."""

    async def leave(self, conn: AsyncConnection, result: Any) -> None:
        """Store the response made of the work's result under the key."""


class UnitOfWork:
    __slots__ = ("_hooks", "conn", "idempotency")

    def __init__(self, conn: AsyncConnection, idempotency: IdempotencyGuard | None = None) -> None:
        self.conn = conn
        self.idempotency = idempotency
        self._hooks: list[AfterCommit] = []

    def after_commit(self, hook: AfterCommit) -> None:
        self._hooks.append(hook)

    async def run_after_commit(self) -> None:
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            try:
                await hook()
            except Exception as exc:  # the transaction committed: its result stands
                log.error("db.after_commit_failed", error_type=type(exc).__name__, exc_info=exc)

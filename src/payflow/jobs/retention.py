"""Retention: when the database lets go of what it keeps only for a while (docs/operations.md).

- Idempotency keys whose first request died between its transactions (PROCESSING for more than
  STALE_IDEMPOTENCY) are released, so the client can retry with the same key:
  `release_stale_keys`.
- Finished idempotency records past their `expires_at` (core/idempotency RETENTION: docs/api.md keeps
  keys at least 24 hours), refresh tokens expired for more than REFRESH_TOKEN_GRACE, and processed
  webhook events received more than WEBHOOK_EVENT_RETENTION ago are deleted: `prune_expired`.

A key of POST /orders is held twice: by its idempotency record and by the order it placed
(`orders.idempotency_key`, unique per buyer). Whenever the record goes, the same transaction takes
the key off that order too; otherwise the next request with the key would collide with the order
on the unique constraint, for ever.

Rows go in batches of at most `batch_size`, one short transaction each, at most `max_batches` per
kind per call: a backlog is worked off over several calls and never holds locks for long.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.auth import repository as auth_repo
from payflow.core.db import Database
from payflow.core.idempotency import repository as idempotency_repo
from payflow.core.idempotency.repository import ReleasedKey
from payflow.core.tables import utcnow
from payflow.jobs import repository as jobs_repo
from payflow.orders import repository as orders_repo
from payflow.orders.records import CREATE_ORDER_ENDPOINT

# A gateway order's request spans two transactions around one gateway call (seconds at most):
# still PROCESSING after this long, it died between them.
STALE_IDEMPOTENCY = timedelta(minutes=5)
# An expired refresh token can never be used (its JWT `exp` is checked before the database is
# asked, without leeway); a day keeps recent sessions inspectable after an incident.
REFRESH_TOKEN_GRACE = timedelta(days=1)
# Far beyond Stripe's automatic retries (3 days), and as long as Stripe itself keeps events
# (30 days: nothing older can be re-sent), so the inbox still recognises any redelivery.
WEBHOOK_EVENT_RETENTION = timedelta(days=30)
BATCH_SIZE = 500
MAX_BATCHES = 20

log = structlog.get_logger("payflow.retention")

Batch = Callable[[AsyncConnection], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class PruneReport:
    idempotency_records: int
    refresh_tokens: int
    webhook_events: int


async def release_stale_keys(
    db: Database,
    *,
    older_than: timedelta = STALE_IDEMPOTENCY,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Free the keys of requests that died between their transactions; how many were freed."""

    async def batch(conn: AsyncConnection) -> int:
        released = await idempotency_repo.release_stale_batch(conn, older_than, batch_size)
        await _free_order_keys(conn, released)
        return len(released)

    freed = await _in_batches(db, batch, batch_size, max_batches)
    if freed:
        log.info("retention.keys_released", keys=freed)
    return freed


async def prune_expired(
    db: Database,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> PruneReport:
    """Delete what is past its retention; how many rows of each kind went."""
    now = now or utcnow()

    async def records(conn: AsyncConnection) -> int:
        pruned = await idempotency_repo.prune_batch(conn, now, batch_size)
        await _free_order_keys(conn, pruned)
        return len(pruned)

    async def tokens(conn: AsyncConnection) -> int:
        return await auth_repo.delete_expired_tokens(conn, now - REFRESH_TOKEN_GRACE, batch_size)

    async def events(conn: AsyncConnection) -> int:
        received_before = now - WEBHOOK_EVENT_RETENTION
        return await jobs_repo.delete_processed_events(conn, received_before, batch_size)

    report = PruneReport(
        idempotency_records=await _in_batches(db, records, batch_size, max_batches),
        refresh_tokens=await _in_batches(db, tokens, batch_size, max_batches),
        webhook_events=await _in_batches(db, events, batch_size, max_batches),
    )
    if report.idempotency_records or report.refresh_tokens or report.webhook_events:
        log.info(
            "retention.pruned",
            idempotency_records=report.idempotency_records,
            refresh_tokens=report.refresh_tokens,
            webhook_events=report.webhook_events,
        )
    return report


async def _free_order_keys(conn: AsyncConnection, released: Sequence[ReleasedKey]) -> None:
    held = [(key.user_id, key.key) for key in released if key.endpoint == CREATE_ORDER_ENDPOINT]
    await orders_repo.clear_idempotency_keys(conn, held)


async def _in_batches(db: Database, batch: Batch, batch_size: int, max_batches: int) -> int:
    """Run `batch` (one transaction each) until it deletes less than a full batch, at most
    `max_batches` times; the rows deleted in all."""
    total = 0
    for _ in range(max_batches):
        deleted = await db.transaction(lambda uow: batch(uow.conn))
        total += deleted
        if deleted < batch_size:
            break
    return total

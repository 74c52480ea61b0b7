"""Every SQL statement about webhook events and gateway refunds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.tables import upsert_capable_insert, utcnow
from payflow.payments.models import gateway_refunds, webhook_events

PENDING = "PENDING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"


async def record_event(
    conn: AsyncConnection, event_id: str, event_type: str, payload: dict[str, Any]
) -> bool:
    """Record a provider event; False if it was already processed. A concurrent delivery of the
    same event waits here on the unique index until the first one commits (then gets False). An
    event recorded as failed (`record_failure`, never processed) is taken up again."""
    now = utcnow()
    insert = upsert_capable_insert(conn, webhook_events).values(
        id=uuid.uuid4(),
        provider_event_id=event_id,
        type=event_type,
        payload=payload,
        received_at=now,
        created_at=now,
        updated_at=now,
    )
    statement = insert.on_conflict_do_update(
        index_elements=["provider_event_id"],
        set_={"received_at": now, "outcome": None, "updated_at": now},
        where=webhook_events.c.processed_at.is_(None),
    ).returning(webhook_events.c.id)
    return (await conn.execute(statement)).first() is not None


async def record_failure(
    conn: AsyncConnection, event_id: str, event_type: str, payload: dict[str, Any], outcome: str
) -> None:
    """Keep an event whose processing failed (and was rolled back), unprocessed: the audit sees
    what it announced, and a redelivery processes it again."""
    if await record_event(conn, event_id, event_type, payload):
        await conn.execute(
            sa.update(webhook_events)
            .where(webhook_events.c.provider_event_id == event_id)
            .values(outcome=outcome, updated_at=utcnow())
        )


async def finish_event(conn: AsyncConnection, event_id: str, outcome: str) -> None:
    now = utcnow()
    await conn.execute(
        sa.update(webhook_events)
        .where(webhook_events.c.provider_event_id == event_id)
        .values(processed_at=now, outcome=outcome, updated_at=now)
    )


@dataclass(frozen=True, slots=True)
class PendingRefund:
    order_id: uuid.UUID
    payment_intent_id: str
    amount: int
    attempts: int


async def add_refund(
    conn: AsyncConnection,
    *,
    order_id: uuid.UUID,
    payment_intent_id: str,
    amount: int,
    currency: str,
    reason: str,
) -> None:
    """Decide to refund an order's payment (at most once per order: unique on order_id); the
    first attempt is due at once."""
    now = utcnow()
    await conn.execute(
        upsert_capable_insert(conn, gateway_refunds)
        .values(
            id=uuid.uuid4(),
            order_id=order_id,
            payment_intent_id=payment_intent_id,
            amount=amount,
            currency=currency,
            reason=reason,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
    )


async def claim_due_refunds(
    conn: AsyncConnection,
    *,
    now: datetime,
    lease_until: datetime,
    order_ids: list[uuid.UUID] | None = None,
    limit: int = 50,
) -> list[PendingRefund]:
    """Take up to `limit` pending refunds whose attempt is due, oldest due first, and push their
    next attempt to `lease_until`: another process does not send them meanwhile, and one whose
    sender died is due again when the lease ends. Rows waiting out a backoff are not due, so
    refunds the gateway keeps refusing cannot starve the others."""
    due = (
        sa.select(gateway_refunds.c.id)
        .where(gateway_refunds.c.status == PENDING, gateway_refunds.c.next_attempt_at <= now)
        .order_by(gateway_refunds.c.next_attempt_at)
        .limit(limit)
    )
    if order_ids is not None:
        due = due.where(gateway_refunds.c.order_id.in_(order_ids))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)  # SQLite: one writer, nothing to skip
    rows = await conn.execute(
        sa.update(gateway_refunds)
        .where(gateway_refunds.c.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=lease_until)
        .returning(
            gateway_refunds.c.order_id,
            gateway_refunds.c.payment_intent_id,
            gateway_refunds.c.amount,
            gateway_refunds.c.attempts,
        )
    )
    return [PendingRefund(r.order_id, r.payment_intent_id, r.amount, r.attempts) for r in rows]


def _pending(order_id: uuid.UUID) -> sa.ColumnElement[bool]:
    return sa.and_(gateway_refunds.c.order_id == order_id, gateway_refunds.c.status == PENDING)


async def refund_done(conn: AsyncConnection, order_id: uuid.UUID, provider_refund_id: str) -> None:
    now = utcnow()
    await conn.execute(
        sa.update(gateway_refunds)
        .where(_pending(order_id))
        .values(
            status=SUCCEEDED,
            provider_refund_id=provider_refund_id,
            attempts=gateway_refunds.c.attempts + 1,
            last_error=None,
            next_attempt_at=None,
            finished_at=now,
            updated_at=now,
        )
    )


async def refund_retry_later(
    conn: AsyncConnection,
    order_id: uuid.UUID,
    error: str,
    now: datetime,
    next_attempt_at: datetime,
) -> None:
    await conn.execute(
        sa.update(gateway_refunds)
        .where(_pending(order_id))
        .values(
            attempts=gateway_refunds.c.attempts + 1,
            last_error=error,
            next_attempt_at=next_attempt_at,
            updated_at=now,
        )
    )


async def refund_failed(conn: AsyncConnection, order_id: uuid.UUID, error: str) -> bool:
    """The gateway refused the refund for good: it ends FAILED with the reason. False if it had
    already ended."""
    now = utcnow()
    result = await conn.execute(
        sa.update(gateway_refunds)
        .where(_pending(order_id))
        .values(
            status=FAILED,
            attempts=gateway_refunds.c.attempts + 1,
            last_error=error,
            next_attempt_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    return bool(result.rowcount)

"""Every SQL statement about webhook events and gateway refunds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.tables import upsert_capable_insert, utcnow
from payflow.payments.models import gateway_refunds, webhook_events

PENDING = "PENDING"
SUCCEEDED = "SUCCEEDED"


async def record_event(
    conn: AsyncConnection, event_id: str, event_type: str, payload: dict[str, Any]
) -> bool:
    """Record a provider event; False if it was already recorded. A concurrent delivery of the same
    event waits here on the unique index until the first one commits (then gets False)."""
    now = utcnow()
    statement = (
        upsert_capable_insert(conn, webhook_events)
        .values(
            id=uuid.uuid4(),
            provider_event_id=event_id,
            type=event_type,
            payload=payload,
            received_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider_event_id"])
        .returning(webhook_events.c.id)
    )
    return (await conn.execute(statement)).first() is not None


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


async def add_refund(
    conn: AsyncConnection,
    *,
    order_id: uuid.UUID,
    payment_intent_id: str,
    amount: int,
    currency: str,
    reason: str,
) -> None:
    """Decide to refund an order's payment (at most once per order: unique on order_id)."""
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
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
    )


async def pending_refunds(
    conn: AsyncConnection, *, order_ids: list[uuid.UUID] | None = None, limit: int = 50
) -> list[PendingRefund]:
    query = sa.select(
        gateway_refunds.c.order_id, gateway_refunds.c.payment_intent_id, gateway_refunds.c.amount
    ).where(gateway_refunds.c.status == PENDING)
    if order_ids is not None:
        query = query.where(gateway_refunds.c.order_id.in_(order_ids))
    rows = await conn.execute(query.order_by(gateway_refunds.c.created_at).limit(limit))
    return [PendingRefund(row.order_id, row.payment_intent_id, row.amount) for row in rows]


async def refund_done(conn: AsyncConnection, order_id: uuid.UUID, provider_refund_id: str) -> None:
    await conn.execute(
        sa.update(gateway_refunds)
        .where(gateway_refunds.c.order_id == order_id)
        .values(
            status=SUCCEEDED,
            provider_refund_id=provider_refund_id,
            attempts=gateway_refunds.c.attempts + 1,
            last_error=None,
            updated_at=utcnow(),
        )
    )


async def refund_failed(conn: AsyncConnection, order_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        sa.update(gateway_refunds)
        .where(gateway_refunds.c.order_id == order_id)
        .values(attempts=gateway_refunds.c.attempts + 1, last_error=error, updated_at=utcnow())
    )

"""Sending an order's gateway refunds through the payments refund outbox (payments/refunds.py),
and what the order learns when the gateway refuses one for good."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.orders import repository
from payflow.payments.refunds import send_pending_refunds
from payflow.wiring import AppContext


async def _note_refund_failed(conn: AsyncConnection, order_id: uuid.UUID, error: str) -> None:
    await repository.note_failure(conn, order_id, f"REFUND_FAILED: {error}")


async def send(ctx: AppContext, order_ids: list[uuid.UUID] | None = None) -> int:
    """Send the refunds that are due (of these orders, or all); returns how many succeeded."""
    return await send_pending_refunds(ctx, order_ids, on_given_up=_note_refund_failed)

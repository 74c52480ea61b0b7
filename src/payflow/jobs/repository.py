"""SQL of the retention job that no domain repository holds yet.

The webhook inbox belongs to payments; its deletion lives here only until payments/repository.py
takes it (that file is owned elsewhere for now)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.batches import delete_batch
from payflow.payments.models import webhook_events


async def delete_processed_events(
    conn: AsyncConnection, received_before: datetime, limit: int
) -> int:
    """Delete at most `limit` processed webhook events received before `received_before`. Events
    never processed (their processing failed: a redelivery takes them up again) are kept."""
    condition = sa.and_(
        webhook_events.c.received_at < received_before, webhook_events.c.processed_at.is_not(None)
    )
    return len(await delete_batch(conn, webhook_events, condition, limit))

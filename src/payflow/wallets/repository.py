"""Every SQL statement about wallets."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.tables import utcnow
from payflow.wallets.models import wallets


async def create_wallet(conn: AsyncConnection, user_id: uuid.UUID, currency: str) -> uuid.UUID:
    now = utcnow()
    wallet_id = uuid.uuid4()
    await conn.execute(
        sa.insert(wallets).values(
            id=wallet_id,
            user_id=user_id,
            balance=0,
            currency=currency,
            is_locked=False,
            version=0,
            created_at=now,
            updated_at=now,
        )
    )
    return wallet_id

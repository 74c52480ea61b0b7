"""Every SQL statement about refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.auth.models import refresh_tokens
from payflow.core.batches import delete_batch
from payflow.core.tables import utcnow


@dataclass(frozen=True, slots=True)
class StoredToken:
    id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID


async def insert_token(
    conn: AsyncConnection,
    *,
    token_id: uuid.UUID,
    token_hash: str,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    expires_at: datetime,
) -> None:
    now = utcnow()
    await conn.execute(
        sa.insert(refresh_tokens).values(
            id=token_id,
            token_hash=token_hash,
            family_id=family_id,
            user_id=user_id,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
    )


async def spend_token(
    conn: AsyncConnection, token_hash: str, replaced_by: uuid.UUID, now: datetime
) -> StoredToken | None:
    """Mark a live token spent, atomically: of two concurrent spends, only one gets the row."""
    result = await conn.execute(
        sa.update(refresh_tokens)
        .where(
            refresh_tokens.c.token_hash == token_hash,
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.expires_at > now,
        )
        .values(revoked_at=now, replaced_by=replaced_by, updated_at=now)
        .returning(refresh_tokens.c.id, refresh_tokens.c.user_id, refresh_tokens.c.family_id)
    )
    row = result.first()
    return StoredToken(id=row.id, user_id=row.user_id, family_id=row.family_id) if row else None


async def find_token(conn: AsyncConnection, token_hash: str) -> StoredToken | None:
    result = await conn.execute(
        sa.select(refresh_tokens.c.id, refresh_tokens.c.user_id, refresh_tokens.c.family_id).where(
            refresh_tokens.c.token_hash == token_hash
        )
    )
    row = result.first()
    return StoredToken(id=row.id, user_id=row.user_id, family_id=row.family_id) if row else None


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID) -> int:
    now = utcnow()
    result = await conn.execute(
        sa.update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now, updated_at=now)
    )
    return result.rowcount


async def delete_expired_tokens(conn: AsyncConnection, expired_before: datetime, limit: int) -> int:
    """Delete at most `limit` tokens that expired before `expired_before` (a batch)."""
    condition = refresh_tokens.c.expires_at < expired_before
    return len(await delete_batch(conn, refresh_tokens, condition, limit))

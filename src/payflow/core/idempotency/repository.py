"""The idempotency records' SQL: claim a key, store the response under it, read what is stored,
and forget keys (stale or past retention). Nothing here touches the cache, so a Redis outage cannot
weaken idempotency, and the records survive restarts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.batches import delete_batch
from payflow.core.idempotency.keys import (
    IdempotencyKeyInUse,
    IdempotencyKeyMismatch,
    IdempotencyScope,
    StoredResponse,
)
from payflow.core.idempotency_models import idempotency_records
from payflow.core.problems import PROBLEM_MEDIA_TYPE
from payflow.core.tables import upsert_capable_insert, utcnow

RETENTION = timedelta(hours=24)
# A record is PROCESSING while a request spanning several transactions (a gateway order) runs.
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"


async def claim(conn: AsyncConnection, scope: IdempotencyScope, state: str) -> bool:
    now = utcnow()
    statement = (
        upsert_capable_insert(conn, idempotency_records)
        .values(
            id=uuid.uuid4(),
            user_id=scope.user_id,
            endpoint=scope.endpoint,
            key=scope.key,
            request_hash=scope.request_hash,
            state=state,
            expires_at=now + RETENTION,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "endpoint", "key"])
        .returning(idempotency_records.c.id)
    )
    return (await conn.execute(statement)).first() is not None


async def store(conn: AsyncConnection, scope: IdempotencyScope, response: StoredResponse) -> None:
    await conn.execute(
        sa.update(idempotency_records)
        .where(
            idempotency_records.c.user_id == scope.user_id,
            idempotency_records.c.endpoint == scope.endpoint,
            idempotency_records.c.key == scope.key,
        )
        .values(
            state=COMPLETED,
            response_status=response.status,
            response_body=response.body,
            updated_at=utcnow(),
        )
    )


async def existing(conn: AsyncConnection, scope: IdempotencyScope) -> StoredResponse:
    """The stored outcome for a key this request could not claim."""
    row = (
        await conn.execute(
            sa.select(
                idempotency_records.c.request_hash,
                idempotency_records.c.state,
                idempotency_records.c.response_status,
                idempotency_records.c.response_body,
            ).where(
                idempotency_records.c.user_id == scope.user_id,
                idempotency_records.c.endpoint == scope.endpoint,
                idempotency_records.c.key == scope.key,
            )
        )
    ).one()
    if row.request_hash != scope.request_hash:
        raise IdempotencyKeyMismatch(
            "This Idempotency-Key was already used with a different request"
        )
    if row.state != COMPLETED or row.response_status is None:
        raise IdempotencyKeyInUse("The first request with this Idempotency-Key is still running")
    media = PROBLEM_MEDIA_TYPE if row.response_status >= 400 else "application/json"
    return StoredResponse(row.response_status, bytes(row.response_body), media, replayed=True)


async def existing_or_none(conn: AsyncConnection, scope: IdempotencyScope) -> StoredResponse | None:
    """The stored outcome under this key, if the key was used before."""
    found = (
        await conn.execute(
            sa.select(idempotency_records.c.id).where(
                idempotency_records.c.user_id == scope.user_id,
                idempotency_records.c.endpoint == scope.endpoint,
                idempotency_records.c.key == scope.key,
            )
        )
    ).first()
    return await existing(conn, scope) if found else None


async def unclaim(conn: AsyncConnection, scope: IdempotencyScope) -> None:
    await conn.execute(
        sa.delete(idempotency_records).where(
            idempotency_records.c.user_id == scope.user_id,
            idempotency_records.c.endpoint == scope.endpoint,
            idempotency_records.c.key == scope.key,
            idempotency_records.c.state == PROCESSING,
        )
    )


@dataclass(frozen=True, slots=True)
class ReleasedKey:
    """The scope of a deleted record: the key may be used again for a new request."""

    user_id: uuid.UUID
    endpoint: str
    key: str


async def release_stale_batch(
    conn: AsyncConnection, older_than: timedelta, limit: int
) -> list[ReleasedKey]:
    """Forget at most `limit` keys whose first request never finished (PROCESSING for longer than
    `older_than`: the process died between its transactions), so the client can retry them.
    Whatever else holds such a key must let go of it in the same transaction."""
    stale = sa.and_(
        idempotency_records.c.state == PROCESSING,
        idempotency_records.c.updated_at < utcnow() - older_than,
    )
    return await _delete_keys(conn, stale, limit)


async def prune_batch(conn: AsyncConnection, now: datetime, limit: int) -> list[ReleasedKey]:
    """Delete at most `limit` finished records past their `expires_at` (RETENTION after the
    request: docs/api.md keeps keys at least 24 hours). Whatever else holds such a key must let go of
    it in the same transaction."""
    expired = sa.and_(
        idempotency_records.c.state == COMPLETED, idempotency_records.c.expires_at < now
    )
    return await _delete_keys(conn, expired, limit)


async def _delete_keys(
    conn: AsyncConnection, condition: sa.ColumnElement[bool], limit: int
) -> list[ReleasedKey]:
    records = idempotency_records.c
    rows = await delete_batch(
        conn, idempotency_records, condition, limit, records.user_id, records.endpoint, records.key
    )
    return [ReleasedKey(row.user_id, row.endpoint, row.key) for row in rows]

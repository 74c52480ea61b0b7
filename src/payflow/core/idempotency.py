"""Idempotency for every money-moving POST (SPEC §4), built once.

A keyed request claims its key by inserting its record in the same database transaction as its
effect, and stores its response there too: the key, the effect and the response commit together or
not at all. A second request with the same key either finds the committed record (and replays its
response byte for byte) or, while the first is still in flight, waits on the unique index until the
first commits (then replays) or rolls back (then proceeds). Business failures are stored too, in a
transaction of their own after the failed one rolled back, so a replay returns the same error.
Validation failures never get this far and are not stored. Nothing here touches the cache, so a
Redis outage cannot weaken it, and the records survive restarts.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import Header
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from payflow.core.batches import delete_batch
from payflow.core.context import AppContext
from payflow.core.errors import DomainError, ServiceUnavailable, ValidationFailed
from payflow.core.idempotency_models import idempotency_records
from payflow.core.problems import PROBLEM_MEDIA_TYPE, STATUS_BY_CODE, problem_body
from payflow.core.tables import upsert_capable_insert, utcnow

RETENTION = timedelta(hours=24)
# A record is PROCESSING while a request spanning several transactions (a gateway order) runs.
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_PATTERN = re.compile(r"^[\x20-\x7e]{1,255}$")


class IdempotencyKeyMismatch(DomainError):
    code = "IDEMPOTENCY_KEY_MISMATCH"
    title = "This idempotency key was used for a different request"


class IdempotencyKeyInUse(DomainError):
    code = "IDEMPOTENCY_KEY_IN_USE"
    title = "A request with this idempotency key is still being processed"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    media_type: str = "application/json"
    replayed: bool = False

    def to_http(self) -> Response:
        headers = {REPLAYED_HEADER: "true"} if self.replayed else None
        return Response(
            self.body, status_code=self.status, media_type=self.media_type, headers=headers
        )


def json_response(status: int, payload: Any) -> StoredResponse:
    """A response whose body is rendered once, here, and stored as exactly these bytes."""
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json", by_alias=True)
    return StoredResponse(status=status, body=orjson.dumps(payload))


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    user_id: uuid.UUID
    endpoint: str
    key: str
    request_hash: str


def request_fingerprint(endpoint: str, payload: Any) -> str:
    """A stable hash of what the request asks for (its validated, canonical form)."""
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json", by_alias=True)
    canonical = orjson.dumps([endpoint, payload], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY_PATTERN.fullmatch(key):
        raise ValidationFailed(
            "The Idempotency-Key header must be 1..255 printable ASCII characters",
            errors=[{"in": "header", "field": "Idempotency-Key", "message": "invalid key"}],
        )
    return key


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1..255 printable ASCII characters; replays return the first response",
        # Documented only: validate_key() checks it, with its own message, after authentication.
        json_schema_extra={"pattern": _KEY_PATTERN.pattern},
    ),
]


def scope_for(
    user_id: uuid.UUID, endpoint: str, key: str | None, payload: Any
) -> IdempotencyScope | None:
    valid = validate_key(key)
    if valid is None:
        return None
    return IdempotencyScope(user_id, endpoint, valid, request_fingerprint(endpoint, payload))


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


def problem_of(error: DomainError, instance: str, request_id: str | None) -> StoredResponse:
    body = problem_body(
        error.code,
        error.detail,
        title=error.title,
        instance=instance,
        request_id=request_id,
        errors=error.errors,
    )
    return StoredResponse(
        STATUS_BY_CODE.get(error.code, 500), orjson.dumps(body), PROBLEM_MEDIA_TYPE
    )


Effect = Callable[[AsyncConnection], Awaitable[StoredResponse]]
FailureRecorder = Callable[[AsyncConnection, DomainError], Awaitable[None]]

# Errors that say nothing about the request's outcome: never stored, the client may just retry.
NOT_AN_OUTCOME = (IdempotencyKeyMismatch, IdempotencyKeyInUse, ServiceUnavailable, ValidationFailed)
_NOT_OUTCOME_CODES = frozenset(error.code for error in NOT_AN_OUTCOME)


async def run(
    ctx: AppContext,
    scope: IdempotencyScope | None,
    effect: Effect,
    *,
    instance: str,
    request_id: str | None,
    record_failure: FailureRecorder | None = None,
) -> StoredResponse:
    """Run `effect` in one transaction, exactly once per idempotency scope.

    When `effect` raises a business error, its transaction is rolled back and the failure is
    settled by `settle_failure`."""

    async def keyed(conn: AsyncConnection) -> StoredResponse:
        if scope is not None and not await claim(conn, scope, COMPLETED):
            return await existing(conn, scope)
        response = await effect(conn)
        if scope is not None:
            await store(conn, scope, response)
        return response

    try:
        return await ctx.db.transaction(keyed)
    except NOT_AN_OUTCOME:
        raise
    except DomainError as error:
        return await settle_failure(
            ctx,
            scope,
            error,
            instance=instance,
            request_id=request_id,
            record_failure=record_failure,
        )


def is_storable(error: DomainError) -> bool:
    """Whether an error is an outcome of processing (stored under the key) or not (validation,
    key conflicts, unavailability: the client may retry with the same key)."""
    return error.code not in _NOT_OUTCOME_CODES


async def settle_failure(
    ctx: AppContext,
    scope: IdempotencyScope | None,
    error: DomainError,
    *,
    instance: str,
    request_id: str | None,
    record_failure: FailureRecorder | None = None,
    claimed: bool = False,
) -> StoredResponse:
    """After a business failure was rolled back: in a new transaction, `record_failure` writes what
    the domain keeps of it (a FAILED order) and the error response is stored under the key. Returns
    the stored response for keyed requests, raises `error` for unkeyed ones. `claimed` says the key
    is already held (PROCESSING) by this request. An error that is not an outcome (a validation
    error found late, say) is never stored: a claimed key is released instead."""
    if scope is None and record_failure is None:
        raise error
    storable = is_storable(error)

    async def store_failure(conn: AsyncConnection) -> StoredResponse | None:
        if (
            scope is not None
            and storable
            and not claimed
            and not await claim(conn, scope, COMPLETED)
        ):
            return await existing(conn, scope)
        if record_failure is not None:
            await record_failure(conn, error)
        if scope is not None and not storable:
            if claimed:
                await _unclaim(conn, scope)
            return None
        if scope is None:
            return None
        response = problem_of(error, instance, request_id)
        await store(conn, scope, response)
        return response

    stored = await ctx.db.transaction(store_failure)
    if stored is None:
        raise error
    return stored


async def _unclaim(conn: AsyncConnection, scope: IdempotencyScope) -> None:
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
    request: SPEC §4 keeps keys at least 24 hours). Whatever else holds such a key must let go of
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

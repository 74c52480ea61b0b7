"""Running a request at most once per idempotency key (docs/api.md, Idempotency, built once).

The router builds an `IdempotentRequest`: the key's scope (None when the client sent no key), how a
result is rendered, and where a problem points. The service treats it as opaque and hands it to
`Database.transaction` (through `run`, or a guard for multi-step requests), which:

- claims the key by inserting its record in the same transaction as the effect, and stores the
  rendered response there too: key, effect and response commit together or not at all;
- finding the key already used, raises `Answered` with the stored response instead of running the
  work (a concurrent request with the same key first waits on the unique index until the first
  commits — then replays — or rolls back — then proceeds).

A business failure rolls the effect back; `settle_failure` then records what the domain keeps of it
(a FAILED order) and stores the problem response in a transaction of its own, so a replay returns
the same error. Validation errors, key conflicts and unavailability are not outcomes and are never
stored. The router turns the service's result, or `Answered`, into the HTTP response (`respond`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from payflow.core.db import Database, Work
from payflow.core.errors import DomainError, ServiceUnavailable, ValidationFailed
from payflow.core.idempotency import repository
from payflow.core.idempotency.keys import (
    IdempotencyKeyInUse,
    IdempotencyKeyMismatch,
    IdempotencyScope,
    StoredResponse,
    problem_response,
    scope_for,
)
from payflow.core.unit_of_work import IdempotencyGuard, UnitOfWork

T = TypeVar("T")

# Errors that say nothing about the request's outcome: never stored, the client may just retry.
NOT_AN_OUTCOME = (IdempotencyKeyMismatch, IdempotencyKeyInUse, ServiceUnavailable, ValidationFailed)
_NOT_OUTCOME_CODES = frozenset(error.code for error in NOT_AN_OUTCOME)

FailureRecorder = Callable[[UnitOfWork, DomainError], Awaitable[None]]


class Answered(Exception):
    """The response stored under the request's key: a replay, or a business failure stored just
    now. It passes through the service untouched; the router sends it as it is."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True, slots=True)
class IdempotentRequest(Generic[T]):
    scope: IdempotencyScope | None
    render: Callable[[T], StoredResponse]
    instance: str
    request_id: str | None

    def once(self) -> IdempotencyGuard | None:
        """The whole request in one transaction: claim the key, store the response."""
        return None if self.scope is None else _Guard(self, repository.COMPLETED, store=True)

    def begin(self) -> IdempotencyGuard | None:
        """The first transaction of a multi-step request: hold the key (PROCESSING)."""
        return None if self.scope is None else _Guard(self, repository.PROCESSING, store=False)

    def finish(self) -> IdempotencyGuard | None:
        """The last transaction of a multi-step request: the key is held; store the response."""
        return None if self.scope is None else _Guard(self, None, store=True)


def request_for(
    http: Request,
    user_id: uuid.UUID,
    endpoint: str,
    key: str | None,
    payload: Any,
    render: Callable[[T], StoredResponse],
) -> IdempotentRequest[T]:
    return IdempotentRequest(
        scope_for(user_id, endpoint, key, payload),
        render,
        instance=http.url.path,
        request_id=getattr(http.state, "request_id", None),
    )


@dataclass(frozen=True, slots=True)
class _Guard:
    request: IdempotentRequest[Any]
    claim_state: str | None  # None: this request already holds the key
    store: bool

    async def enter(self, conn: AsyncConnection) -> None:
        scope = self.request.scope
        if scope is None or self.claim_state is None:
            return
        if not await repository.claim(conn, scope, self.claim_state):
            raise Answered(await repository.existing(conn, scope))

    async def leave(self, conn: AsyncConnection, result: Any) -> None:
        if self.request.scope is not None and self.store:
            await repository.store(conn, self.request.scope, self.request.render(result))


async def run(
    db: Database,
    request: IdempotentRequest[Any],
    work: Work[T],
    *,
    record_failure: FailureRecorder | None = None,
) -> T:
    """Run `work` in one transaction, at most once per idempotency key."""
    try:
        return await db.transaction(work, idempotency=request.once())
    except NOT_AN_OUTCOME:
        raise
    except DomainError as error:
        await settle_failure(db, request, error, record_failure=record_failure)


async def replay_if_answered(db: Database, request: IdempotentRequest[Any]) -> None:
    """Raise `Answered` if the key already holds a response (before work outside a transaction)."""
    scope = request.scope
    if scope is not None:
        stored = await db.read(lambda conn: repository.existing_or_none(conn, scope))
        if stored is not None:
            raise Answered(stored)


def is_storable(error: DomainError) -> bool:
    """Whether an error is an outcome of processing (stored under the key) or not (validation,
    key conflicts, unavailability: the client may retry with the same key)."""
    return error.code not in _NOT_OUTCOME_CODES


async def settle_failure(
    db: Database,
    request: IdempotentRequest[Any],
    error: DomainError,
    *,
    record_failure: FailureRecorder | None = None,
    claimed: bool = False,
) -> NoReturn:
    """After a business failure was rolled back: in a new transaction, `record_failure` writes what
    the domain keeps of it (a FAILED order) and the problem response is stored under the key.
    Raises `Answered` with it for keyed requests, `error` for unkeyed ones. `claimed` says the key
    is already held (PROCESSING) by this request. An error that is not an outcome (a validation
    error found late, say) is never stored: a claimed key is released instead."""
    scope = request.scope
    if scope is None and record_failure is None:
        raise error
    storable = is_storable(error)

    async def store_failure(uow: UnitOfWork) -> StoredResponse | None:
        conn = uow.conn
        if scope is not None and storable and not claimed:
            if not await repository.claim(conn, scope, repository.COMPLETED):
                return await repository.existing(conn, scope)
        if record_failure is not None:
            await record_failure(uow, error)
        if scope is None:
            return None
        if not storable:
            if claimed:
                await repository.unclaim(conn, scope)
            return None
        response = problem_response(error, request.instance, request.request_id)
        await repository.store(conn, scope, response)
        return response

    stored = await db.transaction(store_failure)
    if stored is None:
        raise error
    raise Answered(stored)


async def respond(request: IdempotentRequest[T], call: Awaitable[T]) -> Response:
    """At the router: the service's result rendered (the same bytes its transaction stored), or
    the answer already stored under the key."""
    try:
        value = await call
    except Answered as answered:
        return answered.response.to_http()
    return request.render(value).to_http()

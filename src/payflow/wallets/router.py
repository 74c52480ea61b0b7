"""/wallet: the authenticated user's balance, deposits, withdrawals and ledger history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.auth.dependencies import CurrentUser
from payflow.auth.rate_limits import WITHDRAWAL_LIMITS
from payflow.core import idempotency
from payflow.core.dependencies import ContextDep
from payflow.core.idempotency import IdempotencyKeyHeader, StoredResponse, json_response
from payflow.core.json_body import JsonBodyRoute
from payflow.core.pagination import (
    DEFAULT_LIMIT,
    CursorQuery,
    LimitQuery,
    Page,
    PageMeta,
    decode_cursor,
    encode_cursor,
)
from payflow.core.schemas import problem_responses
from payflow.wallets import service
from payflow.wallets.models import TransactionType
from payflow.wallets.records import Movement, Wallet
from payflow.wallets.schemas import MoneyMovementRequest, MovementOut, TransactionOut, WalletOut

router = APIRouter(prefix="/wallet", tags=["wallet"], route_class=JsonBodyRoute)

_MOVEMENT_PROBLEMS = problem_responses(
    "UNAUTHORIZED",
    "ACCOUNT_DISABLED",
    "WALLET_LOCKED",
    "IDEMPOTENCY_KEY_IN_USE",
    "IDEMPOTENCY_KEY_MISMATCH",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "SERVICE_UNAVAILABLE",
)


@router.get("", response_model=WalletOut, responses=problem_responses("UNAUTHORIZED"))
async def get_wallet(user: CurrentUser, ctx: ContextDep) -> WalletOut:
    return WalletOut.of(await service.get_wallet(ctx, user.id))


async def _move(
    ctx: ContextDep,
    request: Request,
    user: CurrentUser,
    body: MoneyMovementRequest,
    key: str | None,
    endpoint: str,
    step: Callable[[AsyncConnection], Awaitable[Movement]],
) -> Response:
    committed: list[Wallet] = []

    async def effect(conn: AsyncConnection) -> StoredResponse:
        committed.clear()  # a re-run after a conflict starts over
        movement = await step(conn)
        committed.append(movement.wallet)
        return json_response(status.HTTP_201_CREATED, MovementOut.of(movement))

    response = await idempotency.run(
        ctx,
        idempotency.scope_for(user.id, endpoint, key, body),
        effect,
        instance=request.url.path,
        request_id=request.state.request_id,
    )
    if not response.replayed:  # a replay changed nothing; an earlier attempt's record is void
        await service.remember(ctx, committed)
    return response.to_http()


@router.post(
    "/deposit",
    status_code=status.HTTP_201_CREATED,
    response_model=MovementOut,
    responses=_MOVEMENT_PROBLEMS,
)
async def deposit(
    body: MoneyMovementRequest,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    return await _move(
        ctx,
        request,
        user,
        body,
        idempotency_key,
        "wallet.deposit",
        lambda conn: service.deposit(conn, user.id, body.amount, body.description),
    )


@router.post(
    "/withdraw",
    status_code=status.HTTP_201_CREATED,
    response_model=MovementOut,
    responses={**_MOVEMENT_PROBLEMS, **problem_responses("INSUFFICIENT_FUNDS", "RATE_LIMITED")},
    dependencies=WITHDRAWAL_LIMITS,
)
async def withdraw(
    body: MoneyMovementRequest,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    return await _move(
        ctx,
        request,
        user,
        body,
        idempotency_key,
        "wallet.withdraw",
        lambda conn: service.withdraw(conn, user.id, body.amount, body.description),
    )


@router.get(
    "/transactions",
    response_model=Page[TransactionOut],
    responses=problem_responses("UNAUTHORIZED"),
)
async def transactions(
    user: CurrentUser,
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    type: TransactionType | None = Query(default=None, description="Only rows of this type"),
) -> Page[TransactionOut]:
    key = decode_cursor(cursor, int)
    entries = await service.history(
        ctx, user.id, limit=limit + 1, before_seq=key[0] if key else None, type=type
    )
    page = entries[:limit]
    next_cursor = encode_cursor(page[-1].seq) if len(entries) > limit else None
    return Page[TransactionOut](
        data=[TransactionOut.of(entry) for entry in page],
        meta=PageMeta(limit=limit, next_cursor=next_cursor),
    )

"""/wallet: the authenticated user's balance, deposits, withdrawals and ledger history."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status

from payflow.auth.dependencies import CurrentUser
from payflow.auth.rate_limits import DEPOSIT_LIMITS, WITHDRAWAL_LIMITS
from payflow.core.idempotency import (
    IdempotencyKeyHeader,
    StoredResponse,
    json_response,
    request_for,
    respond,
)
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
from payflow.wallets.records import Movement
from payflow.wallets.schemas import MoneyMovementRequest, MovementOut, TransactionOut, WalletOut
from payflow.wiring import ContextDep

router = APIRouter(prefix="/wallet", tags=["wallet"], route_class=JsonBodyRoute)

# Each route lists the problems of its own rules; app.py adds those every route of its kind can
# answer with (authentication, idempotency keys, bodies, validation, unavailability).


@router.get("", summary="Your wallet", response_model=WalletOut)
async def get_wallet(user: CurrentUser, ctx: ContextDep) -> WalletOut:
    """Balance, currency and whether the wallet is locked."""
    return WalletOut.of(await service.get_wallet(ctx, user.id))


def _render(movement: Movement) -> StoredResponse:
    return json_response(status.HTTP_201_CREATED, MovementOut.of(movement))


@router.post(
    "/deposit",
    summary="Deposit",
    status_code=status.HTTP_201_CREATED,
    response_model=MovementOut,
    responses=problem_responses("WALLET_LOCKED", "RATE_LIMITED"),
    dependencies=DEPOSIT_LIMITS,
)
async def deposit(
    body: MoneyMovementRequest,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Credits your wallet and appends a `DEPOSIT` ledger row. Send an `Idempotency-Key` to retry
    safely."""
    depositing = request_for(request, user.id, "wallet.deposit", idempotency_key, body, _render)
    return await respond(
        depositing, service.deposit(ctx, user.id, body.amount, body.description, depositing)
    )


@router.post(
    "/withdraw",
    summary="Withdraw",
    status_code=status.HTTP_201_CREATED,
    response_model=MovementOut,
    responses=problem_responses("WALLET_LOCKED", "INSUFFICIENT_FUNDS", "RATE_LIMITED"),
    dependencies=WITHDRAWAL_LIMITS,
)
async def withdraw(
    body: MoneyMovementRequest,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Debits your wallet (never below zero) and appends a `WITHDRAWAL` ledger row. Send an
    `Idempotency-Key` to retry safely."""
    withdrawing = request_for(request, user.id, "wallet.withdraw", idempotency_key, body, _render)
    return await respond(
        withdrawing, service.withdraw(ctx, user.id, body.amount, body.description, withdrawing)
    )


@router.get(
    "/transactions",
    summary="Your ledger",
    response_model=Page[TransactionOut],
)
async def transactions(
    user: CurrentUser,
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    type: TransactionType | None = Query(default=None, description="Only rows of this type"),
) -> Page[TransactionOut]:
    """Every balance change of your wallet, newest first; `type` filters."""
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

"""Deposits, withdrawals, balances and history.

`deposit` and `withdraw` are one unit of work each, run once per idempotency key by the idempotency
runner; the committed balance is cached by an after-commit hook. Balances are cached with their wallet version: a write caches the state it committed, and a cache
fill never replaces a newer version, so a client always reads its own committed writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import orjson
import structlog

from payflow.core.cache import Versioned
from payflow.core.errors import NotFound
from payflow.core.idempotency import IdempotentRequest, runner
from payflow.core.money import Money
from payflow.core.unit_of_work import UnitOfWork
from payflow.wallets import repository
from payflow.wallets.models import TransactionType
from payflow.wallets.records import LedgerEntry, Movement, Wallet
from payflow.wiring import AppContext

WALLET_CACHE_TTL_SECONDS = 300

log = structlog.get_logger("payflow.wallets")


def _cache_key(user_id: uuid.UUID) -> str:
    return f"wallet:{user_id}"


def _encode(wallet: Wallet) -> bytes:
    return orjson.dumps(
        {
            "id": str(wallet.id),
            "user_id": str(wallet.user_id),
            "balance": wallet.balance,
            "currency": wallet.currency,
            "is_locked": wallet.is_locked,
            "version": wallet.version,
            "updated_at": wallet.updated_at.isoformat(),
        }
    )


def _decode(raw: bytes) -> Wallet:
    data = orjson.loads(raw)
    return Wallet(
        id=uuid.UUID(data["id"]),
        user_id=uuid.UUID(data["user_id"]),
        balance=data["balance"],
        currency=data["currency"],
        is_locked=data["is_locked"],
        version=data["version"],
        updated_at=datetime.fromisoformat(data["updated_at"]),
    )


def cache_entries(committed: Iterable[Wallet]) -> list[Versioned]:
    """What to cache of wallet states that were just committed."""
    return [
        Versioned(
            _cache_key(wallet.user_id), wallet.version, _encode(wallet), WALLET_CACHE_TTL_SECONDS
        )
        for wallet in committed
    ]


async def remember(ctx: AppContext, committed: Iterable[Wallet]) -> None:
    """Cache wallet states that were just committed (call only after the commit)."""
    await ctx.cache.update(cache_entries(committed))


async def get_wallet(ctx: AppContext, user_id: uuid.UUID) -> Wallet:
    cached = await ctx.cache.get_versioned(_cache_key(user_id))
    if cached is not None:
        return _decode(cached[1])
    wallet = await ctx.db.read(lambda conn: repository.get_by_user(conn, user_id))
    if wallet is None:
        raise NotFound("Wallet not found")
    await remember(ctx, [wallet])
    return wallet


async def deposit(
    ctx: AppContext,
    user_id: uuid.UUID,
    amount: Money,
    description: str | None,
    request: IdempotentRequest[Movement],
) -> Movement:
    return await _move(ctx, user_id, amount, description, TransactionType.DEPOSIT, request)


async def withdraw(
    ctx: AppContext,
    user_id: uuid.UUID,
    amount: Money,
    description: str | None,
    request: IdempotentRequest[Movement],
) -> Movement:
    return await _move(ctx, user_id, amount, description, TransactionType.WITHDRAWAL, request)


async def _move(
    ctx: AppContext,
    user_id: uuid.UUID,
    amount: Money,
    description: str | None,
    kind: TransactionType,
    request: IdempotentRequest[Movement],
) -> Movement:
    async def work(uow: UnitOfWork) -> Movement:
        movement = await repository.change_balance(
            uow.conn,
            amount,
            user_id=user_id,
            credit=kind is TransactionType.DEPOSIT,
            type=kind,
            description=description,
        )
        uow.after_commit(lambda: remember(ctx, [movement.wallet]))
        return movement

    movement = await runner.run(ctx.db, request, work)
    _log_movement(f"wallet.{kind.value.lower()}", movement)
    return movement


def _log_movement(event: str, movement: Movement) -> None:
    log.info(
        event,
        wallet_id=str(movement.wallet.id),
        amount=movement.entry.amount,
        currency=movement.entry.currency,
        balance_after=movement.entry.balance_after,
        seq=movement.entry.seq,
    )


async def history(
    ctx: AppContext,
    user_id: uuid.UUID,
    *,
    limit: int,
    before_seq: int | None,
    type: TransactionType | None,
) -> list[LedgerEntry]:
    return await ctx.db.read(
        lambda conn: repository.list_entries(
            conn, user_id, limit=limit, before_seq=before_seq, type=type
        )
    )

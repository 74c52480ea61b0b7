"""Deposits, withdrawals, balances and history.

`deposit` and `withdraw` are the steps of a unit of work (they take the transaction's connection);
the caller runs them through the idempotency runner, which begins and commits the transaction.
Balances are cached with their wallet version: a write caches the state it committed, and a cache
fill never replaces a newer version, so a client always reads its own committed writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.cache import Versioned
from payflow.core.context import AppContext
from payflow.core.errors import NotFound
from payflow.core.money import Money
from payflow.wallets import repository
from payflow.wallets.models import TransactionType
from payflow.wallets.records import LedgerEntry, Movement, Wallet

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
    conn: AsyncConnection, user_id: uuid.UUID, amount: Money, description: str | None
) -> Movement:
    return await _move(conn, user_id, amount, description, TransactionType.DEPOSIT)


async def withdraw(
    conn: AsyncConnection, user_id: uuid.UUID, amount: Money, description: str | None
) -> Movement:
    return await _move(conn, user_id, amount, description, TransactionType.WITHDRAWAL)


async def _move(
    conn: AsyncConnection,
    user_id: uuid.UUID,
    amount: Money,
    description: str | None,
    kind: TransactionType,
) -> Movement:
    movement = await repository.change_balance(
        conn,
        amount,
        user_id=user_id,
        credit=kind is TransactionType.DEPOSIT,
        type=kind,
        description=description,
    )
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

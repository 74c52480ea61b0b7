"""Every SQL statement about wallets and the ledger.

A balance change is one conditional UPDATE … RETURNING (the row lock, the check and the write in
one statement, so no lost update is possible) followed by one INSERT of its ledger row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.core.errors import NotFound, ValidationFailed
from payflow.core.money import MAX_MINOR_UNITS, Money, format_minor
from payflow.core.tables import utcnow
from payflow.wallets.errors import BalanceLimitExceeded, InsufficientFunds, WalletLocked
from payflow.wallets.models import (
    ReferenceType,
    TransactionStatus,
    TransactionType,
    wallet_transactions,
    wallets,
)
from payflow.wallets.records import LedgerEntry, Movement, Wallet

_WALLET_COLUMNS = (
    wallets.c.id,
    wallets.c.user_id,
    wallets.c.balance,
    wallets.c.currency,
    wallets.c.is_locked,
    wallets.c.version,
    wallets.c.updated_at,
)


def _wallet(row: RowMapping) -> Wallet:
    return Wallet(
        id=row["id"],
        user_id=row["user_id"],
        balance=row["balance"],
        currency=row["currency"],
        is_locked=row["is_locked"],
        version=row["version"],
        updated_at=row["updated_at"],
    )


def _entry(row: RowMapping) -> LedgerEntry:
    return LedgerEntry(
        id=row["id"],
        wallet_id=row["wallet_id"],
        seq=row["seq"],
        type=TransactionType(row["type"]),
        status=TransactionStatus(row["status"]),
        amount=row["amount"],
        balance_before=row["balance_before"],
        balance_after=row["balance_after"],
        currency=row["currency"],
        description=row["description"],
        reference_type=row["reference_type"],
        reference_id=row["reference_id"],
        metadata=row["metadata"],
        created_at=row["created_at"],
    )


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


async def get_by_user(conn: AsyncConnection, user_id: uuid.UUID) -> Wallet | None:
    result = await conn.execute(sa.select(*_WALLET_COLUMNS).where(wallets.c.user_id == user_id))
    row = result.mappings().first()
    return _wallet(row) if row else None


async def change_balance(
    conn: AsyncConnection,
    amount: Money,
    *,
    user_id: uuid.UUID | None = None,
    wallet_id: uuid.UUID | None = None,
    credit: bool,
    type: TransactionType,
    description: str | None = None,
    reference_type: ReferenceType | None = None,
    reference_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Movement:
    """Credit or debit a wallet (named by its user or its own id) and append the ledger row, or
    raise why it cannot be."""
    if (user_id is None) == (wallet_id is None):
        raise TypeError("name the wallet by exactly one of user_id and wallet_id")
    selector = wallets.c.user_id == user_id if user_id is not None else wallets.c.id == wallet_id
    now = now or utcnow()
    delta = amount.minor if credit else -amount.minor
    new_balance = wallets.c.balance + delta
    result = await conn.execute(
        sa.update(wallets)
        .where(
            selector,
            wallets.c.currency == amount.currency,
            wallets.c.is_locked.is_(False),
            new_balance >= 0,
            new_balance <= MAX_MINOR_UNITS,
        )
        .values(balance=new_balance, version=wallets.c.version + 1, updated_at=now)
        .returning(*_WALLET_COLUMNS)
    )
    row = result.mappings().first()
    if row is None:
        raise await _refusal(conn, selector, amount, credit=credit)
    wallet = _wallet(row)
    entry = LedgerEntry(
        id=uuid.uuid4(),
        wallet_id=wallet.id,
        seq=wallet.version,
        type=type,
        status=TransactionStatus.COMPLETED,
        amount=amount.minor,
        balance_before=wallet.balance - delta,
        balance_after=wallet.balance,
        currency=amount.currency,
        description=description,
        reference_type=reference_type,
        reference_id=reference_id,
        metadata=metadata,
        created_at=now,
    )
    await conn.execute(
        sa.insert(wallet_transactions).values(
            id=entry.id,
            wallet_id=entry.wallet_id,
            seq=entry.seq,
            type=entry.type.value,
            status=entry.status.value,
            amount=entry.amount,
            balance_before=entry.balance_before,
            balance_after=entry.balance_after,
            currency=entry.currency,
            description=entry.description,
            reference_type=entry.reference_type,
            reference_id=entry.reference_id,
            metadata=entry.metadata,
            created_at=now,
            updated_at=now,
        )
    )
    return Movement(wallet=wallet, entry=entry)


async def _refusal(
    conn: AsyncConnection, selector: sa.ColumnElement[bool], amount: Money, *, credit: bool
) -> Exception:
    """Why a conditional balance update matched no row (only ever read on the failure path)."""
    row = (await conn.execute(sa.select(*_WALLET_COLUMNS).where(selector))).mappings().first()
    wallet = _wallet(row) if row else None
    if wallet is None:
        return NotFound("Wallet not found")
    if wallet.is_locked:
        return WalletLocked("The wallet is locked")
    if wallet.currency != amount.currency:
        return ValidationFailed(f"The wallet holds {wallet.currency}, not {amount.currency}")
    if credit:
        limit = format_minor(MAX_MINOR_UNITS, wallet.currency)
        return BalanceLimitExceeded(
            f"The balance would exceed the maximum of {limit}",
            errors=[{"in": "body", "field": "amount", "message": "balance limit exceeded"}],
        )
    return InsufficientFunds(
        f"The balance is {format_minor(wallet.balance, wallet.currency)}, "
        f"below the {amount} requested"
    )


async def list_entries(
    conn: AsyncConnection,
    user_id: uuid.UUID,
    *,
    limit: int,
    before_seq: int | None,
    type: TransactionType | None,
) -> list[LedgerEntry]:
    """Up to `limit` ledger rows of the user's wallet, newest first, older than `before_seq`."""
    wallet_id = sa.select(wallets.c.id).where(wallets.c.user_id == user_id).scalar_subquery()
    query = sa.select(wallet_transactions).where(wallet_transactions.c.wallet_id == wallet_id)
    if before_seq is not None:
        query = query.where(wallet_transactions.c.seq < before_seq)
    if type is not None:
        query = query.where(wallet_transactions.c.type == type.value)
    query = query.order_by(wallet_transactions.c.seq.desc()).limit(limit)
    result = await conn.execute(query)
    return [_entry(row) for row in result.mappings()]


async def set_locked(conn: AsyncConnection, user_id: uuid.UUID, locked: bool) -> None:
    await conn.execute(
        sa.update(wallets).where(wallets.c.user_id == user_id).values(is_locked=locked)
    )


async def wallet_ids(
    conn: AsyncConnection, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """user id → wallet id (a mapping that never changes once a user exists)."""
    rows = await conn.execute(
        sa.select(wallets.c.user_id, wallets.c.id).where(wallets.c.user_id.in_(user_ids))
    )
    return {row.user_id: row.id for row in rows}

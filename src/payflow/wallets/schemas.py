"""Wallets and ledger rows on the wire. Money is a decimal string with the currency's digits."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from payflow.core.money import Amount, format_minor
from payflow.core.schemas import RequestModel, ResponseModel, StorableText
from payflow.wallets.models import TransactionStatus, TransactionType
from payflow.wallets.records import LedgerEntry, Movement, Wallet


class MoneyMovementRequest(RequestModel):
    amount: Amount
    description: StorableText | None = Field(default=None, max_length=500)


class WalletOut(ResponseModel):
    id: uuid.UUID
    balance: str = Field(examples=["12.50"])
    currency: str
    is_locked: bool
    updated_at: datetime

    @classmethod
    def of(cls, wallet: Wallet) -> WalletOut:
        return cls(
            id=wallet.id,
            balance=format_minor(wallet.balance, wallet.currency),
            currency=wallet.currency,
            is_locked=wallet.is_locked,
            updated_at=wallet.updated_at,
        )


class TransactionOut(ResponseModel):
    id: uuid.UUID
    type: TransactionType
    status: TransactionStatus
    amount: str
    balance_before: str
    balance_after: str
    currency: str
    description: str | None
    reference_type: str | None
    reference_id: uuid.UUID | None
    created_at: datetime

    @classmethod
    def of(cls, entry: LedgerEntry) -> TransactionOut:
        def money(minor: int) -> str:
            return format_minor(minor, entry.currency)

        return cls(
            id=entry.id,
            type=entry.type,
            status=entry.status,
            amount=money(entry.amount),
            balance_before=money(entry.balance_before),
            balance_after=money(entry.balance_after),
            currency=entry.currency,
            description=entry.description,
            reference_type=entry.reference_type,
            reference_id=entry.reference_id,
            created_at=entry.created_at,
        )


class MovementOut(ResponseModel):
    wallet: WalletOut
    transaction: TransactionOut

    @classmethod
    def of(cls, movement: Movement) -> MovementOut:
        return cls(
            wallet=WalletOut.of(movement.wallet), transaction=TransactionOut.of(movement.entry)
        )

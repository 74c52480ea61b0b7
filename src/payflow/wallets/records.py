"""Wallets and ledger rows as the domain sees them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payflow.wallets.models import TransactionStatus, TransactionType


@dataclass(frozen=True, slots=True)
class Wallet:
    id: uuid.UUID
    user_id: uuid.UUID
    balance: int
    currency: str
    is_locked: bool
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: uuid.UUID
    wallet_id: uuid.UUID
    seq: int
    type: TransactionType
    status: TransactionStatus
    amount: int
    balance_before: int
    balance_after: int
    currency: str
    description: str | None
    reference_type: str | None
    reference_id: uuid.UUID | None
    metadata: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Movement:
    """The outcome of one balance change: the wallet after it and its ledger row."""

    wallet: Wallet
    entry: LedgerEntry

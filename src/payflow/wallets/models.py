"""The wallets table and the immutable ledger (wallet_transactions)."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from payflow.core.tables import id_column, metadata, timestamp_columns


class TransactionType(StrEnum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    PAYMENT = "PAYMENT"
    EARNING = "EARNING"
    REFUND = "REFUND"


class ReferenceType(StrEnum):
    """What a ledger row's `reference_id` names."""

    ORDER = "ORDER"


class TransactionStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"


wallets = sa.Table(
    "wallets",
    metadata,
    id_column(),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False, unique=True),
    # Integer minor units of `currency`; never a float.
    sa.Column("balance", sa.BigInteger(), nullable=False, default=0),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("is_locked", sa.Boolean(), nullable=False, default=False),
    # Incremented by every balance change; the ledger row of that change carries it as `seq`.
    sa.Column("version", sa.BigInteger(), nullable=False, default=0),
    *timestamp_columns(),
    sa.CheckConstraint("balance >= 0", name="balance_non_negative"),
)

wallet_transactions = sa.Table(
    "wallet_transactions",
    metadata,
    id_column(),
    sa.Column("wallet_id", sa.Uuid(), sa.ForeignKey("wallets.id"), nullable=False),
    # The wallet's version after this change: a per-wallet sequence, unique, in commit order.
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("balance_before", sa.BigInteger(), nullable=False),
    sa.Column("balance_after", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("description", sa.Text()),
    sa.Column("reference_type", sa.String(32)),
    sa.Column("reference_id", sa.Uuid()),
    sa.Column("metadata", sa.JSON()),
    *timestamp_columns(),
    sa.UniqueConstraint("wallet_id", "seq", name="uq_wallet_transactions_wallet_id_seq"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint(
        "type IN ('DEPOSIT', 'WITHDRAWAL', 'PAYMENT', 'EARNING', 'REFUND')", name="type"
    ),
    sa.CheckConstraint("status IN ('PENDING', 'COMPLETED', 'FAILED', 'REVERSED')", name="status"),
    sa.Index("ix_wallet_transactions_reference", "reference_type", "reference_id"),
)

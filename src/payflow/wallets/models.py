"""The wallets table. A wallet is created with its user, in the same transaction."""

from __future__ import annotations

import sqlalchemy as sa

from payflow.core.tables import id_column, metadata, timestamp_columns

wallets = sa.Table(
    "wallets",
    metadata,
    id_column(),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False, unique=True),
    # Integer minor units of `currency`; never a float.
    sa.Column("balance", sa.BigInteger(), nullable=False, default=0),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("is_locked", sa.Boolean(), nullable=False, default=False),
    # Incremented by every balance change; doubles as the per-wallet ledger sequence.
    sa.Column("version", sa.BigInteger(), nullable=False, default=0),
    *timestamp_columns(),
    sa.CheckConstraint("balance >= 0", name="balance_non_negative"),
)

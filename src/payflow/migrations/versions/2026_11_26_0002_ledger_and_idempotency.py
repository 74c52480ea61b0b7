"""The immutable ledger (wallet_transactions) and idempotency records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payflow.core.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PG_IMMUTABLE_FUNCTION = """
CREATE FUNCTION wallet_transactions_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'wallet_transactions rows are immutable (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "wallet_transactions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("wallet_id", sa.Uuid(), sa.ForeignKey("wallets.id"), nullable=False),
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
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("wallet_id", "seq", name="uq_wallet_transactions_wallet_id_seq"),
        sa.CheckConstraint("amount > 0", name=op.f("ck_wallet_transactions_amount_positive")),
        sa.CheckConstraint(
            "type IN ('DEPOSIT', 'WITHDRAWAL', 'PAYMENT', 'EARNING', 'REFUND')",
            name=op.f("ck_wallet_transactions_type"),
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'COMPLETED', 'FAILED', 'REVERSED')",
            name=op.f("ck_wallet_transactions_status"),
        ),
    )
    op.create_index(
        "ix_wallet_transactions_reference",
        "wallet_transactions",
        ["reference_type", "reference_id"],
    )
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer()),
        sa.Column("response_body", sa.LargeBinary()),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "endpoint", "key", name="uq_idempotency_records_scope"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_IMMUTABLE_FUNCTION)
        op.execute(
            "CREATE TRIGGER wallet_transactions_immutable BEFORE UPDATE OR DELETE "
            "ON wallet_transactions FOR EACH ROW EXECUTE FUNCTION wallet_transactions_immutable()"
        )
        op.execute(
            "CREATE TRIGGER wallet_transactions_no_truncate BEFORE TRUNCATE "
            "ON wallet_transactions FOR EACH STATEMENT "
            "EXECUTE FUNCTION wallet_transactions_immutable()"
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER wallet_transactions_no_{operation.lower()} "
                f"BEFORE {operation} ON wallet_transactions "
                "BEGIN SELECT RAISE(ABORT, 'wallet_transactions rows are immutable'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS wallet_transactions_no_truncate ON wallet_transactions")
        op.execute("DROP TRIGGER IF EXISTS wallet_transactions_immutable ON wallet_transactions")
        op.execute("DROP FUNCTION IF EXISTS wallet_transactions_immutable()")
    op.drop_table("idempotency_records")
    op.drop_table("wallet_transactions")

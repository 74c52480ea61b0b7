"""Orders.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payflow.core.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("product_id", sa.Uuid(), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_method", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("stripe_session_id", sa.String(255)),
        sa.Column("stripe_payment_intent_id", sa.String(255)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("reservation_expires_at", UTCDateTime()),
        sa.Column("completed_at", UTCDateTime()),
        sa.Column("failed_at", UTCDateTime()),
        sa.Column("failure_reason", sa.Text()),
        sa.Column("metadata", sa.JSON()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("quantity BETWEEN 1 AND 100", name=op.f("ck_orders_quantity_range")),
        sa.CheckConstraint(
            "amount = unit_price * quantity", name=op.f("ck_orders_amount_is_price_times_quantity")
        ),
        sa.UniqueConstraint("stripe_session_id", name="uq_orders_stripe_session_id"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_id_idempotency_key"),
    )
    op.create_index("ix_orders_status_created_at", "orders", ["status", "created_at"])
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_at", "id"])
    op.create_index("ix_orders_merchant_created", "orders", ["merchant_id", "created_at", "id"])
    op.create_index("ix_orders_product_id", "orders", ["product_id"])
    # The reservation sweeper's query: pending gateway orders by expiry.
    op.create_index(
        "ix_orders_pending_reservations",
        "orders",
        ["reservation_expires_at"],
        postgresql_where=sa.text("status = 'PENDING'"),
        sqlite_where=sa.text("status = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_table("orders")

"""The orders table."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from payflow.core.tables import UTCDateTime, id_column, metadata, timestamp_columns


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    PAYMENT_PROCESSING = "PAYMENT_PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


class PaymentMethod(StrEnum):
    WALLET = "WALLET"
    GATEWAY = "GATEWAY"


orders = sa.Table(
    "orders",
    metadata,
    id_column(),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("product_id", sa.Uuid(), sa.ForeignKey("products.id"), nullable=False, index=True),
    sa.Column("merchant_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("unit_price", sa.BigInteger(), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("payment_method", sa.String(16), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("stripe_session_id", sa.String(255), unique=True),
    sa.Column("stripe_payment_intent_id", sa.String(255)),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("reservation_expires_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("failed_at", UTCDateTime()),
    sa.Column("failure_reason", sa.Text()),
    sa.Column("metadata", sa.JSON()),
    *timestamp_columns(),
    sa.CheckConstraint("quantity BETWEEN 1 AND 100", name="quantity_range"),
    sa.CheckConstraint("amount = unit_price * quantity", name="amount_is_price_times_quantity"),
    sa.UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_id_idempotency_key"),
    sa.Index("ix_orders_status_created_at", "status", "created_at"),
    # A buyer's and a merchant's order listings, newest first (keyset on created_at, id).
    sa.Index("ix_orders_user_created", "user_id", "created_at", "id"),
    sa.Index("ix_orders_merchant_created", "merchant_id", "created_at", "id"),
    # The reservation sweeper's query: pending gateway orders by expiry.
    sa.Index(
        "ix_orders_pending_reservations",
        "reservation_expires_at",
        postgresql_where=sa.text("status = 'PENDING'"),
        sqlite_where=sa.text("status = 'PENDING'"),
    ),
)

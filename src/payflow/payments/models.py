"""The webhook inbox and the gateway refund outbox."""

from __future__ import annotations

import sqlalchemy as sa

from payflow.core.tables import UTCDateTime, id_column, metadata, timestamp_columns

# Every verified provider event, recorded (unique on its id) before anything acts on it.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    id_column(),
    sa.Column("provider_event_id", sa.String(255), nullable=False, unique=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("processed_at", UTCDateTime()),
    sa.Column("outcome", sa.String(64)),
    *timestamp_columns(),
)

# Refunds payflow decided to make through the gateway. The decision commits with the order's
# state; the gateway call happens after the commit and is retried until it succeeds, always with
# the same idempotency key, so a payment is refunded once however often it is attempted.
gateway_refunds = sa.Table(
    "gateway_refunds",
    metadata,
    id_column(),
    sa.Column("order_id", sa.Uuid(), sa.ForeignKey("orders.id"), nullable=False, unique=True),
    sa.Column("payment_intent_id", sa.String(255), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # PENDING | SUCCEEDED | FAILED
    sa.Column("provider_refund_id", sa.String(255)),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("last_error", sa.Text()),
    sa.Column("next_attempt_at", UTCDateTime()),  # when a PENDING refund is next sent
    sa.Column("finished_at", UTCDateTime()),
    *timestamp_columns(),
    sa.Index("ix_gateway_refunds_due", "status", "next_attempt_at"),
)

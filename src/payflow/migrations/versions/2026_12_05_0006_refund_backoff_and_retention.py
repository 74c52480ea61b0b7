"""Refund outbox backoff and final state; indexes for pruning expired records.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payflow.core.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_refunds") as batch:
        # When the next attempt is due (backoff); NULL only on rows written before this revision.
        batch.add_column(sa.Column("next_attempt_at", UTCDateTime()))
        # Set when the refund ended (SUCCEEDED or FAILED).
        batch.add_column(sa.Column("finished_at", UTCDateTime()))
    op.execute("UPDATE gateway_refunds SET next_attempt_at = created_at WHERE status = 'PENDING'")
    op.drop_index("ix_gateway_refunds_pending", table_name="gateway_refunds")
    op.create_index("ix_gateway_refunds_due", "gateway_refunds", ["status", "next_attempt_at"])
    op.create_index("ix_idempotency_records_expires_at", "idempotency_records", ["expires_at"])
    op.create_index("ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"])
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_received_at", table_name="webhook_events")
    op.drop_index("ix_refresh_tokens_expires_at", table_name="refresh_tokens")
    op.drop_index("ix_idempotency_records_expires_at", table_name="idempotency_records")
    op.drop_index("ix_gateway_refunds_due", table_name="gateway_refunds")
    op.create_index("ix_gateway_refunds_pending", "gateway_refunds", ["status"])
    with op.batch_alter_table("gateway_refunds") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("next_attempt_at")

"""The idempotency_records table."""

from __future__ import annotations

import sqlalchemy as sa

from payflow.core.tables import UTCDateTime, id_column, metadata, timestamp_columns

idempotency_records = sa.Table(
    "idempotency_records",
    metadata,
    id_column(),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    # PROCESSING while a request that spans several transactions (a gateway order) is under way;
    # COMPLETED once its response is stored.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("response_status", sa.Integer()),
    sa.Column("response_body", sa.LargeBinary()),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    *timestamp_columns(),
    sa.UniqueConstraint("user_id", "endpoint", "key", name="uq_idempotency_records_scope"),
)

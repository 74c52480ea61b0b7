"""The refresh_tokens table: one row per issued refresh token, stored only as a hash."""

from __future__ import annotations

import sqlalchemy as sa

from payflow.core.tables import UTCDateTime, id_column, metadata, timestamp_columns

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    id_column(),  # equals the token's `jti`
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("family_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Column("replaced_by", sa.Uuid()),
    *timestamp_columns(),
)

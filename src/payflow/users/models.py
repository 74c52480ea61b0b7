"""The users table."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from payflow.core.tables import UTCDateTime, id_column, metadata, timestamp_columns


class Role(StrEnum):
    USER = "USER"
    MERCHANT = "MERCHANT"


users = sa.Table(
    "users",
    metadata,
    id_column(),
    # Stored lower-cased, so the unique constraint is case-insensitive on every database.
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("first_name", sa.String(100)),
    sa.Column("last_name", sa.String(100)),
    sa.Column("is_active", sa.Boolean(), nullable=False, default=True),
    sa.Column("last_login_at", UTCDateTime()),
    *timestamp_columns(),
    sa.Column("deleted_at", UTCDateTime()),
    sa.CheckConstraint("role IN ('USER', 'MERCHANT')", name="role"),
)

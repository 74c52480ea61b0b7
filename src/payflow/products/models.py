"""The products table and the stock ledger (stock_adjustments).

Every unit a merchant ever stocks is recorded as a stock adjustment (the initial units included),
so that invariant 5 (docs/api.md) can be audited: available + reserved + units sold = Σ adjustments.
"""

from __future__ import annotations

import sqlalchemy as sa

from payflow.core.tables import UTCDateTime, id_column, metadata, timestamp_columns

products = sa.Table(
    "products",
    metadata,
    id_column(),
    sa.Column("merchant_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text()),
    sa.Column("price", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("available_units", sa.Integer(), nullable=False),
    sa.Column("initial_units", sa.Integer(), nullable=False),
    sa.Column("reserved_units", sa.Integer(), nullable=False, default=0),
    sa.Column("is_active", sa.Boolean(), nullable=False, default=True),
    # Incremented by every change, stock movements included (optimistic concurrency, If-Match).
    sa.Column("version", sa.BigInteger(), nullable=False, default=1),
    *timestamp_columns(),
    sa.Column("deleted_at", UTCDateTime()),
    sa.CheckConstraint("available_units >= 0", name="available_non_negative"),
    sa.CheckConstraint("reserved_units >= 0", name="reserved_non_negative"),
    sa.CheckConstraint("price > 0", name="price_positive"),
    # The public catalogue: active, not deleted, newest first (keyset on created_at, id).
    sa.Index(
        "ix_products_catalogue",
        "created_at",
        "id",
        postgresql_where=sa.text("is_active AND deleted_at IS NULL"),
        sqlite_where=sa.text("is_active AND deleted_at IS NULL"),
    ),
    # A merchant's own listing, inactive included.
    sa.Index("ix_products_merchant_created", "merchant_id", "created_at", "id"),
)

stock_adjustments = sa.Table(
    "stock_adjustments",
    metadata,
    id_column(),
    sa.Column("product_id", sa.Uuid(), sa.ForeignKey("products.id"), nullable=False, index=True),
    # Units added (positive) or withdrawn (negative) by the merchant; never by a sale.
    sa.Column("delta", sa.Integer(), nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),  # CREATED | ADJUSTED
    sa.Column("actor_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
    *timestamp_columns(),
)

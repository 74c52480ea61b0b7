"""Products and the stock ledger.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payflow.core.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("merchant_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("available_units", sa.Integer(), nullable=False),
        sa.Column("initial_units", sa.Integer(), nullable=False),
        sa.Column("reserved_units", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime()),
        sa.CheckConstraint("available_units >= 0", name=op.f("ck_products_available_non_negative")),
        sa.CheckConstraint("reserved_units >= 0", name=op.f("ck_products_reserved_non_negative")),
        sa.CheckConstraint("price > 0", name=op.f("ck_products_price_positive")),
    )
    op.create_index("ix_products_merchant_id", "products", ["merchant_id"])
    # The public catalogue: active, not deleted, newest first (keyset on created_at, id).
    op.create_index(
        "ix_products_catalogue",
        "products",
        ["created_at", "id"],
        postgresql_where=sa.text("is_active AND deleted_at IS NULL"),
        sqlite_where=sa.text("is_active AND deleted_at IS NULL"),
    )
    # A merchant's own listing, inactive included.
    op.create_index("ix_products_merchant_created", "products", ["merchant_id", "created_at", "id"])
    op.create_table(
        "stock_adjustments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("product_id", sa.Uuid(), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_stock_adjustments_product_id", "stock_adjustments", ["product_id"])


def downgrade() -> None:
    op.drop_table("stock_adjustments")
    op.drop_table("products")

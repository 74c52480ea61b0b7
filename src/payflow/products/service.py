"""Products: a merchant's create, update and soft delete, and the cached public reads.

Writes are one unit of work each (`ctx.db.transaction`); the product caches are invalidated only
after the commit, with the version the write produced. Stock a merchant sets is recorded as a stock
adjustment whose delta is computed from the locked row, so units sold or reserved meanwhile are
never erased from the audit trail (invariant 5, docs/api.md).

Public reads (the catalogue pages and single active products) are served from the cache when it
holds them and fall back to the database; what is cached is the exact JSON the API sends.
Merchants' own listings and inactive products are always read from the database.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any
from urllib.parse import urlencode

import structlog

from payflow.core.errors import NotFound, ValidationFailed
from payflow.core.pagination import decode_time_cursor, encode_time_cursor
from payflow.core.tables import utcnow
from payflow.core.unit_of_work import UnitOfWork
from payflow.products import cache, repository
from payflow.products.errors import VersionConflict
from payflow.products.records import AdjustmentReason, Position, Product
from payflow.products.schemas import (
    CreateProductRequest,
    UpdateProductRequest,
    page_json,
    product_json,
)
from payflow.users.records import User
from payflow.wiring import AppContext

log = structlog.get_logger("payflow.products")


def _not_found() -> NotFound:
    return NotFound("Product not found")


def visible_to(product: Product, viewer_id: uuid.UUID | None) -> bool:
    """Whether a (not deleted) product may be shown: when it is on sale, or to its merchant."""
    return product.is_active or product.merchant_id == viewer_id


async def create_product(ctx: AppContext, merchant: User, request: CreateProductRequest) -> Product:
    async def work(uow: UnitOfWork) -> Product:
        conn, now = uow.conn, utcnow()
        product = await repository.insert_product(
            conn,
            merchant_id=merchant.id,
            name=request.name,
            description=request.description,
            price=request.price,
            units=request.available_units,
            now=now,
        )
        await repository.insert_adjustment(
            conn,
            product_id=product.id,
            delta=request.available_units,
            reason=AdjustmentReason.CREATED,
            actor_id=merchant.id,
            now=now,
        )
        return product

    product = await ctx.db.transaction(work)
    await cache.invalidate(ctx, [(product.id, product.version)])
    log.info(
        "product.created",
        product_id=str(product.id),
        merchant_id=str(merchant.id),
        units=product.available_units,
    )
    return product


async def get_live_product(ctx: AppContext, product_id: uuid.UUID) -> Product | None:
    """The product from the database unless it is deleted (never from the cache)."""
    return await ctx.db.read(lambda conn: repository.get_live(conn, product_id))


async def update_product(
    ctx: AppContext,
    product: Product,
    actor: User,
    request: UpdateProductRequest,
    *,
    if_match: int | None,
) -> Product:
    """Apply the fields present in `request` to the product its merchant (`actor`) owns.

    `if_match` (the header) and `request.version`, when given, must both name the current version.
    """
    changed = request.changed_fields()
    if not changed:
        raise ValidationFailed(
            "Nothing to change: name at least one field to update",
            errors=[{"in": "body", "field": "", "message": "nothing to change"}],
        )
    expected = {version for version in (if_match, request.version) if version is not None}

    async def work(uow: UnitOfWork) -> Product:
        conn, now = uow.conn, utcnow()
        current = await repository.lock_live(conn, product.id)
        if current is None:
            raise _not_found()
        stale = sorted(version for version in expected if version != current.version)
        if stale:
            raise VersionConflict(f"The product is at version {current.version}, not {stale[0]}")
        values: dict[str, Any] = {}
        if "name" in changed:
            values["name"] = request.name
        if "description" in changed:
            values["description"] = request.description
        if "price" in changed and request.price is not None:
            values["price"] = request.price.minor
        if "is_active" in changed:
            values["is_active"] = request.is_active
        if "available_units" in changed and request.available_units is not None:
            values["available_units"] = request.available_units
            # From the locked row: a sale committed since the merchant looked is kept.
            delta = request.available_units - current.available_units
            if delta:
                await repository.insert_adjustment(
                    conn,
                    product_id=current.id,
                    delta=delta,
                    reason=AdjustmentReason.ADJUSTED,
                    actor_id=actor.id,
                    now=now,
                )
                uow.after_commit(partial(_log_adjustment, current.id, delta))
        updated = await repository.update_product(
            conn, current.id, version=current.version, values=values, now=now
        )
        if updated is None:  # unreachable while the row lock is held
            raise VersionConflict("The product changed while it was being updated")
        return updated

    updated = await ctx.db.transaction(work)
    await cache.invalidate(ctx, [(updated.id, updated.version)])
    log.info(
        "product.updated",
        product_id=str(updated.id),
        fields=sorted(changed),
        version=updated.version,
    )
    return updated


async def _log_adjustment(product_id: uuid.UUID, delta: int) -> None:
    log.info("product.stock_adjusted", product_id=str(product_id), delta=delta)


async def delete_product(ctx: AppContext, product: Product) -> None:
    """Soft-delete: the product disappears from every read; its rows stay for the audit."""
    deleted = await ctx.db.transaction(
        lambda uow: repository.soft_delete(uow.conn, product.id, utcnow())
    )
    if deleted is None:  # deleted by a concurrent request
        raise _not_found()
    await cache.invalidate(ctx, [(deleted.id, deleted.version)])
    log.info("product.deleted", product_id=str(deleted.id), version=deleted.version)


async def product_body(
    ctx: AppContext, product_id: uuid.UUID, viewer_id: uuid.UUID | None
) -> tuple[int, bytes]:
    """The product's version and JSON for `GET /products/{id}`, or NotFound.

    Only products on sale are cached (their JSON is the same for everyone); an inactive one is
    read from the database each time, and only its merchant sees it.
    """
    cached = await cache.get_product(ctx, product_id)
    if cached is not None:
        return cached
    product = await get_live_product(ctx, product_id)
    if product is None or not visible_to(product, viewer_id):
        raise _not_found()
    body = product_json(product)
    if product.is_active:
        await cache.put_product(ctx, product.id, product.version, body)
    return product.version, body


async def catalogue_body(
    ctx: AppContext,
    *,
    limit: int,
    cursor: str | None,
    merchant_id: uuid.UUID | None,
    q: str | None,
) -> bytes:
    """A page of the public catalogue as JSON, from the cache when it holds it."""
    after = decode_position(cursor)
    query = urlencode(
        sorted(
            (name, value)
            for name, value in {
                "cursor": encode_position(after) if after else None,
                "limit": str(limit),
                "merchantId": str(merchant_id) if merchant_id else None,
                "q": q,
            }.items()
            if value is not None
        )
    )
    # The generation is read before the database: a page read before a change committed is
    # stored under the generation that change drops, so it is never served.
    generation = await cache.list_generation(ctx)
    cached = await cache.get_page(ctx, generation, query)
    if cached is not None:
        return cached
    rows = await ctx.db.read(
        lambda conn: repository.list_catalogue(
            conn, limit=limit + 1, after=after, merchant_id=merchant_id, q=q
        )
    )
    body = _page_body(rows, limit)
    await cache.put_page(ctx, generation, query, body)
    return body


async def merchant_products_body(
    ctx: AppContext, merchant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> bytes:
    """A page of the merchant's own products (inactive included) from the database, as JSON."""
    after = decode_position(cursor)
    rows = await ctx.db.read(
        lambda conn: repository.list_by_merchant(conn, merchant_id, limit=limit + 1, after=after)
    )
    return _page_body(rows, limit)


def _page_body(rows: list[Product], limit: int) -> bytes:
    """JSON of the first `limit` of `rows` (fetched as `limit + 1` to know if more follow)."""
    page = rows[:limit]
    next_cursor = encode_position(Position.after(page[-1])) if len(rows) > limit else None
    return page_json(page, limit, next_cursor)


def encode_position(position: Position) -> str:
    return encode_time_cursor(position.created_at, position.id)


def decode_position(cursor: str | None) -> Position | None:
    """The position inside a product list cursor, or a 400 for a cursor this API did not make."""
    key = decode_time_cursor(cursor)
    return None if key is None else Position(created_at=key[0], id=key[1])

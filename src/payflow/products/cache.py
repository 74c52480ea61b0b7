"""Caching of single products and catalogue pages (TTL 60 s), and their invalidation.

Single products are cached with their version. Invalidating one writes a tombstone carrying the
new version, so a reader that loaded the row before the change can never put the old version back
(the cache refuses versions older than what it holds), while a reader that loaded the row after
the change replaces the tombstone at once (see `_value_slot`). Catalogue pages are cached under a
generation id; any product change drops the generation, orphaning every page cached under it.
Money and stock paths never read any of this.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from payflow.core.cache import Versioned
from payflow.wiring import AppContext

PRODUCT_TTL_SECONDS = 60
_TOMBSTONE = b""
_GENERATION_KEY = "products:generation"


def product_key(product_id: uuid.UUID) -> str:
    return f"product:{product_id}"


# The cache only accepts strictly newer versions, so the tombstone and the value of one product
# version take different slots: 2v for the tombstone written when version v was committed, 2v + 1
# for version v's JSON. The JSON of v replaces v's tombstone; the JSON of v - 1 (2v - 1) cannot.
def _tombstone_slot(version: int) -> int:
    return 2 * version


def _value_slot(version: int) -> int:
    return 2 * version + 1


async def get_product(ctx: AppContext, product_id: uuid.UUID) -> tuple[int, bytes] | None:
    """The cached version and JSON of a product, or None (a miss, or a tombstone)."""
    cached = await ctx.cache.get_versioned(product_key(product_id))
    if cached is None or cached[1] == _TOMBSTONE:
        return None
    slot, payload = cached
    return (slot - 1) // 2, payload  # the value slot of version v is 2v + 1


async def put_product(ctx: AppContext, product_id: uuid.UUID, version: int, payload: bytes) -> None:
    await ctx.cache.set_if_newer(
        product_key(product_id), _value_slot(version), payload, PRODUCT_TTL_SECONDS
    )


async def list_generation(ctx: AppContext) -> str:
    """The id under which catalogue pages are cached now (a new one after any product change)."""
    current = await ctx.cache.get(_GENERATION_KEY)
    if current:
        return current.decode()
    generation = uuid.uuid4().hex
    await ctx.cache.set(_GENERATION_KEY, generation.encode(), PRODUCT_TTL_SECONDS)
    return generation


def page_key(generation: str, query: str) -> str:
    return f"products:page:{generation}:{query}"


async def get_page(ctx: AppContext, generation: str, query: str) -> bytes | None:
    return await ctx.cache.get(page_key(generation, query))


async def put_page(ctx: AppContext, generation: str, query: str, payload: bytes) -> None:
    await ctx.cache.set(page_key(generation, query), payload, PRODUCT_TTL_SECONDS)


def invalidation(changed: Iterable[tuple[uuid.UUID, int]]) -> tuple[list[Versioned], list[str]]:
    """The tombstones to write and the keys to delete after a commit that changed products:
    (product id, its new version) for each."""
    tombstones = [
        Versioned(
            product_key(product_id), _tombstone_slot(version), _TOMBSTONE, PRODUCT_TTL_SECONDS
        )
        for product_id, version in changed
    ]
    return tombstones, [_GENERATION_KEY] if tombstones else []


async def invalidate(ctx: AppContext, changed: Iterable[tuple[uuid.UUID, int]]) -> None:
    """After a commit that changed products: (product id, its new version) for each."""
    tombstones, deleted = invalidation(changed)
    await ctx.cache.update(tombstones, deleted)

"""Product caching (docs/architecture.md, Caching): cached reads never show stock, state or products that changed,
and a Redis outage degrades to the database, never to an error or a wrong answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.app import create_app
from payflow.config import Settings
from payflow.products import cache, repository, stock
from payflow.products.records import Product
from payflow.products.schemas import product_json
from payflow.wiring import AppContext
from tests.db_helpers import with_conn
from tests.products.support import catalogue, catalogue_ids, context, patch, read
from tests.redis_server import PrivateRedis, private_redis
from tests.support import Account, assert_problem, create_product, register


async def _sell(ctx: AppContext, product_id: str, buyer: Account, quantity: int) -> None:
    """What a wallet purchase does to stock: take it in a transaction, then invalidate."""

    async def work(conn: AsyncConnection) -> stock.StockedProduct:
        return await stock.take_for_buyer(
            conn, uuid.UUID(product_id), quantity, uuid.UUID(buyer.id), reserve=False
        )

    sold = await ctx.db.transaction(with_conn(work))
    await cache.invalidate(ctx, [(sold.id, sold.version)])


async def test_a_cached_product_shows_stock_set_by_its_merchant(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=4)
    assert (await read(client, product["id"])).json()["availableUnits"] == 4
    assert await cache.get_product(context(app), uuid.UUID(product["id"])) is not None

    await patch(client, merchant, product["id"], {"availableUnits": 9})
    response = await read(client, product["id"])
    assert response.json()["availableUnits"] == 9
    assert response.headers["etag"] == '"2"'


async def test_a_cached_product_shows_stock_taken_by_a_sale(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    product = await create_product(client, merchant, units=4)
    assert (await read(client, product["id"])).json()["availableUnits"] == 4
    assert (await catalogue(client))["data"][0]["availableUnits"] == 4

    await _sell(context(app), product["id"], buyer, 4)
    single = (await read(client, product["id"])).json()
    assert (single["availableUnits"], single["version"]) == (0, 2)
    assert (await catalogue(client))["data"][0]["availableUnits"] == 0


async def test_a_product_is_cached_again_after_a_change(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ctx = context(app)
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    await patch(client, merchant, product["id"], {"name": "renamed"})
    assert await cache.get_product(ctx, uuid.UUID(product["id"])) is None  # tombstone
    await read(client, product["id"])
    cached = await cache.get_product(ctx, uuid.UUID(product["id"]))
    assert cached is not None
    version, body = cached
    assert b'"renamed"' in body
    assert version == product["version"] + 1 == orjson.loads(body)["version"]


async def test_a_slow_reader_cannot_cache_a_version_older_than_a_change(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ctx = context(app)
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=4)
    product_id = uuid.UUID(product["id"])
    stale = await ctx.db.read(lambda conn: _load(conn, product_id))  # read before the change
    await patch(client, merchant, product["id"], {"availableUnits": 1})
    await cache.put_product(ctx, product_id, stale.version, product_json(stale))
    assert await cache.get_product(ctx, product_id) is None
    assert (await read(client, product["id"])).json()["availableUnits"] == 1


async def _load(conn: AsyncConnection, product_id: uuid.UUID) -> Product:
    product = await repository.get_live(conn, product_id)
    assert product is not None
    return product


async def test_an_inactive_product_is_never_served_from_the_cache(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    await patch(client, merchant, product["id"], {"isActive": False})
    assert (await read(client, product["id"], merchant)).status_code == 200
    assert await cache.get_product(context(app), uuid.UUID(product["id"])) is None
    assert_problem(await read(client, product["id"]), 404, "NOT_FOUND")


async def test_cached_catalogue_pages_never_show_a_deleted_product(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    ids = [(await create_product(client, merchant))["id"] for _ in range(5)][::-1]
    first = await catalogue(client, limit=2)
    second = await catalogue(client, limit=2, cursor=first["meta"]["nextCursor"])
    assert [p["id"] for p in second["data"]] == ids[2:4]
    assert await catalogue_ids(client, q="product") == ids

    await client.delete(f"/products/{ids[3]}", headers=merchant.headers)
    await patch(client, merchant, ids[0], {"isActive": False})

    again = await catalogue(client, limit=2, cursor=first["meta"]["nextCursor"])
    assert [p["id"] for p in again["data"]] == [ids[2], ids[4]]
    assert await catalogue_ids(client, limit=2) == ids[1:3]
    assert await catalogue_ids(client, q="product") == [ids[1], ids[2], ids[4]]


async def test_a_new_product_appears_in_a_cached_catalogue(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ctx = context(app)
    merchant = await register(client, role="MERCHANT")
    assert await catalogue_ids(client) == []
    assert await cache.get_page(ctx, await cache.list_generation(ctx), "limit=20") is not None
    product = await create_product(client, merchant)
    assert await catalogue_ids(client) == [product["id"]]


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


async def test_products_stay_correct_while_redis_is_down(
    settings: Settings, redis_server: PrivateRedis
) -> None:
    app = create_app(settings.model_copy(update={"redis_url": redis_server.url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            merchant = await register(client, role="MERCHANT")
            buyer = await register(client)
            product = await create_product(client, merchant, units=5)
            doomed = await create_product(client, merchant)
            assert (await read(client, product["id"])).json()["availableUnits"] == 5
            assert await catalogue_ids(client) == [doomed["id"], product["id"]]
            assert await cache.get_product(context(app), uuid.UUID(product["id"])) is not None

            redis_server.stop()
            assert (await read(client, product["id"])).json()["availableUnits"] == 5
            changed = await patch(client, merchant, product["id"], {"availableUnits": 8})
            assert changed.status_code == 200
            assert (await read(client, product["id"])).json()["availableUnits"] == 8
            await _sell(context(app), product["id"], buyer, 2)
            assert (await read(client, product["id"])).json()["availableUnits"] == 6
            deleted = await client.delete(f"/products/{doomed['id']}", headers=merchant.headers)
            assert deleted.status_code == 204
            assert await catalogue_ids(client) == [product["id"]]
            assert_problem(await read(client, doomed["id"]), 404, "NOT_FOUND")
            fresh = await create_product(client, merchant)
            assert await catalogue_ids(client) == [fresh["id"], product["id"]]

            redis_server.start()
            single = (await read(client, product["id"])).json()
            assert (single["availableUnits"], single["version"]) == (6, 3)
            assert await catalogue_ids(client) == [fresh["id"], product["id"]]
            assert await catalogue_ids(client) == [fresh["id"], product["id"]]  # from Redis
            assert_problem(await read(client, doomed["id"]), 404, "NOT_FOUND")

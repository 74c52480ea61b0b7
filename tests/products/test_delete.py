"""DELETE /products/{id}: the owner soft-deletes; the product is then gone for everyone."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.products.support import adjustments, catalogue_ids, patch, read
from tests.support import assert_problem, create_product, register


async def test_a_deleted_product_is_not_found_anywhere(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    shopper = await register(client)
    product = await create_product(client, merchant)
    await read(client, product["id"])  # cached, and in a cached catalogue page
    assert await catalogue_ids(client) == [product["id"]]

    response = await client.delete(f"/products/{product['id']}", headers=merchant.headers)
    assert response.status_code == 204
    assert response.content == b""

    for viewer in (None, shopper, merchant):
        assert_problem(await read(client, product["id"], viewer), 404, "NOT_FOUND")
    assert await catalogue_ids(client) == []
    assert await catalogue_ids(client, merchantId=merchant.id) == []
    mine = await client.get("/products/merchant/my-products", headers=merchant.headers)
    assert mine.json()["data"] == []
    assert_problem(await patch(client, merchant, product["id"], {"name": "x"}), 404, "NOT_FOUND")


async def test_deleting_twice_is_not_found(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    path = f"/products/{product['id']}"
    assert (await client.delete(path, headers=merchant.headers)).status_code == 204
    assert_problem(await client.delete(path, headers=merchant.headers), 404, "NOT_FOUND")


async def test_deleting_keeps_the_stock_record(client: httpx.AsyncClient, app: FastAPI) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=6)
    await client.delete(f"/products/{product['id']}", headers=merchant.headers)
    assert await adjustments(app, product["id"]) == [(6, "CREATED", merchant.id)]


async def test_only_the_owner_deletes(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="MERCHANT")
    other = await register(client, role="MERCHANT")
    user = await register(client)
    product = await create_product(client, owner)
    path = f"/products/{product['id']}"
    assert_problem(await client.delete(path, headers=other.headers), 403, "FORBIDDEN")
    assert_problem(await client.delete(path, headers=user.headers), 403, "FORBIDDEN")
    assert_problem(await client.delete(path), 401, "UNAUTHORIZED")
    assert (await read(client, product["id"])).json() == product


async def test_deleting_an_unknown_product_is_not_found(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    for product_id in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        response = await client.delete(f"/products/{product_id}", headers=merchant.headers)
        assert_problem(response, 404, "NOT_FOUND")

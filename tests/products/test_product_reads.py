"""GET /products/{id}: public for products on sale; inactive ones only for their merchant."""

from __future__ import annotations

import httpx
import pytest

from tests.products.support import patch, read
from tests.support import assert_problem, create_product, register


async def test_anyone_reads_a_product_on_sale(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, price="3.10", units=7)
    response = await read(client, product["id"])
    assert response.status_code == 200
    assert response.json() == product
    assert response.json()["price"] == "3.10"
    assert response.headers["etag"] == '"1"'
    assert response.headers["content-type"] == "application/json"
    shopper = await register(client)
    assert (await read(client, product["id"], shopper)).json() == product


async def test_the_etag_follows_the_version(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    await read(client, product["id"])  # cached at version 1
    assert (await patch(client, merchant, product["id"], {"name": "v2"})).status_code == 200
    response = await read(client, product["id"])
    assert response.headers["etag"] == '"2"'
    assert response.json()["version"] == 2


async def test_an_inactive_product_is_visible_only_to_its_merchant(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    other = await register(client, role="MERCHANT")
    shopper = await register(client)
    product = await create_product(client, merchant)
    await read(client, product["id"])  # cached while it was on sale
    response = await patch(client, merchant, product["id"], {"isActive": False})
    assert response.status_code == 200

    for viewer in (None, shopper, other):
        assert_problem(await read(client, product["id"], viewer), 404, "NOT_FOUND")
    own = await read(client, product["id"], merchant)
    assert own.status_code == 200
    assert own.json()["isActive"] is False
    assert own.headers["etag"] == '"2"'


async def test_a_product_back_on_sale_is_public_again(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    await patch(client, merchant, product["id"], {"isActive": False})
    assert_problem(await read(client, product["id"]), 404, "NOT_FOUND")
    await patch(client, merchant, product["id"], {"isActive": True})
    response = await read(client, product["id"])
    assert response.status_code == 200
    assert response.json()["version"] == 3


@pytest.mark.parametrize(
    "product_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000", "1", "%20"]
)
async def test_unknown_and_malformed_ids_are_not_found(
    client: httpx.AsyncClient, product_id: str
) -> None:
    assert_problem(await read(client, product_id), 404, "NOT_FOUND")


async def test_a_bad_token_is_refused_even_where_none_is_needed(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    for authorization in ("Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer", "garbage"):
        response = await client.get(
            f"/products/{product['id']}", headers={"Authorization": authorization}
        )
        assert_problem(response, 401, "UNAUTHORIZED")
    refresh_as_access = {"Authorization": f"Bearer {merchant.refresh_token}"}
    response = await client.get(f"/products/{product['id']}", headers=refresh_as_access)
    assert_problem(response, 401, "UNAUTHORIZED")

"""POST /products: merchants list products; the stock they start with is recorded."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.products.support import adjustments
from tests.support import assert_problem, register

PRODUCT_FIELDS = {
    "id",
    "merchantId",
    "name",
    "description",
    "price",
    "currency",
    "availableUnits",
    "initialUnits",
    "isActive",
    "version",
    "createdAt",
    "updatedAt",
}


def _valid(**overrides: Any) -> dict[str, Any]:
    return {"name": "E-book", "price": "12.50", "availableUnits": 5, **overrides}


async def test_a_merchant_creates_a_product(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    response = await client.post(
        "/products",
        json=_valid(description="A good read", price=12.5),
        headers=merchant.headers,
    )
    assert response.status_code == 201, response.text
    product = response.json()
    assert set(product) == PRODUCT_FIELDS
    assert product["merchantId"] == merchant.id
    assert product["name"] == "E-book"
    assert product["description"] == "A good read"
    assert product["price"] == "12.50"
    assert product["currency"] == "USD"
    assert product["availableUnits"] == 5
    assert product["initialUnits"] == 5
    assert product["isActive"] is True
    assert product["version"] == 1
    assert response.headers["etag"] == '"1"'


async def test_the_initial_stock_is_recorded_as_an_adjustment(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    response = await client.post("/products", json=_valid(), headers=merchant.headers)
    assert await adjustments(app, response.json()["id"]) == [(5, "CREATED", merchant.id)]


async def test_a_product_shows_no_personal_data_of_its_merchant(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT", firstName="Ada", lastName="Lovelace")
    created = await client.post("/products", json=_valid(), headers=merchant.headers)
    responses = [
        created,
        await client.get(f"/products/{created.json()['id']}"),
        await client.get("/products"),
        await client.get("/products/merchant/my-products", headers=merchant.headers),
    ]
    for response in responses:
        assert response.status_code in (200, 201)
        for personal in ("email", merchant.email, "Ada", "Lovelace", "firstName"):
            assert personal not in response.text


async def test_a_user_may_not_create_products(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await client.post("/products", json=_valid(), headers=user.headers)
    assert_problem(response, 403, "FORBIDDEN")
    assert (await client.get("/products")).json()["data"] == []


async def test_creating_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/products", json=_valid()), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "price",
    ["1.001", "0", 0, "0.00", "-1.00", -5, "1e400", "NaN", "Infinity", "10000000000.00", "", None],
)
async def test_a_price_that_is_not_exact_positive_money_is_refused(
    client: httpx.AsyncClient, price: Any
) -> None:
    merchant = await register(client, role="MERCHANT")
    response = await client.post("/products", json=_valid(price=price), headers=merchant.headers)
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert [e["field"] for e in body["errors"]] == ["price"]


@pytest.mark.parametrize("units", [-1, 1_000_001, 1.5, "5", True, None])
async def test_available_units_must_be_a_count_up_to_a_million(
    client: httpx.AsyncClient, units: Any
) -> None:
    merchant = await register(client, role="MERCHANT")
    response = await client.post(
        "/products", json=_valid(availableUnits=units), headers=merchant.headers
    )
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert [e["field"] for e in body["errors"]] == ["availableUnits"]


@pytest.mark.parametrize("units", [0, 1_000_000])
async def test_available_units_bounds_are_accepted(client: httpx.AsyncClient, units: int) -> None:
    merchant = await register(client, role="MERCHANT")
    response = await client.post(
        "/products", json=_valid(availableUnits=units), headers=merchant.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["availableUnits"] == units


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "   "),
        ("name", "x" * 201),
        ("name", "nul\x00byte"),
        ("description", "x" * 5001),
        ("description", "nul\x00byte"),
    ],
)
async def test_names_and_descriptions_are_checked(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    merchant = await register(client, role="MERCHANT")
    response = await client.post(
        "/products", json=_valid(**{field: value}), headers=merchant.headers
    )
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert [e["field"] for e in body["errors"]] == [field]


async def test_the_longest_name_and_description_are_accepted(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    body = _valid(name="n" * 200, description="d" * 5000)
    response = await client.post("/products", json=body, headers=merchant.headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "field",
    ["merchantId", "version", "initialUnits", "reservedUnits", "isActive", "currency", "id"],
)
async def test_fields_the_server_owns_cannot_be_sent(client: httpx.AsyncClient, field: str) -> None:
    merchant = await register(client, role="MERCHANT")
    other = await register(client, role="MERCHANT")
    response = await client.post(
        "/products", json=_valid(**{field: other.id}), headers=merchant.headers
    )
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == field
    assert body["errors"][0]["message"] == "unknown field"


@pytest.mark.parametrize("missing", ["name", "price", "availableUnits"])
async def test_required_fields(client: httpx.AsyncClient, missing: str) -> None:
    merchant = await register(client, role="MERCHANT")
    body = _valid()
    del body[missing]
    response = await client.post("/products", json=body, headers=merchant.headers)
    assert_problem(response, 400, "VALIDATION_ERROR")

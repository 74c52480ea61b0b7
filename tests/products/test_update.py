"""PATCH /products/{id}: the owner edits; versions, If-Match, and recorded stock changes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.products import cache, stock
from tests.db_helpers import with_conn
from tests.products.support import adjustments, context, patch, read
from tests.support import assert_problem, create_product, register


async def test_the_owner_changes_fields_and_each_change_bumps_the_version(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, price="10.00", units=3)

    response = await patch(client, merchant, product["id"], {"name": "New name", "price": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["price"], body["version"]) == ("New name", "7.00", 2)
    assert response.headers["etag"] == '"2"'
    assert body["createdAt"] == product["createdAt"]
    updated_at, created_at = (
        datetime.fromisoformat(value) for value in (body["updatedAt"], product["updatedAt"])
    )
    assert updated_at > created_at

    body = (await patch(client, merchant, product["id"], {"description": "Now described"})).json()
    assert (body["description"], body["version"]) == ("Now described", 3)
    body = (await patch(client, merchant, product["id"], {"description": None})).json()
    assert (body["description"], body["version"]) == (None, 4)
    body = (await patch(client, merchant, product["id"], {"isActive": False})).json()
    assert (body["isActive"], body["version"]) == (False, 5)
    assert (await read(client, product["id"], merchant)).json() == body


async def test_a_current_if_match_or_version_is_accepted(client: httpx.AsyncClient) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    quoted = await patch(client, merchant, product["id"], {"name": "a"}, **{"If-Match": '"1"'})
    assert quoted.json()["version"] == 2
    bare = await patch(client, merchant, product["id"], {"name": "b"}, **{"If-Match": "2"})
    assert bare.json()["version"] == 3
    in_body = await patch(client, merchant, product["id"], {"name": "c", "version": 3})
    assert in_body.json()["version"] == 4
    both = await patch(
        client, merchant, product["id"], {"name": "d", "version": 4}, **{"If-Match": '"4"'}
    )
    assert both.json()["version"] == 5
    star = await patch(client, merchant, product["id"], {"name": "e"}, **{"If-Match": "*"})
    assert star.json()["version"] == 6


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"name": "late"}, {"If-Match": '"1"'}),
        ({"name": "late", "version": 1}, {}),
        ({"name": "late", "version": 2}, {"If-Match": '"1"'}),
        ({"name": "late", "version": 1}, {"If-Match": '"2"'}),
        ({"availableUnits": 0, "version": 3}, {}),
    ],
)
async def test_a_stale_version_is_a_conflict_and_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI, body: dict[str, Any], headers: dict[str, str]
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=4)
    current = (await patch(client, merchant, product["id"], {"description": "v2"})).json()

    response = await patch(client, merchant, product["id"], body, **headers)
    assert_problem(response, 409, "VERSION_CONFLICT")
    assert (await read(client, product["id"])).json() == current
    assert await adjustments(app, product["id"]) == [(4, "CREATED", merchant.id)]


@pytest.mark.parametrize("if_match", ['W/"1"', '"one"', '"1", "2"', "1.0", '""', "-1"])
async def test_a_malformed_if_match_is_a_400(client: httpx.AsyncClient, if_match: str) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    response = await patch(client, merchant, product["id"], {"name": "x"}, **{"If-Match": if_match})
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "If-Match"
    assert (await read(client, product["id"])).json()["version"] == 1


async def test_setting_stock_records_the_difference(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=10)
    body = (await patch(client, merchant, product["id"], {"availableUnits": 25})).json()
    assert (body["availableUnits"], body["initialUnits"], body["version"]) == (25, 10, 2)
    body = (await patch(client, merchant, product["id"], {"availableUnits": 5})).json()
    assert body["availableUnits"] == 5
    assert await adjustments(app, product["id"]) == [
        (10, "CREATED", merchant.id),
        (15, "ADJUSTED", merchant.id),
        (-20, "ADJUSTED", merchant.id),
    ]


async def test_setting_the_same_stock_records_no_adjustment(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant, units=10)
    body = (await patch(client, merchant, product["id"], {"availableUnits": 10})).json()
    assert (body["availableUnits"], body["version"]) == (10, 2)
    assert await adjustments(app, product["id"]) == [(10, "CREATED", merchant.id)]


async def test_a_sale_made_before_a_stock_change_is_never_erased(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The merchant looked at 10 units; 3 were sold; setting 10 again records +3, not 0."""
    merchant = await register(client, role="MERCHANT")
    buyer = await register(client)
    product = await create_product(client, merchant, units=10)
    ctx = context(app)

    async def sell(conn: AsyncConnection) -> stock.StockedProduct:
        return await stock.take_for_buyer(
            conn, uuid.UUID(product["id"]), 3, uuid.UUID(buyer.id), reserve=False
        )

    sold = await ctx.db.transaction(with_conn(sell))
    await cache.invalidate(ctx, [(sold.id, sold.version)])

    body = (await patch(client, merchant, product["id"], {"availableUnits": 10})).json()
    assert (body["availableUnits"], body["version"]) == (10, 3)
    assert await adjustments(app, product["id"]) == [
        (10, "CREATED", merchant.id),
        (3, "ADJUSTED", merchant.id),
    ]


async def test_another_merchant_may_not_edit(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="MERCHANT")
    other = await register(client, role="MERCHANT")
    product = await create_product(client, owner)
    response = await patch(client, other, product["id"], {"name": "mine now"})
    assert_problem(response, 403, "FORBIDDEN")
    assert (await read(client, product["id"])).json() == product


async def test_another_merchants_inactive_product_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    owner = await register(client, role="MERCHANT")
    other = await register(client, role="MERCHANT")
    product = await create_product(client, owner)
    await patch(client, owner, product["id"], {"isActive": False})
    response = await patch(client, other, product["id"], {"isActive": True})
    assert_problem(response, 404, "NOT_FOUND")


async def test_a_user_may_not_edit(client: httpx.AsyncClient) -> None:
    owner = await register(client, role="MERCHANT")
    user = await register(client)
    product = await create_product(client, owner)
    assert_problem(await patch(client, user, product["id"], {"name": "x"}), 403, "FORBIDDEN")
    response = await client.patch(f"/products/{product['id']}", json={"name": "x"})
    assert_problem(response, 401, "UNAUTHORIZED")


async def test_editing_a_deleted_or_unknown_product_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    await client.delete(f"/products/{product['id']}", headers=merchant.headers)
    assert_problem(await patch(client, merchant, product["id"], {"name": "x"}), 404, "NOT_FOUND")
    assert_problem(await patch(client, merchant, "nope", {"name": "x"}), 404, "NOT_FOUND")


@pytest.mark.parametrize("body", [{}, {"version": 1}])
async def test_an_edit_must_change_something(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    response = await patch(client, merchant, product["id"], body)
    problem = assert_problem(response, 400, "VALIDATION_ERROR")
    assert "nothing to change" in problem["detail"].lower()
    assert (await read(client, product["id"])).json()["version"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("merchantId", "00000000-0000-4000-8000-000000000000"),
        ("initialUnits", 100),
        ("reservedUnits", 0),
        ("currency", "EUR"),
        ("id", "00000000-0000-4000-8000-000000000000"),
        ("name", None),
        ("name", ""),
        ("price", None),
        ("price", "1.001"),
        ("price", "0"),
        ("price", "-3"),
        ("price", "99999999999"),
        ("availableUnits", None),
        ("availableUnits", -1),
        ("availableUnits", 1_000_001),
        ("isActive", None),
        ("isActive", "yes"),
        ("version", 0),
        ("version", None),
        ("version", "1"),
        ("description", "x" * 5001),
    ],
)
async def test_invalid_or_unknown_fields_are_refused(
    client: httpx.AsyncClient, field: str, value: Any
) -> None:
    merchant = await register(client, role="MERCHANT")
    product = await create_product(client, merchant)
    response = await patch(client, merchant, product["id"], {field: value})
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == field
    assert (await read(client, product["id"])).json() == product

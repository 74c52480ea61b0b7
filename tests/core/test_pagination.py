"""Keyset cursors (core/pagination.py) on every list endpoint that takes one: a cursor holding a key
no database column can hold is a 400 problem naming the cursor, on both databases; a cursor with
an in-range key, whatever its offset, pages as one in UTC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from tests.crafted import cursor_of
from tests.support import Account, assert_problem, create_product, deposit, register

# (path, role) of every list that takes a cursor.
WALLET = ("/wallet/transactions", "USER")
TIME_LISTS = [
    ("/orders", "USER"),
    ("/orders/merchant/sales", "MERCHANT"),
    ("/products", "USER"),
    ("/products/merchant/my-products", "MERCHANT"),
]


async def _accounts(client: httpx.AsyncClient) -> dict[str, Account]:
    return {"USER": await register(client), "MERCHANT": await register(client, role="MERCHANT")}


async def _get(
    client: httpx.AsyncClient, accounts: dict[str, Account], where: tuple[str, str], cursor: str
) -> httpx.Response:
    path, role = where
    return await client.get(path, params={"cursor": cursor}, headers=accounts[role].headers)


def _assert_bad_cursor(response: httpx.Response) -> None:
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert [error["field"] for error in body["errors"]] == ["cursor"]


@pytest.mark.parametrize("seq", [2**63, -(2**63) - 1, 10**30])
async def test_a_wallet_cursor_beyond_bigint_is_a_400(client: httpx.AsyncClient, seq: int) -> None:
    accounts = await _accounts(client)
    _assert_bad_cursor(await _get(client, accounts, WALLET, cursor_of([seq])))


async def test_a_wallet_cursor_at_the_bigint_bounds_pages(client: httpx.AsyncClient) -> None:
    accounts = await _accounts(client)
    await deposit(client, accounts["USER"], "1.00")
    newest = await _get(client, accounts, WALLET, cursor_of([2**63 - 1]))
    assert newest.status_code == 200
    assert len(newest.json()["data"]) == 1
    oldest = await _get(client, accounts, WALLET, cursor_of([-(2**63)]))
    assert oldest.status_code == 200
    assert oldest.json()["data"] == []


@pytest.mark.parametrize("where", TIME_LISTS, ids=lambda where: where[0])
@pytest.mark.parametrize(
    "time",
    [
        "0001-01-01T00:00:00+23:59",  # before year 1 in UTC
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-23:59",  # after year 9999 in UTC
        "9999-12-31T23:59:59.999999-00:01",
        "2024-01-01T00:00:00",  # no offset: which instant?
        "2024-13-01T00:00:00+00:00",
    ],
)
async def test_a_time_cursor_out_of_range_is_a_400(
    client: httpx.AsyncClient, where: tuple[str, str], time: str
) -> None:
    accounts = await _accounts(client)
    cursor = cursor_of([time, str(uuid.uuid4())])
    _assert_bad_cursor(await _get(client, accounts, where, cursor))


@pytest.mark.parametrize("where", TIME_LISTS, ids=lambda where: where[0])
@pytest.mark.parametrize(
    "time",
    [
        "0001-01-01T00:00:00-23:59",
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T00:00:00+23:59",
    ],
)
async def test_a_time_cursor_at_the_edges_of_datetime_pages(
    client: httpx.AsyncClient, where: tuple[str, str], time: str
) -> None:
    accounts = await _accounts(client)
    response = await _get(client, accounts, where, cursor_of([time, str(uuid.uuid4())]))
    assert response.status_code == 200, response.text


async def test_a_time_cursor_with_an_offset_pages_as_the_same_instant_in_utc(
    client: httpx.AsyncClient,
) -> None:
    """Rows are compared in UTC on both databases, whatever offset the cursor's time carries."""
    accounts = await _accounts(client)
    buyer = accounts["USER"]
    await deposit(client, buyer, "10.00")
    product = await create_product(client, accounts["MERCHANT"], price="1.00")
    for _ in range(2):
        bought = await client.post(
            "/orders",
            json={"productId": product["id"], "paymentMethod": "WALLET"},
            headers=buyer.headers,
        )
        assert bought.status_code == 201, bought.text
    newest, oldest = (await client.get("/orders", headers=buyer.headers)).json()["data"]
    created = datetime.fromisoformat(newest["createdAt"])
    for zone in (UTC, timezone(timedelta(hours=5)), timezone(-timedelta(hours=9, minutes=30))):
        cursor = cursor_of([created.astimezone(zone).isoformat(), newest["id"]])
        after = await _get(client, accounts, ("/orders", "USER"), cursor)
        assert [order["id"] for order in after.json()["data"]] == [oldest["id"]], zone

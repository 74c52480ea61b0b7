"""GET /wallet, POST /wallet/deposit, POST /wallet/withdraw, GET /wallet/transactions."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from payflow.wallets import repository as wallets_repo
from payflow.wiring import AppContext
from tests.support import Account, assert_problem, register


async def _deposit(
    client: httpx.AsyncClient, account: Account, amount: Any, **headers: str
) -> httpx.Response:
    return await client.post(
        "/wallet/deposit", json={"amount": amount}, headers={**account.headers, **headers}
    )


async def _withdraw(client: httpx.AsyncClient, account: Account, amount: Any) -> httpx.Response:
    return await client.post("/wallet/withdraw", json={"amount": amount}, headers=account.headers)


async def _balance(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.get("/wallet", headers=account.headers)
    assert response.status_code == 200
    balance: str = response.json()["balance"]
    return balance


async def _history(client: httpx.AsyncClient, account: Account, **params: Any) -> dict[str, Any]:
    response = await client.get("/wallet/transactions", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_new_wallet_is_empty(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.get("/wallet", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["balance"] == "0.00"
    assert body["currency"] == "USD"
    assert body["isLocked"] is False
    assert set(body) == {"id", "balance", "currency", "isLocked", "updatedAt"}


async def test_wallet_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/wallet"), 401, "UNAUTHORIZED")
    response = await client.post("/wallet/deposit", json={"amount": "1.00"})
    assert_problem(response, 401, "UNAUTHORIZED")


async def test_deposit_returns_the_wallet_and_its_ledger_row(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        "/wallet/deposit",
        json={"amount": "12.50", "description": "top-up"},
        headers=account.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["wallet"]["balance"] == "12.50"
    transaction = body["transaction"]
    assert transaction["type"] == "DEPOSIT"
    assert transaction["status"] == "COMPLETED"
    assert transaction["amount"] == "12.50"
    assert transaction["balanceBefore"] == "0.00"
    assert transaction["balanceAfter"] == "12.50"
    assert transaction["currency"] == "USD"
    assert transaction["description"] == "top-up"
    assert transaction["referenceType"] is None
    assert await _balance(client, account) == "12.50"


async def test_numbers_and_strings_are_both_exact(client: httpx.AsyncClient) -> None:
    account = await register(client)
    for amount in (0.1, 0.2, "0.30", 19.99, 3):
        assert (await _deposit(client, account, amount)).status_code == 201
    assert await _balance(client, account) == "23.59"


async def test_withdraw_debits_and_refuses_overdraft(client: httpx.AsyncClient) -> None:
    account = await register(client)
    await _deposit(client, account, "100.00")
    response = await _withdraw(client, account, "30.25")
    assert response.status_code == 201
    assert response.json()["transaction"]["type"] == "WITHDRAWAL"
    assert response.json()["transaction"]["balanceBefore"] == "100.00"
    assert response.json()["wallet"]["balance"] == "69.75"
    refused = await _withdraw(client, account, "69.76")
    assert_problem(refused, 400, "INSUFFICIENT_FUNDS")
    assert await _balance(client, account) == "69.75"
    assert (await _withdraw(client, account, "69.75")).json()["wallet"]["balance"] == "0.00"
    assert len((await _history(client, account))["data"]) == 3


BAD_AMOUNTS = [
    "12.345",
    12.345,
    "0.001",
    "0",
    0,
    "0.00",
    "-5.00",
    -5,
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "1e-400",
    "10000000000.00",
    1e15,
    "abc",
    "",
    True,
    None,
    [1],
    {"v": 1},
]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=[repr(a) for a in BAD_AMOUNTS])
async def test_bad_amounts_are_400_and_change_nothing(
    client: httpx.AsyncClient, amount: Any
) -> None:
    account = await register(client)
    await _deposit(client, account, "50.00")
    for response in (
        await _deposit(client, account, amount),
        await _withdraw(client, account, amount),
    ):
        body = assert_problem(response, 400, "VALIDATION_ERROR")
        assert any(error["field"] == "amount" for error in body["errors"])
    assert await _balance(client, account) == "50.00"
    assert len((await _history(client, account))["data"]) == 1


async def test_a_missing_amount_or_unknown_field_is_400(client: httpx.AsyncClient) -> None:
    account = await register(client)
    for body in ({}, {"amount": "1.00", "walletId": str(uuid.uuid4())}, {"amount": "1", "x": 1}):
        response = await client.post("/wallet/deposit", json=body, headers=account.headers)
        assert_problem(response, 400, "VALIDATION_ERROR")
    assert await _balance(client, account) == "0.00"


async def test_a_balance_may_not_exceed_the_maximum(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert (await _deposit(client, account, "9999999999.99")).status_code == 201
    body = assert_problem(await _deposit(client, account, "0.01"), 400, "VALIDATION_ERROR")
    assert "maximum" in body["detail"]
    assert await _balance(client, account) == "9999999999.99"


async def test_a_locked_wallet_refuses_money_movements(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    await _deposit(client, account, "20.00")
    ctx: AppContext = app.state.context
    await ctx.db.transaction(
        lambda uow: wallets_repo.set_locked(uow.conn, uuid.UUID(account.id), True)
    )
    assert_problem(await _deposit(client, account, "1.00"), 403, "WALLET_LOCKED")
    assert_problem(await _withdraw(client, account, "1.00"), 403, "WALLET_LOCKED")
    assert len((await _history(client, account))["data"]) == 1
    await ctx.db.transaction(
        lambda uow: wallets_repo.set_locked(uow.conn, uuid.UUID(account.id), False)
    )
    assert (await _withdraw(client, account, "1.00")).status_code == 201


async def test_history_is_newest_first_with_keyset_pages(client: httpx.AsyncClient) -> None:
    account = await register(client)
    for cents in range(1, 26):
        await _deposit(client, account, f"0.{cents:02d}")
    await _withdraw(client, account, "0.05")
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = await _history(client, account, **params)
        assert page["meta"]["limit"] == 10
        seen.extend(page["data"])
        cursor = page["meta"]["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == 26
    assert len({row["id"] for row in seen}) == 26
    assert seen[0]["type"] == "WITHDRAWAL"
    # newest first, and a continuous chain
    for newer, older in itertools.pairwise(seen):
        assert newer["balanceBefore"] == older["balanceAfter"]
    assert seen[-1]["balanceBefore"] == "0.00"
    assert seen[0]["balanceAfter"] == await _balance(client, account)


async def test_history_filters_by_type(client: httpx.AsyncClient) -> None:
    account = await register(client)
    await _deposit(client, account, "10.00")
    await _withdraw(client, account, "1.00")
    await _deposit(client, account, "2.00")
    deposits = (await _history(client, account, type="DEPOSIT"))["data"]
    assert [row["amount"] for row in deposits] == ["2.00", "10.00"]
    withdrawals = (await _history(client, account, type="WITHDRAWAL"))["data"]
    assert [row["amount"] for row in withdrawals] == ["1.00"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"cursor": "!!"},
        {"cursor": "WyJ4Il0"},
        {"type": "BOGUS"},
    ],
)
async def test_bad_history_queries_are_400(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    account = await register(client)
    response = await client.get("/wallet/transactions", params=params, headers=account.headers)
    assert_problem(response, 400, "VALIDATION_ERROR")


async def test_history_is_private(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    await _deposit(client, alice, "5.00")
    assert (await _history(client, bob))["data"] == []
    assert await _balance(client, bob) == "0.00"

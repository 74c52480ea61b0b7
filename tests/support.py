"""Small client-side helpers for tests: what an API user would do, said once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str
    body: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


async def register(
    client: httpx.AsyncClient,
    *,
    role: str = "USER",
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    **extra: Any,
) -> Account:
    email = email or unique_email(role.lower())
    response = await client.post(
        "/auth/register", json={"email": email, "password": password, "role": role, **extra}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        id=body["user"]["id"],
        email=body["user"]["email"],
        password=password,
        access_token=body["accessToken"],
        refresh_token=body["refreshToken"],
        body=body,
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["requestId"] == response.headers["x-request-id"]
    for key in ("type", "title", "detail", "instance"):
        assert key in body
    return body


async def deposit(client: httpx.AsyncClient, account: Account, amount: str) -> None:
    response = await client.post(
        "/wallet/deposit", json={"amount": amount}, headers=account.headers
    )
    assert response.status_code == 201, response.text


async def balance(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.get("/wallet", headers=account.headers)
    assert response.status_code == 200, response.text
    value: str = response.json()["balance"]
    return value


async def create_product(
    client: httpx.AsyncClient,
    merchant: Account,
    *,
    price: str = "10.00",
    units: int = 10,
    name: str | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/products",
        json={
            "name": name or f"product-{uuid.uuid4().hex[:8]}",
            "price": price,
            "availableUnits": units,
        },
        headers=merchant.headers,
    )
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product


async def ledger(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    """The account's whole ledger, newest first."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/wallet/transactions", params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        rows.extend(response.json()["data"])
        cursor = response.json()["meta"]["nextCursor"]
        if cursor is None:
            return rows

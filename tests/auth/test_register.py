"""POST /auth/register."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.wallets.models import wallets
from payflow.wiring import AppContext
from tests.support import assert_problem, register, unique_email


async def test_register_returns_user_and_token_pair(client: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await client.post(
        "/auth/register",
        json={"email": email, "password": "longenough1", "firstName": "Ada", "lastName": "L"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 900
    assert body["user"]["email"] == email
    assert body["user"]["role"] == "USER"
    assert body["user"]["firstName"] == "Ada"
    assert body["user"]["isActive"] is True
    assert "password" not in response.text
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {body['accessToken']}"})
    assert me.status_code == 200
    assert me.json()["id"] == body["user"]["id"]


async def test_register_creates_an_empty_wallet_with_the_user(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    ctx: AppContext = app.state.context

    async def wallet_rows(conn: AsyncConnection) -> list[Row[Any]]:
        query = wallets.select().where(wallets.c.user_id == uuid.UUID(account.id))
        return list((await conn.execute(query)).all())

    rows = await ctx.db.read(wallet_rows)
    assert len(rows) == 1
    assert rows[0].balance == 0
    assert rows[0].currency == "USD"


async def test_merchant_role_can_be_chosen(client: httpx.AsyncClient) -> None:
    account = await register(client, role="MERCHANT")
    assert account.body["user"]["role"] == "MERCHANT"


async def test_email_is_case_insensitive_and_unique(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    response = await client.post(
        "/auth/register", json={"email": email.upper(), "password": "longenough1"}
    )
    assert_problem(response, 409, "EMAIL_TAKEN")


@pytest.mark.parametrize(
    "extra",
    [
        {"role": "ADMIN"},
        {"balance": "1000.00"},
        {"id": "00000000-0000-0000-0000-000000000001"},
        {"isActive": False},
    ],
    ids=["role-admin", "balance", "id", "isActive"],
)
async def test_mass_assignment_is_refused(
    client: httpx.AsyncClient, extra: dict[str, object]
) -> None:
    email = unique_email()
    response = await client.post(
        "/auth/register", json={"email": email, "password": "longenough1", **extra}
    )
    assert_problem(response, 400, "VALIDATION_ERROR")
    # Nothing was created: the email is still free.
    await register(client, email=email)


@pytest.mark.parametrize(
    ("password", "why"),
    [("a" * 73, "73 bytes"), ("é" * 37, "74 bytes in UTF-8"), ("short", "under 8 bytes")],
)
async def test_password_size_is_checked_in_utf8_bytes(
    client: httpx.AsyncClient, password: str, why: str
) -> None:
    response = await client.post(
        "/auth/register", json={"email": unique_email(), "password": password}
    )
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "password", why


async def test_a_72_byte_password_is_accepted(client: httpx.AsyncClient) -> None:
    account = await register(client, password="p" * 72)
    response = await client.post("/auth/login", json={"email": account.email, "password": "p" * 72})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "not-an-email", "password": "longenough1"}, {"email": 5, "password": 7}],
)
async def test_malformed_registration_is_a_400(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    assert_problem(await client.post("/auth/register", json=body), 400, "VALIDATION_ERROR")

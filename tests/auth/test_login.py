"""POST /auth/login."""

from __future__ import annotations

import uuid

import bcrypt
import httpx
import pytest
from fastapi import FastAPI

from payflow.config import Settings
from payflow.core.security import PasswordHasher
from payflow.users import repository as users_repo
from payflow.wiring import AppContext
from tests.support import assert_problem, register, unique_email


async def test_login_returns_a_working_token_pair(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        "/auth/login", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["id"] == account.id
    assert body["tokenType"] == "Bearer"
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {body['accessToken']}"})
    assert me.status_code == 200


async def test_login_records_last_login_at(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert account.body["user"]["lastLoginAt"] is None
    response = await client.post(
        "/auth/login", json={"email": account.email.upper(), "password": account.password}
    )
    assert response.json()["user"]["lastLoginAt"] is not None


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    wrong_password = await client.post(
        "/auth/login", json={"email": account.email, "password": "not-the-password"}
    )
    unknown_email = await client.post(
        "/auth/login", json={"email": unique_email(), "password": account.password}
    )
    first = assert_problem(wrong_password, 401, "INVALID_CREDENTIALS")
    second = assert_problem(unknown_email, 401, "INVALID_CREDENTIALS")
    for body in (first, second):
        body.pop("requestId")
    assert first == second


async def test_unknown_email_is_checked_against_a_dummy_hash_of_the_same_cost() -> None:
    hasher = PasswordHasher(rounds=12)
    real = await hasher.hash("some-password")
    assert real.startswith("$2b$12$")
    assert hasher._dummy_hash.startswith(b"$2b$12$")
    assert await hasher.verify("some-password", None) is False
    assert await hasher.verify("some-password", real) is True


def test_bcrypt_cost_is_12_by_default() -> None:
    settings = Settings(_env_file=None)
    assert settings.bcrypt_rounds == 12
    hasher = PasswordHasher(settings.bcrypt_rounds)
    assert bcrypt.checkpw(b"x", bcrypt.hashpw(b"x", hasher._dummy_hash[:29]))
    assert hasher._dummy_hash[:7] == b"$2b$12$"


async def test_a_73_byte_password_at_login_is_a_400(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post("/auth/login", json={"email": account.email, "password": "a" * 73})
    assert_problem(response, 400, "VALIDATION_ERROR")


async def test_a_disabled_account_cannot_log_in(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await register(client)
    ctx: AppContext = app.state.context
    await ctx.db.transaction(
        lambda uow: users_repo.set_active(uow.conn, uuid.UUID(account.id), False)
    )
    response = await client.post(
        "/auth/login", json={"email": account.email, "password": account.password}
    )
    assert_problem(response, 403, "ACCOUNT_DISABLED")
    # ... and says nothing about it to someone who does not know the password.
    wrong = await client.post(
        "/auth/login", json={"email": account.email, "password": "wrong-pass"}
    )
    assert_problem(wrong, 401, "INVALID_CREDENTIALS")


@pytest.mark.parametrize(
    "body", [{"email": "a@b.c"}, {"password": "x"}, {"email": "", "password": "x"}]
)
async def test_incomplete_login_is_a_400(client: httpx.AsyncClient, body: dict[str, str]) -> None:
    assert_problem(await client.post("/auth/login", json=body), 400, "VALIDATION_ERROR")

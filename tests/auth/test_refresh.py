"""POST /auth/refresh and /auth/logout: rotation, reuse detection, family revocation."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.auth.models import refresh_tokens
from payflow.core.security import token_hash
from payflow.wiring import AppContext
from tests.support import assert_problem, register


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refreshToken": token})


async def test_refresh_rotates_the_pair(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await _refresh(client, account.refresh_token)
    assert response.status_code == 200
    body = response.json()
    assert body["tokenType"] == "Bearer"
    assert body["refreshToken"] != account.refresh_token
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {body['accessToken']}"})
    assert me.json()["id"] == account.id
    # the new refresh token works in turn
    assert (await _refresh(client, body["refreshToken"])).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    ctx: AppContext = app.state.context

    async def stored(conn: AsyncConnection) -> list[str]:
        rows = await conn.execute(
            sa.select(refresh_tokens.c.token_hash).where(
                refresh_tokens.c.user_id == uuid.UUID(account.id)
            )
        )
        return [row.token_hash for row in rows]

    hashes = await ctx.db.read(stored)
    assert hashes == [token_hash(account.refresh_token)]
    assert account.refresh_token not in hashes


async def test_reusing_a_spent_token_revokes_the_family_and_commits_it(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    rotated = (await _refresh(client, account.refresh_token)).json()["refreshToken"]
    # The spent token is presented again (as a thief would):
    assert_problem(await _refresh(client, account.refresh_token), 401, "UNAUTHORIZED")
    # The revocation was committed although that request answered 401: the legitimate
    # successor from the same family no longer works either.
    assert_problem(await _refresh(client, rotated), 401, "UNAUTHORIZED")
    # A fresh login starts a new family that works.
    login = await client.post(
        "/auth/login", json={"email": account.email, "password": account.password}
    )
    assert (await _refresh(client, login.json()["refreshToken"])).status_code == 200


async def test_concurrent_refreshes_of_one_token_let_at_most_one_through(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    responses = await asyncio.gather(*(_refresh(client, account.refresh_token) for _ in range(5)))
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) <= 1
    assert all(r.status_code in (200, 401) for r in responses)
    for winner in winners:
        # a concurrent reuse was detected, so even the winner's family is revoked
        assert_problem(await _refresh(client, winner.json()["refreshToken"]), 401, "UNAUTHORIZED")


async def test_logout_revokes_the_family(client: httpx.AsyncClient) -> None:
    account = await register(client)
    rotated = (await _refresh(client, account.refresh_token)).json()["refreshToken"]
    response = await client.post(
        "/auth/logout", json={"refreshToken": rotated}, headers=account.headers
    )
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await _refresh(client, rotated), 401, "UNAUTHORIZED")


async def test_logout_requires_authentication(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post("/auth/logout", json={"refreshToken": account.refresh_token})
    assert_problem(response, 401, "UNAUTHORIZED")
    assert (await _refresh(client, account.refresh_token)).status_code == 200


async def test_nobody_can_log_out_another_users_session(client: httpx.AsyncClient) -> None:
    victim = await register(client)
    attacker = await register(client)
    response = await client.post(
        "/auth/logout", json={"refreshToken": victim.refresh_token}, headers=attacker.headers
    )
    assert_problem(response, 401, "UNAUTHORIZED")
    assert (await _refresh(client, victim.refresh_token)).status_code == 200


async def test_garbage_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(await _refresh(client, "garbage"), 401, "UNAUTHORIZED")
    assert_problem(await client.post("/auth/refresh", json={}), 400, "VALIDATION_ERROR")

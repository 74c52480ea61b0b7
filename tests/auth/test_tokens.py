"""Access tokens: what /users/me (and every authenticated route) accepts and refuses."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI

from payflow.config import DEV_ACCESS_SECRET
from payflow.users import repository as users_repo
from payflow.wiring import AppContext
from tests.crafted import signed_token
from tests.support import assert_problem, register


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: str, **overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": user_id,
        "jti": str(uuid.uuid4()),
        "iss": "payflow",
        "aud": "payflow-api",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "type": "access",
    }
    claims.update(overrides)
    return claims


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


async def test_token_claims_and_header(client: httpx.AsyncClient) -> None:
    account = await register(client)
    header = jwt.get_unverified_header(account.access_token)
    assert header == {"alg": "HS256", "typ": "at+jwt"}
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    assert {"sub", "jti", "iss", "aud", "exp", "iat"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 900
    refresh_header = jwt.get_unverified_header(account.refresh_token)
    assert refresh_header["typ"] == "rt+jwt"
    refresh_claims = jwt.decode(account.refresh_token, options={"verify_signature": False})
    assert refresh_claims["exp"] - refresh_claims["iat"] == 604800


async def test_missing_or_malformed_authorization_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/users/me"), 401, "UNAUTHORIZED")
    assert_problem(await _me(client, "not-a-jwt"), 401, "UNAUTHORIZED")
    basic = await client.get("/users/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(basic, 401, "UNAUTHORIZED")


async def test_alg_none_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    token = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(_claims(account.id))}."
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_token_signed_with_another_key_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    forged = jwt.encode(
        _claims(account.id), "another-key-" * 4, algorithm="HS256", headers={"typ": "at+jwt"}
    )
    assert_problem(await _me(client, forged), 401, "UNAUTHORIZED")


async def test_another_algorithm_with_the_right_key_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    token = jwt.encode(
        _claims(account.id), DEV_ACCESS_SECRET, algorithm="HS512", headers={"typ": "at+jwt"}
    )
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_correctly_signed_token_is_accepted(client: httpx.AsyncClient) -> None:
    """The control for the attacks above: the same construction with the real key works."""
    account = await register(client)
    token = jwt.encode(
        _claims(account.id), DEV_ACCESS_SECRET, algorithm="HS256", headers={"typ": "at+jwt"}
    )
    assert (await _me(client, token)).status_code == 200


async def test_an_expired_token_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    past = datetime.now(UTC) - timedelta(hours=1)
    token = jwt.encode(
        _claims(account.id, iat=int(past.timestamp()), exp=int(past.timestamp()) + 60),
        DEV_ACCESS_SECRET,
        algorithm="HS256",
        headers={"typ": "at+jwt"},
    )
    body = assert_problem(await _me(client, token), 401, "UNAUTHORIZED")
    assert "expired" in body["detail"]


async def test_wrong_issuer_or_audience_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    for override in ({"iss": "someone-else"}, {"aud": "another-api"}):
        token = jwt.encode(
            _claims(account.id, **override),
            DEV_ACCESS_SECRET,
            algorithm="HS256",
            headers={"typ": "at+jwt"},
        )
        assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_token_without_jti_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    claims = _claims(account.id)
    claims.pop("jti")
    token = jwt.encode(claims, DEV_ACCESS_SECRET, algorithm="HS256", headers={"typ": "at+jwt"})
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_refresh_token_is_not_a_bearer_token(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert_problem(await _me(client, account.refresh_token), 401, "UNAUTHORIZED")


async def test_an_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post("/auth/refresh", json={"refreshToken": account.access_token})
    assert_problem(response, 401, "UNAUTHORIZED")


async def test_tokens_of_a_disabled_user_are_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    ctx: AppContext = app.state.context
    await ctx.db.transaction(
        lambda uow: users_repo.set_active(uow.conn, uuid.UUID(account.id), False)
    )
    assert_problem(await _me(client, account.access_token), 403, "ACCOUNT_DISABLED")
    refreshed = await client.post("/auth/refresh", json={"refreshToken": account.refresh_token})
    assert_problem(refreshed, 403, "ACCOUNT_DISABLED")


async def test_tokens_of_an_unknown_user_are_refused(client: httpx.AsyncClient) -> None:
    token = jwt.encode(
        _claims(str(uuid.uuid4())), DEV_ACCESS_SECRET, algorithm="HS256", headers={"typ": "at+jwt"}
    )
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", 1e20),
        ("exp", 10**30),
        ("exp", 1e17),
        ("exp", 2**63),
        ("exp", float("inf")),
        ("exp", float("nan")),
        ("iat", -1e20),
        ("iat", 1e20),
        ("iat", float("-inf")),
        ("nbf", -1e20),
        ("nbf", float("nan")),
        ("sub", 5),
        ("jti", 5.5),
        ("fam", 5),
        ("fam", ["x"]),
    ],
)
async def test_a_signed_token_whose_claim_is_no_time_or_id_is_401(
    client: httpx.AsyncClient, app: FastAPI, claim: str, value: object
) -> None:
    """Numbers PyJWT accepts as times (1e20 is a number) but no datetime holds, and ids that are
    not strings: correctly signed, still refused, as an access token and as a refresh token."""
    config = app.state.context.settings
    account = await register(client)
    access = signed_token(config, account.id, {claim: value})
    assert_problem(await _me(client, access), 401, "UNAUTHORIZED")
    refresh = signed_token(config, account.id, {claim: value}, refresh=True)
    response = await client.post("/auth/refresh", json={"refreshToken": refresh})
    assert_problem(response, 401, "UNAUTHORIZED")
    # Nothing was revoked: the account's own refresh token still works.
    rotated = await client.post("/auth/refresh", json={"refreshToken": account.refresh_token})
    assert rotated.status_code == 200, rotated.text

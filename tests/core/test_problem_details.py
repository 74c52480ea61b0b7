"""Validation problems read well: each listed once, enum values shown as values, and a malformed
body reported with where it breaks, not as a field named after a number."""

from __future__ import annotations

import httpx


async def _register(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(
        "/auth/register", content=body, headers={"Content-Type": "application/json"}
    )


async def test_each_registration_problem_is_listed_once(client: httpx.AsyncClient) -> None:
    response = await _register(client, b'{"email": "x", "password": "short", "role": "ADMIN"}')
    assert response.status_code == 400
    fields = [error["field"] for error in response.json()["errors"]]
    assert sorted(fields) == ["email", "password", "role"]


async def test_enum_values_are_shown_as_values(client: httpx.AsyncClient) -> None:
    response = await _register(
        client, b'{"email": "a@example.com", "password": "long enough", "role": "ADMIN"}'
    )
    [error] = response.json()["errors"]
    assert error["field"] == "role"
    assert error["message"] == "Input should be 'USER' or 'MERCHANT'"


async def test_malformed_json_says_where(client: httpx.AsyncClient) -> None:
    response = await _register(client, b'{"email": ')
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["detail"] == "The request body is not valid JSON"
    [error] = body["errors"]
    assert error["field"] == ""
    assert error["message"].startswith("not valid JSON at character 10: ")

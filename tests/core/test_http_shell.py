"""The HTTP shell of docs/api.md: prefix, problems, request ids, size and media-type limits, headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from payflow.app import create_app
from payflow.auth.dependencies import MerchantUser
from payflow.config import Settings
from tests.support import assert_problem, register

HELMET_HEADERS = {
    "content-security-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "origin-agent-cluster",
    "referrer-policy",
    "strict-transport-security",
    "x-content-type-options",
    "x-dns-prefetch-control",
    "x-download-options",
    "x-frame-options",
    "x-permitted-cross-domain-policies",
    "x-xss-protection",
}


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")
    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_request_id_is_echoed_and_an_unsafe_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    echoed = await client.get("/health/live", headers={"X-Request-ID": "abc-123.DEF_9"})
    assert echoed.headers["x-request-id"] == "abc-123.DEF_9"
    unsafe = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith<html>"})
    assert unsafe.headers["x-request-id"] != "bad id\twith<html>"
    too_long = await client.get("/health/live", headers={"X-Request-ID": "a" * 500})
    assert len(too_long.headers["x-request-id"]) <= 128


async def test_security_headers_are_on_success_and_error_responses(
    client: httpx.AsyncClient,
) -> None:
    for response in (await client.get("/health/live"), await client.get("/no-such-route")):
        assert HELMET_HEADERS <= set(response.headers.keys())
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "SAMEORIGIN"


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/no-such-route"), 404, "NOT_FOUND")
    assert body["instance"] == "/api/v1/no-such-route"


async def test_routes_live_under_the_api_prefix(client: httpx.AsyncClient) -> None:
    outside = await client.post("http://payflow.test/auth/login", json={})
    assert_problem(outside, 404, "NOT_FOUND")


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/users/me")
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


async def test_a_body_over_one_mebibyte_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"email": "' + b"a" * (1024 * 1024) + b'"}'
    response = await client.post(
        "/auth/login", content=big, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_a_streamed_body_over_one_mebibyte_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 65536  # 1.25 MiB in all, without a Content-Length

    response = await client.post(
        "/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_a_body_just_under_the_limit_is_parsed(client: httpx.AsyncClient) -> None:
    padding = " " * (1024 * 1024 - 100)
    content = ('{"email": "x@y.z", "password": "whatever1"}' + padding).encode()
    response = await client.post(
        "/auth/login", content=content, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 401, "INVALID_CREDENTIALS")


async def test_a_non_json_body_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b"email=a&password=b", headers={"Content-Type": "text/plain"}
    )
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    form = await client.post("/auth/login", data={"email": "a", "password": "b"})
    assert_problem(form, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert "JSON" in body["detail"]


async def test_a_json_array_instead_of_an_object_is_a_400(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/auth/login", json=[1, 2]), 400, "VALIDATION_ERROR")


async def test_validation_problems_list_each_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/register", json={"email": "nope", "unknown": 1})
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    fields = {error["field"] for error in body["errors"]}
    assert {"email", "password", "unknown"} <= fields


@pytest.fixture
async def probe_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app plus two probe routes, to exercise shared pieces no public route covers yet."""
    application = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM users WHERE password = 'hunter2'")

    async def merchants_only(user: MerchantUser) -> dict[str, str]:
        return {"id": str(user.id)}

    application.add_api_route("/api/v1/probe/boom", boom)
    application.add_api_route("/api/v1/probe/merchants-only", merchants_only)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def probe(probe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=probe_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://payflow.test/api/v1") as c:
        yield c


async def test_an_unexpected_error_is_a_500_problem_that_leaks_nothing(
    probe: httpx.AsyncClient,
) -> None:
    response = await probe.get("/probe/boom")
    body = assert_problem(response, 500, "INTERNAL_ERROR")
    for secret in ("SELECT", "hunter2", "RuntimeError", "Traceback", "password"):
        assert secret not in response.text
    assert HELMET_HEADERS <= set(response.headers.keys())
    assert body["detail"] == "An unexpected error occurred"


async def test_role_dependency_lets_merchants_through_and_refuses_users(
    probe: httpx.AsyncClient,
) -> None:
    merchant = await register(probe, role="MERCHANT")
    user = await register(probe, role="USER")
    allowed = await probe.get("/probe/merchants-only", headers=merchant.headers)
    assert allowed.status_code == 200
    assert allowed.json() == {"id": merchant.id}
    assert_problem(await probe.get("/probe/merchants-only", headers=user.headers), 403, "FORBIDDEN")
    assert_problem(await probe.get("/probe/merchants-only"), 401, "UNAUTHORIZED")


async def test_api_responses_are_never_cached(client: httpx.AsyncClient) -> None:
    account = await register(client)
    for response in (
        await client.get("/users/me", headers=account.headers),
        await client.post("/auth/login", json={"email": account.email, "password": "wrong-pass"}),
    ):
        assert response.headers["cache-control"] == "no-store"


async def test_every_operation_and_tag_is_described(client: httpx.AsyncClient) -> None:
    """The OpenAPI document tells a reader what each operation does, not only its shape."""
    document = (await client.get("/openapi.json")).json()
    tags = {tag["name"]: tag.get("description") for tag in document["tags"]}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            assert operation.get("description"), (method, path)
            for tag in operation["tags"]:
                assert tags.get(tag), f"tag {tag} of {method} {path} has no description"

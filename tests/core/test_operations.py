"""Health, readiness, metrics and CORS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from payflow.app import create_app
from payflow.config import Settings
from tests.support import assert_problem, register


async def test_liveness_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


async def test_probes_also_answer_at_the_root(client: httpx.AsyncClient) -> None:
    assert (await client.get("http://payflow.test/health/live")).status_code == 200
    assert (await client.get("http://payflow.test/metrics")).status_code == 200


async def test_readiness_is_503_while_the_database_is_unreachable(
    settings: Settings, tmp_path: Path
) -> None:
    if settings.is_sqlite:
        (tmp_path / "a-file").write_text("not a folder")
        broken = settings.model_copy(
            update={"database_url": f"sqlite+aiosqlite:///{tmp_path}/a-file/payflow.db"}
        )
    else:
        broken = settings.model_copy(
            update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
        )
    app = create_app(broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            assert (await client.get("/health/live")).status_code == 200
            body = assert_problem(await client.get("/health/ready"), 503, "SERVICE_UNAVAILABLE")
            assert "database" in body["detail"]
            # and a request that needs the database is a 503 too, never a 500
            response = await client.post(
                "/auth/login", json={"email": "a@b.cd", "password": "whatever1"}
            )
            assert_problem(response, 503, "SERVICE_UNAVAILABLE")


async def test_readiness_is_503_while_a_configured_redis_is_unreachable(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            body = assert_problem(await client.get("/health/ready"), 503, "SERVICE_UNAVAILABLE")
            assert "redis" in body["detail"]


async def test_metrics_count_requests_by_route_and_status(client: httpx.AsyncClient) -> None:
    await register(client)
    await client.post("/auth/login", json={"email": "nobody@example.com", "password": "x1234567"})
    text = (await client.get("/metrics")).text
    assert "payflow_http_requests_total" in text
    assert "payflow_http_request_duration_seconds_bucket" in text
    lines = [line for line in text.splitlines() if line.startswith("payflow_http_requests_total{")]
    assert any('route="/api/v1/auth/register"' in line and 'status="201"' in line for line in lines)
    assert any('route="/api/v1/auth/login"' in line and 'status="401"' in line for line in lines)


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        settings.model_copy(update={"cors_origins": ["https://shop.example.com"]})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            yield client


async def test_cors_allows_only_configured_origins(cors_client: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = await cors_client.options(
        "/auth/login", headers={"Origin": "https://shop.example.com", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example.com"
    denied = await cors_client.options(
        "/auth/login", headers={"Origin": "https://evil.example.net", **preflight}
    )
    assert "access-control-allow-origin" not in denied.headers
    simple = await cors_client.get("/health/live", headers={"Origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in simple.headers


async def test_no_cors_without_configured_origins(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"Origin": "https://shop.example.com"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings(_env_file=None)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]

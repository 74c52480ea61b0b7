"""Closing the operators' surfaces in production: METRICS_TOKEN guards /metrics, DOCS_ENABLED=false
removes the interactive docs (the OpenAPI document stays: it is the API's published contract)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from payflow.app import create_app
from payflow.config import Settings

TOKEN = "metrics-" + "t" * 40


@asynccontextmanager
async def _client(settings: Settings, **update: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=update))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://payflow.test") as c:
            yield c


async def test_metrics_need_the_token_when_one_is_set(settings: Settings) -> None:
    async with _client(settings, metrics_token=TOKEN) as client:
        for path in ("/metrics", "/api/v1/metrics"):
            anonymous = await client.get(path)
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"].startswith("application/problem+json")
            assert anonymous.json()["code"] == "UNAUTHORIZED"
            wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            bare = await client.get(path, headers={"Authorization": TOKEN})  # no scheme
            assert bare.status_code == 401
            allowed = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert allowed.status_code == 200
            assert "payflow_http_requests_total" in allowed.text


async def test_without_a_token_metrics_stay_open(settings: Settings) -> None:
    async with _client(settings) as client:
        assert (await client.get("/metrics")).status_code == 200


async def test_docs_can_be_switched_off_and_the_openapi_document_stays(
    settings: Settings,
) -> None:
    async with _client(settings, docs_enabled=False) as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/docs/init.js")).status_code == 404
        assert (await client.get("/docs/assets/swagger-ui.css")).status_code == 404
        assert (await client.get("/api/v1/openapi.json")).status_code == 200
    async with _client(settings) as client:
        assert (await client.get("/docs")).status_code == 200

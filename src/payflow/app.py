"""create_app(): the FastAPI application with its middleware, routers, error handlers and resources."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from payflow.auth.router import router as auth_router
from payflow.config import Settings
from payflow.core.context import AppContext
from payflow.core.logging import configure_logging
from payflow.core.middleware import RequestShellMiddleware
from payflow.core.problems import install_problem_handlers
from payflow.core.schemas import Problem
from payflow.health.router import router as health_router
from payflow.orders.router import router as orders_router
from payflow.payments.router import router as payments_router
from payflow.payments.setup import SANDBOX_PREFIX
from payflow.payments.sweeper import run_forever as sweeper_loop
from payflow.products.router import router as products_router
from payflow.sandbox import create_sandbox_app
from payflow.users.router import router as users_router
from payflow.wallets.router import router as wallets_router

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
SWAGGER_ASSETS = "/docs/assets"

_DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>payflow API</title>
  <link rel="icon" href="{SWAGGER_ASSETS}/favicon-32x32.png">
  <link rel="stylesheet" href="{SWAGGER_ASSETS}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{SWAGGER_ASSETS}/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""
# A separate script (not inline) so that the page works under the strict Content-Security-Policy.
_DOCS_INIT_JS = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_URL}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
}});
"""


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(auth_router)
    api.include_router(users_router)
    api.include_router(wallets_router)
    api.include_router(products_router)
    api.include_router(orders_router)
    api.include_router(payments_router)
    api.include_router(health_router)
    return api


def _install_docs(app: FastAPI) -> None:
    assets = files("payflow") / "static" / "swagger-ui"
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=str(assets)), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(_DOCS_HTML)

    @app.get("/docs/init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(_DOCS_INIT_JS, media_type="text/javascript")


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        for name, definition in components["Problem"].pop("$defs", {}).items():
            components.setdefault(name, definition)
        app.openapi_schema = schema
    return app.openapi_schema


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings | None = None, context: AppContext | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    ctx = context or AppContext.create(settings)

    sandbox_app = create_sandbox_app(ctx.sandbox) if ctx.sandbox else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(ctx.close)
            if sandbox_app is not None:
                # Starlette does not run a mounted app's lifespan: run the sandbox's here.
                await stack.enter_async_context(sandbox_app.router.lifespan_context(sandbox_app))
            sweeper = asyncio.create_task(
                sweeper_loop(ctx, ctx.settings.sweeper_interval_seconds), name="payflow-sweeper"
            )
            stack.push_async_callback(_stop, sweeper)
            yield

    app = FastAPI(
        title="payflow",
        version="0.1.0",
        description="Wallets, an immutable ledger, limited stock and Stripe Checkout.",
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = ctx
    install_problem_handlers(app)
    app.include_router(_api_router())
    # Operators' probes also answer at the root, where load balancers and Prometheus look first.
    app.include_router(health_router, include_in_schema=False)
    _install_docs(app)
    if sandbox_app is not None:
        app.mount(SANDBOX_PREFIX, sandbox_app, name="payments-sandbox")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-Request-ID",
            ],
            expose_headers=["X-Request-ID", "Idempotent-Replayed", "Retry-After", "ETag"],
            max_age=600,
        )
    app.add_middleware(RequestShellMiddleware, metrics=ctx.metrics, api_prefix=API_PREFIX)
    return app

"""create_app(): the composition root — the FastAPI application with its middleware, routers, error
handlers and resources, and the wiring between domains (orders handle the checkout events payments
receives)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.resources import files
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.staticfiles import StaticFiles

from payflow import pages
from payflow.auth.dependencies import get_current_user
from payflow.auth.router import router as auth_router
from payflow.config import Settings
from payflow.core.logging import configure_logging
from payflow.core.middleware import RequestShellMiddleware
from payflow.core.problems import install_problem_handlers
from payflow.core.schemas import Problem, add_problem_responses
from payflow.health.router import router as health_router
from payflow.orders import checkout_events
from payflow.orders.checkout_pages import router as checkout_pages_router
from payflow.orders.router import router as orders_router
from payflow.orders.sweeper import run_forever as sweeper_loop
from payflow.paths import API_PREFIX, OPENAPI_URL, SANDBOX_PREFIX
from payflow.payments.router import webhook_router
from payflow.products.router import router as products_router
from payflow.sandbox import create_sandbox_app
from payflow.users.router import router as users_router
from payflow.wallets.router import router as wallets_router
from payflow.wiring import AppContext

SWAGGER_ASSETS = "/docs/assets"

OPENAPI_TAGS = [
    {"name": "auth", "description": "Accounts, sign-in, token rotation and sign-out."},
    {"name": "users", "description": "The signed-in user."},
    {"name": "wallet", "description": "Your balance, deposits, withdrawals and your ledger."},
    {"name": "products", "description": "The catalogue; merchants create and manage products."},
    {
        "name": "orders",
        "description": "Purchases (wallet or Stripe Checkout), refunds, cancellations, and reading "
        "orders as a buyer or a merchant.",
    },
    {
        "name": "payments",
        "description": "Stripe's signed webhooks, and the pages a buyer returns to from Checkout.",
    },
    {"name": "operations", "description": "Liveness, readiness and metrics for operators."},
]

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
    api.include_router(checkout_pages_router)
    # payments knows nothing of orders: the app hands Stripe's checkout events to orders.
    api.include_router(webhook_router(checkout_events.handle))
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


def _install_pages(app: FastAPI, *, docs: bool, sandbox: bool) -> None:
    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return pages.landing(docs=docs, sandbox=sandbox)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(
            pages.favicon(),
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )


# Problems any operation can answer with, whatever its route declares: a malformed request, an
# unexpected failure, and the database (or another required service) being down.
_EVERY_OPERATION = ("VALIDATION_ERROR", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE")
_AUTHENTICATED = ("UNAUTHORIZED", "ACCOUNT_DISABLED")
# RequestShellMiddleware reads the body of these methods, and refuses it when too large or not JSON.
_BODY_METHODS = ("post", "put", "patch", "delete")
_WITH_BODY = ("PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE")
_IDEMPOTENT = ("IDEMPOTENCY_KEY_IN_USE", "IDEMPOTENCY_KEY_MISMATCH")
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _dependency_calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


def _route_problems(route: RouteContext, operation: dict[str, Any]) -> tuple[set[str], bool]:
    """The problem codes the shared machinery lets this operation answer with, and whether
    its authentication is optional (a bearer token is read, but anonymous callers are let in)."""
    codes = set(_EVERY_OPERATION)
    calls = list(_dependency_calls(route.dependant))
    parameters = operation.get("parameters", [])
    if operation.get("security"):
        codes.update(_AUTHENTICATED)
    if any(parameter["in"] == "path" for parameter in parameters):
        codes.add("NOT_FOUND")
    if any(p["in"] == "header" and p["name"].lower() == "idempotency-key" for p in parameters):
        codes.update(_IDEMPOTENT)
    optional_auth = bool(operation.get("security")) and get_current_user not in calls
    return codes, optional_auth


def _declare_problems(app: FastAPI, schema: dict[str, Any]) -> None:
    """Every operation declares every problem it can answer with, in one place: the statuses that
    the middleware, the error handlers and the shared dependencies produce for any route are added
    here, next to the ones each route lists for itself in `responses=`."""
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path_format is None:
            continue
        for method in sorted(route.methods or ()):
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            codes, optional_auth = _route_problems(route, operation)
            if method.lower() in _BODY_METHODS:
                codes.update(_WITH_BODY)
            responses = operation.setdefault("responses", {})
            # FastAPI's own 422 body: this API answers a validation failure with a 400 problem.
            default_422 = responses.get("422", {}).get("content", {}).get("application/json")
            if default_422 is not None:
                del responses["422"]
            add_problem_responses(operation, codes)
            operation["responses"] = dict(sorted(responses.items()))
            if optional_auth:
                operation["security"] = [*operation["security"], {}]
    components = schema.get("components", {}).get("schemas", {})
    text = orjson.dumps(schema["paths"]).decode()
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if f"#/components/schemas/{name}" not in text:
            components.pop(name, None)


def _parameter_schema(parameter: dict[str, Any]) -> None:
    """What a parameter can really be on the wire. FastAPI describes an optional parameter as
    "string or null", but a header, query or path parameter is text or absent, never JSON null
    (`required: false` already says it may be absent). And every path parameter of this API names
    a resource by its UUID (a malformed one is a 404, like an unknown id)."""
    schema = parameter.get("schema", {})
    branches = schema.get("anyOf")
    if branches is not None:
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema.update({**kept[0], **schema})
        else:
            schema["anyOf"] = kept
    if parameter["in"] == "path" and parameter["name"].endswith("_id"):
        schema.setdefault("format", "uuid")


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        for name, definition in components["Problem"].pop("$defs", {}).items():
            components.setdefault(name, definition)
        _declare_problems(app, schema)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    _parameter_schema(parameter)
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
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = ctx
    install_problem_handlers(app)
    app.include_router(_api_router())
    # Operators' probes also answer at the root, where load balancers and Prometheus look first.
    app.include_router(health_router, include_in_schema=False)
    if settings.docs_enabled:
        _install_docs(app)
    _install_pages(app, docs=settings.docs_enabled, sandbox=sandbox_app is not None)
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

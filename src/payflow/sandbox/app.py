"""create_sandbox_app(): the payments sandbox as one FastAPI app, mountable under any prefix.

Routes: Stripe's API under /v1, the hosted checkout page under /checkout, the control API under
/_sandbox. `app.state.sandbox` is the running Sandbox. Errors, including unknown routes, use
Stripe's `{"error": {...}}` envelope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from payflow.sandbox.api import build_api_router, render, stripe_response
from payflow.sandbox.config import SandboxConfig
from payflow.sandbox.control import build_control_router
from payflow.sandbox.errors import StripeApiError
from payflow.sandbox.hosted import about_page, build_hosted_router
from payflow.sandbox.runtime import Sandbox


def create_sandbox_app(config: SandboxConfig) -> FastAPI:
    sandbox = Sandbox(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await sandbox.start()
        try:
            yield
        finally:
            await sandbox.stop()

    app = FastAPI(
        title="payflow payments sandbox",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    app.include_router(build_api_router(sandbox))
    app.include_router(build_hosted_router(sandbox))
    app.add_api_route("/", about_page, methods=["GET"], include_in_schema=False)
    app.include_router(build_control_router(sandbox))
    app.add_exception_handler(StripeApiError, _on_stripe_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    return app


async def _on_stripe_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StripeApiError)  # noqa: S101 - registered for StripeApiError only
    return stripe_response(request, exc.status, render(exc.envelope()))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    if exc.status_code in (404, 405):
        message = (
            f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/."
        )
        error = StripeApiError(404, message)
    else:
        error = StripeApiError(exc.status_code, str(exc.detail))
    return stripe_response(request, error.status, render(error.envelope()))

"""The outer HTTP shell, as one pure ASGI middleware.

For every request it: assigns the request id; refuses bodies over 1 MiB (413) and bodies that are
not JSON (415); adds `X-Request-ID` and the security headers to every response, errors included;
(under the API prefix: the mounted payments sandbox speaks Stripe's form encoding);
turns any unhandled exception into a 500 problem that reveals nothing; and logs one access line
and records metrics by route template.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payflow.core.logging import ACCESS_LOGGER
from payflow.core.metrics import Metrics
from payflow.core.problems import problem_response

MAX_BODY_BYTES = 1024 * 1024
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'self'; font-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; "
    "script-src-attr 'none'; style-src 'self' 'unsafe-inline'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.lower().encode(), value.encode())
    for name, value in (
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Origin-Agent-Cluster", "?1"),
        ("Referrer-Policy", "no-referrer"),
        ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-DNS-Prefetch-Control", "off"),
        ("X-Download-Options", "noopen"),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("X-Permitted-Cross-Domain-Policies", "none"),
        ("X-XSS-Protection", "0"),
    )
)

access_log = structlog.get_logger(ACCESS_LOGGER)
error_log = structlog.get_logger("payflow.http")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class RequestShellMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, api_prefix: str) -> None:
        self.app = app
        self.metrics = metrics
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder = [500]

        api = scope["path"].startswith(self.api_prefix + "/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                if api and b"cache-control" not in present:
                    # Tokens, balances and orders must never sit in a shared or browser cache.
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._dispatch(scope, receive, send_with_headers)
        finally:
            template = self._route_template(scope)
            elapsed = time.perf_counter() - started
            self.metrics.observe_request(scope["method"], template, status_holder[0], elapsed)
            access_log.info(
                "http.request",
                method=scope["method"],
                route=template,
                status=status_holder[0],
                latency_ms=round(elapsed * 1000, 2),
                user_id=state.get("user_id"),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    def _route_template(self, scope: Scope) -> str:
        """The matched route's template, e.g. /api/v1/orders/{order_id}, so labels stay few."""
        template = getattr(scope.get("route"), "path", None)
        if not isinstance(template, str):
            return "unmatched"
        # Routers included under the API prefix report their path without it.
        if scope["path"].startswith(self.api_prefix + "/") and not template.startswith(
            self.api_prefix
        ):
            template = self.api_prefix + template
        return template

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            if scope["method"] in _BODY_METHODS:
                body = await self._read_body(scope, receive, tracking_send)
                if body is None:
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            error_log.error("http.unhandled_error", error_type=type(exc).__name__, exc_info=exc)
            if started:
                raise
            response = problem_response(
                scope, "INTERNAL_ERROR", "An unexpected error occurred", title="Internal error"
            )
            await response(scope, receive, tracking_send)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 413/415 for it."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await self._refuse_large(scope, receive, send)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await self._refuse_large(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        json_api = scope["path"].startswith(self.api_prefix + "/")
        if body and json_api and not _is_json(_header(scope, b"content-type")):
            response = problem_response(
                scope, "UNSUPPORTED_MEDIA_TYPE", "The request body must be application/json"
            )
            await response(scope, receive, send)
            return None
        return body

    async def _refuse_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            scope,
            "PAYLOAD_TOO_LARGE",
            f"The request body is larger than {MAX_BODY_BYTES} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _replay(body: bytes, original: Receive) -> Receive:
    """Hand the buffered body to the app, then pass through (so disconnects are still seen)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive

"""RFC 9457 problem details: the one place where domain error codes become HTTP statuses."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from payflow.core.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_BY_CODE: dict[str, int] = {
    "VALIDATION_ERROR": 400,
    "INSUFFICIENT_FUNDS": 400,
    "INVALID_SIGNATURE": 400,
    "INVALID_CREDENTIALS": 401,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "WALLET_LOCKED": 403,
    "ACCOUNT_DISABLED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "EMAIL_TAKEN": 409,
    "OUT_OF_STOCK": 409,
    "PRODUCT_UNAVAILABLE": 409,
    "VERSION_CONFLICT": 409,
    "ORDER_STATE_CONFLICT": 409,
    "IDEMPOTENCY_KEY_IN_USE": 409,
    "RESERVATION_LIMIT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "IDEMPOTENCY_KEY_MISMATCH": 422,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "PAYMENT_GATEWAY_ERROR": 502,
    "SERVICE_UNAVAILABLE": 503,
}

_CODE_BY_STATUS = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}

log = structlog.get_logger("payflow.http")


def problem_type(code: str) -> str:
    return "urn:payflow:problem:" + code.lower().replace("_", "-")


def problem_body(
    code: str,
    detail: str,
    *,
    title: str,
    instance: str,
    request_id: str | None,
    errors: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": STATUS_BY_CODE.get(code, 500),
        "detail": detail,
        "code": code,
        "instance": instance,
        "requestId": request_id,
    }
    if errors:
        body["errors"] = list(errors)
    return body


def problem_response(
    scope: Scope,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    state = scope.get("state") or {}
    body = problem_body(
        code,
        detail,
        title=title or code.replace("_", " ").capitalize(),
        instance=scope.get("path", ""),
        request_id=state.get("request_id"),
        errors=errors,
    )
    return Response(
        orjson.dumps(body),
        status_code=body["status"],
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


# pydantic names an enum member by its repr (<Role.USER: 'USER'>); a client knows it by its value.
_ENUM_REPR = re.compile(r"<[A-Za-z_]\w*\.[A-Za-z_]\w*: '([^']*)'>")


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """One entry per problem: a body validated by the route and by a dependency of it (a rate
    limit keyed on the email, say) reports each problem once."""
    errors: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        if location and location[0] in {"body", "query", "path", "header"}:
            where, field = location[0], ".".join(location[1:])
        else:
            where, field = "body", ".".join(location)
        message = _ENUM_REPR.sub(r"'\1'", str(error.get("msg", "invalid value")))
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        if error.get("type") == "json_invalid":
            # FastAPI puts the decoder's position where a field name would be.
            reason = (error.get("ctx") or {}).get("error", "malformed JSON")
            message, field = f"not valid JSON at character {field or 0}: {reason}", ""
        if (where, field, message) in seen:
            continue
        seen.add((where, field, message))
        errors.append({"in": where, "field": field, "message": message, "type": error.get("type")})
    return errors


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)  # noqa: S101 - registered for DomainError only
    headers = getattr(exc, "headers", None)
    return problem_response(
        request.scope, exc.code, exc.detail, title=exc.title, errors=exc.errors, headers=headers
    )


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = _field_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        detail = "The request body is not valid JSON"
    else:
        detail = "The request has invalid or unknown fields"
    return problem_response(request.scope, "VALIDATION_ERROR", detail, errors=errors)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's own `Allow` names only the first
    route whose path matched, while GET, PATCH and DELETE of one resource are separate routes."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and route.methods and regex.match(path):
            methods.update(route.methods)
    return ", ".join(sorted(methods))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    code = _CODE_BY_STATUS.get(exc.status_code, "INTERNAL_ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else code
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        detail = "Not found"
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return problem_response(request.scope, code, detail, headers=headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("http.unhandled_error", error_type=type(exc).__name__, exc_info=exc)
    return problem_response(
        request.scope, "INTERNAL_ERROR", "An unexpected error occurred", title="Internal error"
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

"""The Stripe HTTP API under /v1, for the calls payflow makes, as the official SDK speaks it.

Every call: the fault switch first (an outage answers before anything else), then
`Authorization: Bearer <the sandbox's own key>` (SandboxConfig.api_key), then form-encoded bracket parameters; POSTs honour
`Idempotency-Key`. Responses are Stripe's JSON objects with `Request-Id` and `Stripe-Version`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

import stripe
from fastapi import APIRouter, Request
from fastapi.responses import Response

from payflow.sandbox.checkout import check_known
from payflow.sandbox.errors import StripeApiError, api_error, parameter_invalid
from payflow.sandbox.faults import FaultMode
from payflow.sandbox.forms import parse_form
from payflow.sandbox.idempotency import fingerprint
from payflow.sandbox.objects import RequestInfo, new_id
from payflow.sandbox.runtime import Sandbox

EXPANDABLE = frozenset({"payment_intent"})

Operation = Callable[[Mapping[str, Any], RequestInfo], dict[str, Any]]


def render(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, indent=2, ensure_ascii=False).encode()


def stripe_response(request: Request, status: int, body: bytes, **headers: str) -> Response:
    headers = {
        "Request-Id": request_id_of(request),
        "Stripe-Version": request.headers.get("stripe-version") or stripe.api_version,
        **headers,
    }
    if key := request.headers.get("idempotency-key"):
        headers["Idempotency-Key"] = key
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def request_id_of(request: Request) -> str:
    request_id: str | None = getattr(request.state, "stripe_request_id", None)
    if request_id is None:
        request_id = new_id("req")
        request.state.stripe_request_id = request_id
    return request_id


def expand_of(params: Mapping[str, Any]) -> list[str]:
    raw = params.get("expand") or []
    fields = list(raw.values()) if isinstance(raw, dict) else raw
    if not isinstance(fields, list):
        raise parameter_invalid("expand", "Invalid array")
    for index, name in enumerate(fields):
        if name not in EXPANDABLE:
            raise parameter_invalid(
                f"expand[{index}]", f"This property cannot be expanded ({name})."
            )
    return [str(name) for name in fields]


def _mask(key: str) -> str:
    return key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "*" * len(key)


def authenticate(request: Request, expected: str) -> str:
    """The request's secret key, which must be `expected` (the one key the sandbox was given):
    any other, even a well-formed test key, is refused as Stripe refuses an unknown key."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials.strip()).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if not header or not key:
        raise StripeApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    # As bytes: compare_digest refuses str holding non-ASCII characters.
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise StripeApiError(401, f"Invalid API Key provided: {_mask(key)}")
    return key


class StripeApi:
    """Runs one API call through faults, auth, parameters and idempotency."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def call(self, request: Request, operation: Operation) -> Response:
        await self._maybe_fail()
        api_key = authenticate(request, self.sandbox.config.api_key)
        if request.method == "GET":
            params = parse_form(request.url.query)
            result = operation(params, RequestInfo(request_id_of(request)))
            return stripe_response(request, 200, render(result))
        body = await request.body()
        params = parse_form(body)
        key = request.headers.get("idempotency-key")
        if not key:
            return stripe_response(
                request, 200, render(operation(params, RequestInfo(request_id_of(request))))
            )
        cache = self.sandbox.idempotency
        stored = cache.begin(api_key, key, fingerprint(request.method, request.url.path, body))
        if stored is not None:
            assert stored.status is not None  # noqa: S101 - begin() returns finished entries only
            return stripe_response(
                request, stored.status, stored.body, **{"Idempotent-Replayed": "true"}
            )
        try:
            result = operation(params, RequestInfo(request_id_of(request), key))
        except StripeApiError as exc:
            if exc.executed:
                cache.finish(api_key, key, exc.status, render(exc.envelope()))
            else:
                cache.release(api_key, key)
            raise
        except BaseException:
            cache.release(api_key, key)
            raise
        rendered = render(result)
        cache.finish(api_key, key, 200, rendered)
        return stripe_response(request, 200, rendered)

    async def _maybe_fail(self) -> None:
        fault = self.sandbox.faults.take()
        if fault is None:
            return
        if fault.mode is FaultMode.HANG:
            await asyncio.sleep(fault.seconds)
        raise api_error()


def build_api_router(sandbox: Sandbox) -> APIRouter:
    api = StripeApi(sandbox)
    store = sandbox.store
    router = APIRouter(prefix="/v1")

    @router.post("/checkout/sessions")
    async def create_checkout_session(request: Request) -> Response:
        def create(params: Mapping[str, Any], _req: RequestInfo) -> dict[str, Any]:
            expand = expand_of(params)
            return store.session_json(store.create_session(params), expand)

        return await api.call(request, create)

    @router.get("/checkout/sessions/{session_id}")
    async def retrieve_checkout_session(request: Request, session_id: str) -> Response:
        def retrieve(params: Mapping[str, Any], _req: RequestInfo) -> dict[str, Any]:
            check_known(params, {"expand"})
            expand = expand_of(params)
            return store.session_json(store.session(session_id), expand)

        return await api.call(request, retrieve)

    @router.post("/checkout/sessions/{session_id}/expire")
    async def expire_checkout_session(request: Request, session_id: str) -> Response:
        def expire(params: Mapping[str, Any], req: RequestInfo) -> dict[str, Any]:
            check_known(params, {"expand"})
            expand = expand_of(params)
            return store.session_json(store.expire_session(session_id, req), expand)

        return await api.call(request, expire)

    @router.get("/payment_intents/{intent_id}")
    async def retrieve_payment_intent(request: Request, intent_id: str) -> Response:
        def retrieve(params: Mapping[str, Any], _req: RequestInfo) -> dict[str, Any]:
            check_known(params, {"expand"})
            return store.payment_intent(intent_id).to_stripe()

        return await api.call(request, retrieve)

    @router.post("/refunds")
    async def create_refund(request: Request) -> Response:
        def refund(params: Mapping[str, Any], _req: RequestInfo) -> dict[str, Any]:
            return store.create_refund(params).to_stripe()

        return await api.call(request, refund)

    return router

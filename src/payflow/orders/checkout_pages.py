"""/payments/success and /payments/cancel: the pages a buyer's browser returns to from Checkout."""

from __future__ import annotations

import hmac
import html
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from payflow.core.errors import NotFound
from payflow.core.ids import parse_path_id
from payflow.core.money import format_minor
from payflow.core.schemas import problem_responses
from payflow.orders import checkout
from payflow.orders.models import OrderStatus
from payflow.orders.records import Order
from payflow.paths import PAYMENTS_PREFIX
from payflow.wiring import ContextDep

router = APIRouter(prefix=PAYMENTS_PREFIX, tags=["payments"])

# No NUL: PostgreSQL text cannot hold one, so looking it up would fail in the database.
SessionQuery = Annotated[
    str | None,
    Query(max_length=255, pattern=r"^[^\x00]*$", description="The Checkout session id"),
]


def _status_payload(order: Order, message: str) -> dict[str, str | None]:
    return {
        "orderId": str(order.id),
        "status": order.status.value,
        "amount": format_minor(order.amount, order.currency),
        "currency": order.currency,
        "message": message,
    }


def _page(request: Request, payload: dict[str, str | None]) -> Response:
    """JSON for API clients, a small page for browsers."""
    if "text/html" not in request.headers.get("accept", ""):
        return JSONResponse(payload)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v or '')}</td></tr>"
        for k, v in payload.items()
    )
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>payflow</title></head>"
        f"<body><h1>{html.escape(payload['message'] or '')}</h1>"
        f"<p id=order-status>{html.escape(payload['status'] or '')}</p><table>{rows}</table>"
        "</body></html>"
    )


@router.get(
    "/success", summary="Back from a paid checkout", responses=problem_responses("NOT_FOUND")
)
async def payment_success(
    request: Request, ctx: ContextDep, session_id: SessionQuery = None
) -> Response:
    """Where Checkout sends the buyer after paying. Shows the order's current status; the order
    is completed by the webhook, never by this page."""
    if not session_id:
        raise NotFound("No order for this checkout session")
    order = await checkout.order_for_session(ctx, session_id)
    messages = {
        OrderStatus.COMPLETED: "Payment received, your order is complete",
        OrderStatus.PENDING: "Thank you, we are confirming your payment",
        OrderStatus.PAYMENT_PROCESSING: "Thank you, your payment is being processed",
    }
    return _page(
        request, _status_payload(order, messages.get(order.status, f"Order {order.status}"))
    )


@router.get(
    "/cancel",
    summary="Back from a cancelled checkout",
    responses=problem_responses("NOT_FOUND", "PAYMENT_GATEWAY_ERROR"),
)
async def payment_cancel(
    request: Request,
    ctx: ContextDep,
    order_id: Annotated[str | None, Query(max_length=64)] = None,
    token: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Where Checkout sends a buyer who gave up: the pending order is cancelled as
    POST /orders/{id}/cancel would. Only with the order id and the token payflow put in the
    cancel URL: a session id is no proof of being the buyer (and a GET anyone can trigger
    cross-site must need a secret the buyer alone was given)."""
    if not (order_id and token):
        raise NotFound("Order not found")
    parsed = parse_path_id(order_id, "Order")
    # As bytes: compare_digest refuses str holding non-ASCII characters (a 500, not a 404).
    expected = checkout.cancel_token(ctx, parsed).encode()
    if not hmac.compare_digest(token.encode(), expected):
        raise NotFound("Order not found")
    order = await checkout.cancel_from_checkout(ctx, parsed)
    message = (
        "Your order was cancelled"
        if order.status is OrderStatus.CANCELLED
        else f"Order {order.status}"
    )
    return _page(request, _status_payload(order, message))

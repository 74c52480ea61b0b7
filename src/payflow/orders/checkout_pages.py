"""/payments/success and /payments/cancel: the pages a buyer's browser returns to from Checkout."""

from __future__ import annotations

import hmac
from html import escape
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from payflow import pages
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


# The order's state in words, and how the page shows it.
_IN_WORDS: dict[OrderStatus, tuple[str, str]] = {
    OrderStatus.PENDING: ("We are confirming your payment", "wait"),
    OrderStatus.PAYMENT_PROCESSING: ("Your payment is being processed", "wait"),
    OrderStatus.COMPLETED: ("Paid: your order is complete", "ok"),
    OrderStatus.CANCELLED: ("Cancelled: nothing was charged", "bad"),
    OrderStatus.REFUNDED: ("Refunded", "bad"),
}
# Headings for a browser where the API's message is terse ("Order FAILED").
_TITLES = {
    OrderStatus.FAILED: "Payment not completed",
    OrderStatus.CANCELLED: "Your order was cancelled",
    OrderStatus.REFUNDED: "Your payment was refunded",
}
_SETTLING = frozenset({OrderStatus.PENDING, OrderStatus.PAYMENT_PROCESSING})
# A page refreshes itself at most this many times (a few minutes) while the order settles.
MAX_REFRESHES = 60


def _in_words(order: Order) -> tuple[str, str]:
    if order.status is OrderStatus.FAILED:
        reason = order.failure_reason or ""
        if reason.startswith("PAYMENT_FAILED"):
            return "Your payment was declined: nothing was charged", "bad"
        return "The order failed: nothing was charged", "bad"
    return _IN_WORDS[order.status]


async def _page(
    request: Request, ctx: ContextDep, order: Order, message: str, *, refreshes: int = 0
) -> Response:
    """JSON for API clients; for browsers, a page with the order in words, which reloads itself
    every few seconds (a bounded number of times) while the payment is still settling."""
    if "text/html" not in request.headers.get("accept", ""):
        return JSONResponse(_status_payload(order, message))
    headline, tone = _in_words(order)
    product = await checkout.product_name(ctx, order)
    settling = order.status in _SETTLING
    refresh_url = None
    note = ""
    if settling and refreshes < MAX_REFRESHES:
        query = urlencode({**request.query_params, "refresh": refreshes + 1})
        refresh_url = f"{request.url.path}?{query}"
        note = '<p class="note">This page updates itself until the payment is settled.</p>'
    elif settling:
        note = '<p class="note">Still settling: reload this page in a few minutes.</p>'
    amount = f"{format_minor(order.amount, order.currency)} {order.currency}"
    title = _TITLES.get(order.status, message)
    body = (
        f"<h1>{escape(title)}</h1>\n"
        f'<p id="order-words" class="status {tone}">{escape(headline)}</p>\n'
        "<table>\n"
        f"<tr><td>{escape(product)} &times; {order.quantity}</td>"
        f'<td class="num">{escape(amount)}</td></tr>\n'
        f'<tr><td>Order</td><td class="num">{escape(str(order.id))}</td></tr>\n'
        f'<tr><td>Status</td><td class="num" id="order-status">{escape(order.status.value)}</td>'
        "</tr>\n"
        f"</table>\n{note}"
    )
    return pages.page(headline, body, refresh_url=refresh_url)


@router.get(
    "/success", summary="Back from a paid checkout", responses=problem_responses("NOT_FOUND")
)
async def payment_success(
    request: Request,
    ctx: ContextDep,
    session_id: SessionQuery = None,
    refresh: Annotated[int, Query(ge=0, le=MAX_REFRESHES, description="Set by the page")] = 0,
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
    message = messages.get(order.status, f"Order {order.status}")
    return await _page(request, ctx, order, message, refreshes=refresh)


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
    return await _page(request, ctx, order, message)

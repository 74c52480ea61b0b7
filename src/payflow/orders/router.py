"""/orders: purchases, the buyer's orders, the merchant's sales, refunds."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Body, Query, Request, Response, status

from payflow.auth.dependencies import CurrentUser, MerchantUser
from payflow.auth.rate_limits import ORDER_LIMITS, REFUND_LIMITS
from payflow.core.errors import ValidationFailed
from payflow.core.idempotency import (
    IdempotencyKeyHeader,
    StoredResponse,
    json_response,
    request_for,
    respond,
)
from payflow.core.ids import parse_path_id
from payflow.core.json_body import JsonBodyRoute
from payflow.core.pagination import (
    DEFAULT_LIMIT,
    CursorQuery,
    LimitQuery,
    Page,
    PageMeta,
    decode_time_cursor,
    encode_time_cursor,
)
from payflow.core.schemas import problem_responses
from payflow.orders import checkout, repository, service
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import CREATE_ORDER_ENDPOINT, Checkout, Order
from payflow.orders.schemas import CheckoutOut, CreateOrderRequest, OrderOut, RefundRequest
from payflow.users.records import User
from payflow.wiring import ContextDep

router = APIRouter(prefix="/orders", tags=["orders"], route_class=JsonBodyRoute)

# Each route lists the problems of its own rules; app.py adds those every route of its kind can
# answer with (authentication, idempotency keys, path ids, bodies, validation, unavailability).


def _render(code: int, viewer: User) -> Callable[[Order], StoredResponse]:
    return lambda order: json_response(code, OrderOut.of(order, viewer.id))


def _render_checkout(made: Checkout) -> StoredResponse:
    # Only the buyer opens a checkout: the buyer is the viewer.
    return json_response(
        status.HTTP_201_CREATED,
        CheckoutOut(
            order=OrderOut.of(made.order, made.order.user_id),
            checkout_url=made.url,
            session_id=made.session_id,
        ),
    )


def _order_key(header: str | None, body_key: str | None) -> str | None:
    if header is not None and body_key is not None and header != body_key:
        raise ValidationFailed(
            "The Idempotency-Key header and the idempotencyKey field differ",
            errors=[{"in": "body", "field": "idempotencyKey", "message": "differs from header"}],
        )
    return header if header is not None else body_key


@router.post(
    "",
    summary="Buy a product",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut | CheckoutOut,
    responses=problem_responses(
        "PAYMENT_GATEWAY_ERROR",
        "NOT_FOUND",
        "OUT_OF_STOCK",
        "PRODUCT_UNAVAILABLE",
        "RESERVATION_LIMIT",
        "INSUFFICIENT_FUNDS",
        "WALLET_LOCKED",
        "RATE_LIMITED",
    ),
    dependencies=ORDER_LIMITS,
)
async def create_order(
    body: CreateOrderRequest,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """`WALLET`: paid from your wallet in one transaction; the order is `COMPLETED`, or the purchase
    fails and a `FAILED` order says why. `GATEWAY`: the units are reserved and a `PENDING` order is
    returned with the Stripe Checkout URL to pay at. Send an `Idempotency-Key` to retry safely."""
    key = _order_key(idempotency_key, body.idempotency_key)
    fingerprint = body.model_copy(update={"idempotency_key": None})
    if body.payment_method is PaymentMethod.GATEWAY:
        opened = request_for(
            request, user.id, CREATE_ORDER_ENDPOINT, key, fingerprint, _render_checkout
        )
        return await respond(
            opened,
            checkout.buy_with_gateway(ctx, user, body.product_id, body.quantity, opened),
        )
    bought = request_for(
        request, user.id, CREATE_ORDER_ENDPOINT, key, fingerprint, _render(201, user)
    )
    return await respond(
        bought, service.buy_with_wallet(ctx, user, body.product_id, body.quantity, bought)
    )


def _page(orders: list[Order], limit: int, viewer: User) -> Page[OrderOut]:
    shown = orders[:limit]
    next_cursor = (
        encode_time_cursor(shown[-1].created_at, shown[-1].id) if len(orders) > limit else None
    )
    return Page[OrderOut](
        data=[OrderOut.of(order, viewer.id) for order in shown],
        meta=PageMeta(limit=limit, next_cursor=next_cursor),
    )


async def _list(
    ctx: ContextDep,
    user: User,
    *,
    as_merchant: bool,
    limit: int,
    cursor: str | None,
    order_status: OrderStatus | None,
) -> Page[OrderOut]:
    after = decode_time_cursor(cursor)
    orders = await ctx.db.read(
        lambda conn: repository.list_orders(
            conn,
            buyer_id=None if as_merchant else user.id,
            merchant_id=user.id if as_merchant else None,
            status=order_status,
            limit=limit + 1,
            after=after,
        )
    )
    return _page(orders, limit, user)


StatusQuery = Query(default=None, alias="status", description="Only orders in this status")


@router.get("", summary="List your orders", response_model=Page[OrderOut])
async def list_my_orders(
    user: CurrentUser,
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    order_status: OrderStatus | None = StatusQuery,
) -> Page[OrderOut]:
    """Your orders as a buyer, newest first; `status` filters."""
    return await _list(
        ctx, user, as_merchant=False, limit=limit, cursor=cursor, order_status=order_status
    )


@router.get(
    "/merchant/sales",
    summary="List your sales",
    response_model=Page[OrderOut],
    responses=problem_responses("FORBIDDEN"),
)
async def list_my_sales(
    user: MerchantUser,
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    order_status: OrderStatus | None = StatusQuery,
) -> Page[OrderOut]:
    """Orders of your products (merchants), newest first; `status` filters."""
    return await _list(
        ctx, user, as_merchant=True, limit=limit, cursor=cursor, order_status=order_status
    )


@router.get("/{order_id}", summary="Get an order", response_model=OrderOut)
async def get_order(order_id: str, user: CurrentUser, ctx: ContextDep) -> OrderOut:
    """For its buyer or its merchant; anyone else gets 404."""
    order = await service.get_order(ctx, user, parse_path_id(order_id, "Order"))
    return OrderOut.of(order, user.id)


@router.post(
    "/{order_id}/refund",
    summary="Refund an order",
    response_model=OrderOut,
    responses=problem_responses(
        "FORBIDDEN",
        "ORDER_STATE_CONFLICT",
        "INSUFFICIENT_FUNDS",
        "WALLET_LOCKED",
        "RATE_LIMITED",
    ),
    dependencies=REFUND_LIMITS,
)
async def refund_order(
    order_id: str,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    body: RefundRequest | None = Body(default=None),
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """By the order's merchant, for a `COMPLETED` order, once: the merchant is debited, the buyer
    credited (or the card refunded through Stripe) and the units return to stock."""
    parsed = parse_path_id(order_id, "Order")
    body = body or RefundRequest()
    refunding = request_for(
        request, user.id, f"orders.refund:{parsed}", idempotency_key, body, _render(200, user)
    )
    return await respond(refunding, service.refund(ctx, user, parsed, body.reason, refunding))


@router.post(
    "/{order_id}/cancel",
    summary="Cancel a checkout",
    response_model=OrderOut,
    responses=problem_responses(
        "FORBIDDEN",
        "ORDER_STATE_CONFLICT",
        "PAYMENT_GATEWAY_ERROR",
    ),
)
async def cancel_order(
    order_id: str,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Cancel your PENDING gateway order: its checkout is expired and its stock released."""
    parsed = parse_path_id(order_id, "Order")
    cancelling = request_for(
        request, user.id, f"orders.cancel:{parsed}", idempotency_key, {}, _render(200, user)
    )
    return await respond(cancelling, checkout.cancel_by_buyer(ctx, user, parsed, cancelling))

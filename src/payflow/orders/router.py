"""/orders: purchases, the buyer's orders, the merchant's sales, refunds."""

from __future__ import annotations

from fastapi import APIRouter, Body, Query, Request, Response, status

from payflow.auth.dependencies import CurrentUser, MerchantUser
from payflow.auth.rate_limits import ORDER_LIMITS
from payflow.core import idempotency
from payflow.core.dependencies import ContextDep
from payflow.core.errors import ValidationFailed
from payflow.core.idempotency import IdempotencyKeyHeader, StoredResponse, json_response
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
from payflow.orders import gateway_service, repository, service
from payflow.orders.models import OrderStatus, PaymentMethod
from payflow.orders.records import CREATE_ORDER_ENDPOINT, Order
from payflow.orders.schemas import CheckoutOut, CreateOrderRequest, OrderOut, RefundRequest
from payflow.users.records import User

router = APIRouter(prefix="/orders", tags=["orders"], route_class=JsonBodyRoute)

_AUTH = ("UNAUTHORIZED", "ACCOUNT_DISABLED")
_IDEMPOTENCY = ("IDEMPOTENCY_KEY_IN_USE", "IDEMPOTENCY_KEY_MISMATCH", "SERVICE_UNAVAILABLE")


def _render(code: int, viewer: User) -> service.Render:
    return lambda order: json_response(code, OrderOut.of(order, viewer.id))


def _render_checkout(order: Order, url: str | None, session_id: str | None) -> StoredResponse:
    # Only the buyer opens a checkout: the buyer is the viewer.
    return json_response(
        status.HTTP_201_CREATED,
        CheckoutOut(
            order=OrderOut.of(order, order.user_id), checkout_url=url, session_id=session_id
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
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut | CheckoutOut,
    responses=problem_responses(
        *_AUTH,
        *_IDEMPOTENCY,
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
    key = _order_key(idempotency_key, body.idempotency_key)
    fingerprint = body.model_copy(update={"idempotency_key": None})
    scope = idempotency.scope_for(user.id, CREATE_ORDER_ENDPOINT, key, fingerprint)
    if body.payment_method is PaymentMethod.GATEWAY:
        checkout = await gateway_service.buy_with_gateway(
            ctx,
            user,
            body.product_id,
            body.quantity,
            scope,
            _render_checkout,
            instance=request.url.path,
            request_id=request.state.request_id,
        )
        return checkout.to_http()
    response = await service.buy_with_wallet(
        ctx,
        user,
        body.product_id,
        body.quantity,
        scope,
        _render(status.HTTP_201_CREATED, user),
        instance=request.url.path,
        request_id=request.state.request_id,
    )
    return response.to_http()


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


@router.get("", response_model=Page[OrderOut], responses=problem_responses(*_AUTH))
async def list_my_orders(
    user: CurrentUser,
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    order_status: OrderStatus | None = StatusQuery,
) -> Page[OrderOut]:
    return await _list(
        ctx, user, as_merchant=False, limit=limit, cursor=cursor, order_status=order_status
    )


@router.get(
    "/merchant/sales",
    response_model=Page[OrderOut],
    responses=problem_responses(*_AUTH, "FORBIDDEN"),
)
async def list_my_sales(
    user: MerchantUser,
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    order_status: OrderStatus | None = StatusQuery,
) -> Page[OrderOut]:
    return await _list(
        ctx, user, as_merchant=True, limit=limit, cursor=cursor, order_status=order_status
    )


@router.get(
    "/{order_id}", response_model=OrderOut, responses=problem_responses(*_AUTH, "NOT_FOUND")
)
async def get_order(order_id: str, user: CurrentUser, ctx: ContextDep) -> OrderOut:
    order = await service.get_order(ctx, user, parse_path_id(order_id, "Order"))
    return OrderOut.of(order, user.id)


@router.post(
    "/{order_id}/refund",
    response_model=OrderOut,
    responses=problem_responses(
        *_AUTH,
        *_IDEMPOTENCY,
        "NOT_FOUND",
        "FORBIDDEN",
        "ORDER_STATE_CONFLICT",
        "INSUFFICIENT_FUNDS",
        "WALLET_LOCKED",
    ),
)
async def refund_order(
    order_id: str,
    user: CurrentUser,
    ctx: ContextDep,
    request: Request,
    body: RefundRequest | None = Body(default=None),
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    parsed = parse_path_id(order_id, "Order")
    body = body or RefundRequest()
    scope = idempotency.scope_for(user.id, f"orders.refund:{parsed}", idempotency_key, body)
    response: StoredResponse = await service.refund(
        ctx,
        user,
        parsed,
        body.reason,
        scope,
        _render(status.HTTP_200_OK, user),
        instance=request.url.path,
        request_id=request.state.request_id,
    )
    return response.to_http()


@router.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    responses=problem_responses(
        *_AUTH,
        *_IDEMPOTENCY,
        "NOT_FOUND",
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
    scope = idempotency.scope_for(user.id, f"orders.cancel:{parsed}", idempotency_key, {})
    response = await gateway_service.cancel_by_buyer(
        ctx,
        user,
        parsed,
        scope,
        _render(status.HTTP_200_OK, user),
        instance=request.url.path,
        request_id=request.state.request_id,
    )
    return response.to_http()

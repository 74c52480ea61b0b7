"""/products: the public catalogue, and merchants' products (create, edit, soft delete).

Responses that carry one product also carry its version as `ETag: "<version>"`, to be sent back
as `If-Match` on the next `PATCH`.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response, status

from payflow.auth.dependencies import MerchantUser
from payflow.auth.rate_limits import PRODUCT_WRITE_LIMITS
from payflow.core.json_body import JsonBodyRoute
from payflow.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page
from payflow.core.schemas import problem_responses
from payflow.products import service
from payflow.products.dependencies import IfMatchVersion, OptionalUser, OwnedProduct, ProductId
from payflow.products.records import Product
from payflow.products.schemas import (
    CreateProductRequest,
    ProductOut,
    UpdateProductRequest,
    product_json,
)
from payflow.wiring import ContextDep

router = APIRouter(prefix="/products", tags=["products"], route_class=JsonBodyRoute)

_JSON = "application/json"


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _product_response(product: Product, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(
        product_json(product),
        status_code=status_code,
        media_type=_JSON,
        headers=_etag(product.version),
    )


@router.post(
    "",
    summary="Create a product",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductOut,
    responses=problem_responses("FORBIDDEN", "RATE_LIMITED"),
    dependencies=PRODUCT_WRITE_LIMITS,
)
async def create_product(
    body: CreateProductRequest, merchant: MerchantUser, ctx: ContextDep
) -> Response:
    """Merchants only. The product starts active with `availableUnits` in stock."""
    product = await service.create_product(ctx, merchant, body)
    return _product_response(product, status.HTTP_201_CREATED)


@router.get("", summary="List products", response_model=Page[ProductOut])
async def list_products(
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    merchant_id: uuid.UUID | None = Query(
        default=None, alias="merchantId", description="Only this merchant's products"
    ),
    q: str | None = Query(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00]*$",
        description="Only products whose name contains this text (case-insensitive)",
    ),
) -> Response:
    """Active products, newest first; `merchantId` and `q` (name contains) filter."""
    body = await service.catalogue_body(
        ctx, limit=limit, cursor=cursor, merchant_id=merchant_id, q=q
    )
    return Response(body, media_type=_JSON)


# Declared before /{product_id}, which would otherwise take "merchant" for a product id.
@router.get(
    "/merchant/my-products",
    summary="List your products",
    response_model=Page[ProductOut],
    responses=problem_responses("FORBIDDEN"),
)
async def my_products(
    merchant: MerchantUser,
    ctx: ContextDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Response:
    """Your products (merchants), inactive ones included."""
    body = await service.merchant_products_body(ctx, merchant.id, limit=limit, cursor=cursor)
    return Response(body, media_type=_JSON)


@router.get(
    "/{product_id}",
    summary="Get a product",
    response_model=ProductOut,
)
async def get_product(product_id: ProductId, viewer: OptionalUser, ctx: ContextDep) -> Response:
    """An inactive product is shown to its merchant only; a deleted one to nobody."""
    version, body = await service.product_body(ctx, product_id, viewer.id if viewer else None)
    return Response(body, media_type=_JSON, headers=_etag(version))


@router.patch(
    "/{product_id}",
    summary="Update a product",
    response_model=ProductOut,
    responses=problem_responses("FORBIDDEN", "VERSION_CONFLICT", "RATE_LIMITED"),
    dependencies=PRODUCT_WRITE_LIMITS,
)
async def update_product(
    body: UpdateProductRequest,
    product: OwnedProduct,
    merchant: MerchantUser,
    ctx: ContextDep,
    if_match: IfMatchVersion,
) -> Response:
    """Its merchant only. Send the version you read (`version` or `If-Match`) to refuse a lost update
    with 409 `VERSION_CONFLICT`. Changing `availableUnits` records a stock adjustment."""
    updated = await service.update_product(ctx, product, merchant, body, if_match=if_match)
    return _product_response(updated)


@router.delete(
    "/{product_id}",
    summary="Delete a product",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses("FORBIDDEN", "RATE_LIMITED"),
    dependencies=PRODUCT_WRITE_LIMITS,
)
async def delete_product(product: OwnedProduct, ctx: ContextDep) -> Response:
    """Its merchant only. The product disappears from every read; its orders and history stay."""
    await service.delete_product(ctx, product)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

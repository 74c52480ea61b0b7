"""Request dependencies of the products routes: the product in the path, the caller when one is
signed in, the product the caller owns (checked once, here, for every route that edits one), and
the `If-Match` version."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials

from payflow.auth.dependencies import MerchantUser, bearer, get_current_user
from payflow.core.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from payflow.core.ids import parse_path_id
from payflow.products import service
from payflow.products.records import Product
from payflow.users.records import User
from payflow.wiring import ContextDep

_IF_MATCH = re.compile(r'^\s*(?:"(\d{1,18})"|(\d{1,18}))\s*$')


async def product_id_path(
    product_id: Annotated[str, Path(description="The product's id (a UUID)")],
) -> uuid.UUID:
    # Taken as text, not uuid.UUID: a malformed id names no product, so it is a 404 like any
    # unknown id (the orders routes answer the same), not a 400 about the path's syntax.
    return parse_path_id(product_id, "Product")


ProductId = Annotated[uuid.UUID, Depends(product_id_path)]


async def get_optional_user(
    request: Request,
    ctx: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    """The signed-in caller, or None without an `Authorization` header. A header that is present
    but not a valid bearer access token is still a 401."""
    if credentials is None:
        if "authorization" in request.headers:
            raise Unauthorized("The Authorization header must hold a bearer access token")
        return None
    return await get_current_user(request, ctx, credentials)


OptionalUser = Annotated[User | None, Depends(get_optional_user)]


async def get_owned_product(product_id: ProductId, user: MerchantUser, ctx: ContextDep) -> Product:
    """The product, if the calling merchant owns it: 404 when the caller cannot see it (deleted,
    or another merchant's inactive product), 403 when they can see it but do not own it."""
    product = await service.get_live_product(ctx, product_id)
    if product is None or not service.visible_to(product, user.id):
        raise NotFound("Product not found")
    if product.merchant_id != user.id:
        raise Forbidden("Only the product's merchant may change it")
    return product


OwnedProduct = Annotated[Product, Depends(get_owned_product)]


async def if_match_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=64,
            description='The version being edited, as its ETag: `"3"` (quotes optional)',
            # Documented only: if_match_version() checks it, with its own message.
            json_schema_extra={"pattern": r'^\s*(\*|"[0-9]{1,18}"|[0-9]{1,18})\s*$'},
        ),
    ] = None,
) -> int | None:
    """The version named by `If-Match`; None when absent or `*` (any current version)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _IF_MATCH.match(if_match)
    if match is None:
        raise ValidationFailed(
            'If-Match must name one version, such as "3"',
            errors=[{"in": "header", "field": "If-Match", "message": "not a product version"}],
        )
    return int(match.group(1) or match.group(2))


IfMatchVersion = Annotated[int | None, Depends(if_match_version)]

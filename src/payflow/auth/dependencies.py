"""Authentication and role checks as reusable dependencies (`CurrentUser`, `require_role`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from payflow.auth.errors import AccountDisabled
from payflow.core.errors import Forbidden, Unauthorized
from payflow.core.security import TokenType
from payflow.users import repository as users_repo
from payflow.users.models import Role
from payflow.users.records import User
from payflow.wiring import ContextDep

bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login")


async def get_current_user(
    request: Request,
    ctx: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    if credentials is None:
        raise Unauthorized("A bearer access token is required")
    claims = ctx.tokens.decode(credentials.credentials, TokenType.ACCESS)
    user = await users_repo.find_live(ctx.db, claims.user_id)
    if user is None:
        raise Unauthorized("The token is not valid")
    if not user.is_active:
        raise AccountDisabled("This account is disabled")
    request.state.user_id = str(user.id)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role) -> Callable[[User], Awaitable[User]]:
    """A dependency that lets through only users holding one of `roles` (403 otherwise)."""

    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"This action requires the role {' or '.join(roles)}")
        return user

    return check


MerchantUser = Annotated[User, Depends(require_role(Role.MERCHANT))]

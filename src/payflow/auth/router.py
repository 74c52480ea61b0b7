"""/auth: register, login, refresh, logout."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from payflow.auth import service
from payflow.auth.dependencies import CurrentUser
from payflow.auth.rate_limits import LOGIN_LIMITS, REFRESH_LIMITS, REGISTER_LIMITS
from payflow.auth.schemas import (
    AuthResponse,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPairResponse,
)
from payflow.core.json_body import JsonBodyRoute
from payflow.core.schemas import problem_responses
from payflow.users.schemas import UserOut
from payflow.wiring import ContextDep

router = APIRouter(prefix="/auth", tags=["auth"], route_class=JsonBodyRoute)


def _auth_response(ctx: ContextDep, session: service.Session) -> AuthResponse:
    return AuthResponse(
        user=UserOut.of(session.user),
        access_token=session.tokens.access_token,
        refresh_token=session.tokens.refresh_token,
        expires_in=ctx.tokens.access_ttl_seconds,
    )


@router.post(
    "/register",
    summary="Create an account",
    status_code=status.HTTP_201_CREATED,
    response_model=AuthResponse,
    responses=problem_responses("EMAIL_TAKEN", "RATE_LIMITED"),
    dependencies=REGISTER_LIMITS,
)
async def register(body: RegisterRequest, ctx: ContextDep) -> AuthResponse:
    """Creates a user (role `USER` by default, or `MERCHANT`) and its wallet in one transaction, and
    returns the user with an access and a refresh token."""
    return _auth_response(ctx, await service.register(ctx, body))


@router.post(
    "/login",
    summary="Sign in",
    response_model=AuthResponse,
    responses=problem_responses("INVALID_CREDENTIALS", "ACCOUNT_DISABLED", "RATE_LIMITED"),
    dependencies=LOGIN_LIMITS,
)
async def login(body: LoginRequest, ctx: ContextDep) -> AuthResponse:
    """Exchanges an email and password for a token pair. A wrong email and a wrong password get the
    same answer; attempts are rate limited per account and per address."""
    return _auth_response(ctx, await service.login(ctx, body))


@router.post(
    "/refresh",
    summary="Rotate a refresh token",
    response_model=TokenPairResponse,
    responses=problem_responses("UNAUTHORIZED", "ACCOUNT_DISABLED", "RATE_LIMITED"),
    dependencies=REFRESH_LIMITS,
)
async def refresh(body: RefreshRequest, ctx: ContextDep) -> TokenPairResponse:
    """Spends the refresh token and returns a new pair. Presenting a token that was already spent
    revokes its whole family (reuse detection)."""
    pair = await service.refresh(ctx, body.refresh_token)
    return TokenPairResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=ctx.tokens.access_ttl_seconds,
    )


@router.post(
    "/logout",
    summary="Sign out",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses("UNAUTHORIZED", "ACCOUNT_DISABLED"),
)
async def logout(body: RefreshRequest, ctx: ContextDep, user: CurrentUser) -> Response:
    """Revokes the family of the given refresh token, which must belong to the caller."""
    await service.logout(ctx, user, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

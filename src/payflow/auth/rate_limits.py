"""The API's rate limits (README, Configuration) as route dependencies, checked before any expensive work.

`rate_limit()` builds one from a bucket name, the setting that holds the limit and a dependency that
names whom the attempt counts against: an account (the normalised email), a client address or the
authenticated user. Every attempt counts, whatever its outcome, so a wrong-password loop runs into
the per-account login limit. The lists below are what the routes declare in `dependencies=`;
routes that use them list RATE_LIMITED in their `responses=`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from fastapi import Depends, Request, params

from payflow.auth.dependencies import CurrentUser
from payflow.auth.schemas import LoginRequest, RegisterRequest
from payflow.auth.service import normalise_email
from payflow.config import Settings
from payflow.core.ratelimit import RateLimit, RateLimited, client_address
from payflow.wiring import ContextDep

log = structlog.get_logger("payflow.ratelimit")


def rate_limit(
    bucket: str, limit_of: Callable[[Settings], RateLimit], subject: Callable[..., Any]
) -> params.Depends:
    """A dependency counting one attempt of `subject`'s answer in `bucket`; 429 over the limit."""

    # A default, not an Annotated[] alias: annotations are strings here, and `subject` is local.
    async def check(ctx: ContextDep, who: str = Depends(subject)) -> None:
        if not ctx.settings.rate_limits_enabled:
            return
        decision = await ctx.rate_limiter.hit(bucket, who, limit_of(ctx.settings))
        if not decision.allowed:
            log.info("ratelimit.exceeded", bucket=bucket, retry_after=decision.retry_after)
            raise RateLimited(decision.retry_after)

    return params.Depends(check)


async def request_address(request: Request, ctx: ContextDep) -> str:
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return client_address(peer, forwarded, ctx.settings.trusted_proxies)


# The parameter is named `body` like the routes' own, so FastAPI reads one body for both.
async def login_account(body: LoginRequest) -> str:
    return normalise_email(body.email)


async def register_account(body: RegisterRequest) -> str:
    return normalise_email(body.email)


async def user_account(user: CurrentUser) -> str:
    return str(user.id)


LOGIN_LIMITS = [
    rate_limit("login:address", lambda s: s.rate_limit_login_per_address, request_address),
    rate_limit("login:account", lambda s: s.rate_limit_login_per_account, login_account),
]
REGISTER_LIMITS = [
    rate_limit("register:address", lambda s: s.rate_limit_register_per_address, request_address),
    rate_limit("register:account", lambda s: s.rate_limit_register_per_account, register_account),
]
ORDER_LIMITS = [rate_limit("orders:user", lambda s: s.rate_limit_orders_per_user, user_account)]
WITHDRAWAL_LIMITS = [
    rate_limit("withdrawals:user", lambda s: s.rate_limit_withdrawals_per_user, user_account)
]
DEPOSIT_LIMITS = [
    rate_limit("deposits:user", lambda s: s.rate_limit_deposits_per_user, user_account)
]
REFUND_LIMITS = [rate_limit("refunds:user", lambda s: s.rate_limit_refunds_per_user, user_account)]
PRODUCT_WRITE_LIMITS = [
    rate_limit("products:user", lambda s: s.rate_limit_product_writes_per_user, user_account)
]
# Per address: a refresh token is checked inside the route (it is the credential being spent).
REFRESH_LIMITS = [
    rate_limit("refresh:address", lambda s: s.rate_limit_refresh_per_address, request_address)
]

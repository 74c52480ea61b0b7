"""Registration, login, token refresh with rotation and reuse detection, and logout."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum, auto

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.auth import repository as tokens_repo
from payflow.auth.errors import AccountDisabled, EmailTaken, InvalidCredentials
from payflow.auth.schemas import LoginRequest, RegisterRequest
from payflow.core.errors import Unauthorized
from payflow.core.money import DEFAULT_CURRENCY
from payflow.core.security import TokenType, token_hash
from payflow.core.tables import utcnow
from payflow.core.unit_of_work import UnitOfWork
from payflow.users import repository as users_repo
from payflow.users.records import User
from payflow.wallets import repository as wallets_repo
from payflow.wiring import AppContext

log = structlog.get_logger("payflow.auth")


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    tokens: TokenPair


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def _issue_pair(
    ctx: AppContext, conn: AsyncConnection, user_id: uuid.UUID, family_id: uuid.UUID | None = None
) -> TokenPair:
    """A new access token and a new refresh token, the latter stored (hashed) in `family_id`."""
    refresh = ctx.tokens.issue(TokenType.REFRESH, user_id, family_id or uuid.uuid4())
    assert refresh.claims.family_id is not None  # noqa: S101 - always set just above
    await tokens_repo.insert_token(
        conn,
        token_id=refresh.claims.token_id,
        token_hash=token_hash(refresh.token),
        family_id=refresh.claims.family_id,
        user_id=user_id,
        expires_at=refresh.claims.expires_at,
    )
    access = ctx.tokens.issue(TokenType.ACCESS, user_id)
    return TokenPair(access_token=access.token, refresh_token=refresh.token)


async def register(ctx: AppContext, request: RegisterRequest) -> Session:
    email = normalise_email(request.email)
    password_hash = await ctx.passwords.hash(request.password)

    async def work(uow: UnitOfWork) -> Session:
        conn = uow.conn
        if await users_repo.email_exists(conn, email):
            raise EmailTaken("An account with this email already exists")
        user = await users_repo.insert_user(
            conn,
            email=email,
            password_hash=password_hash,
            role=request.role,
            first_name=request.first_name,
            last_name=request.last_name,
        )
        await wallets_repo.create_wallet(conn, user.id, DEFAULT_CURRENCY)
        return Session(user=user, tokens=await _issue_pair(ctx, conn, user.id))

    try:
        session = await ctx.db.transaction(work)
    except IntegrityError as exc:  # a concurrent registration of the same email won the race
        raise EmailTaken("An account with this email already exists") from exc
    log.info("auth.registered", user_id=str(session.user.id), role=session.user.role.value)
    return session


async def login(ctx: AppContext, request: LoginRequest) -> Session:
    email = normalise_email(request.email)
    user = await ctx.db.read(lambda conn: users_repo.get_live_by_email(conn, email))
    # Always run bcrypt, against a dummy hash when the email is unknown: same time, same answer.
    valid = await ctx.passwords.verify(request.password, user.password_hash if user else None)
    if user is None or not valid:
        log.info("auth.login_failed", reason="invalid_credentials")
        raise InvalidCredentials("The email or password is incorrect")
    if not user.is_active:
        log.info("auth.login_failed", user_id=str(user.id), reason="disabled")
        raise AccountDisabled("This account is disabled")

    async def work(uow: UnitOfWork) -> Session:
        conn, now = uow.conn, utcnow()
        await users_repo.record_login(conn, user.id, now)
        tokens = await _issue_pair(ctx, conn, user.id)
        refreshed = await users_repo.get_live_by_id(conn, user.id)
        return Session(user=refreshed or user, tokens=tokens)

    session = await ctx.db.transaction(work)
    log.info("auth.login", user_id=str(user.id))
    return session


class _Refresh(Enum):
    REUSED = auto()
    INVALID = auto()
    DISABLED = auto()


async def refresh(ctx: AppContext, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. Presenting a spent one revokes its whole family, and that
    revocation is committed even though the caller is answered 401."""
    claims = ctx.tokens.decode(refresh_token, TokenType.REFRESH)
    hashed = token_hash(refresh_token)

    async def work(uow: UnitOfWork) -> TokenPair | _Refresh:
        conn, now = uow.conn, utcnow()
        user = await users_repo.get_live_by_id(conn, claims.user_id)
        if user is None:
            return _Refresh.INVALID
        if not user.is_active:
            return _Refresh.DISABLED
        new_refresh = ctx.tokens.issue(TokenType.REFRESH, user.id, claims.family_id)
        spent = await tokens_repo.spend_token(conn, hashed, new_refresh.claims.token_id, now)
        if spent is None:
            stored = await tokens_repo.find_token(conn, hashed)
            if stored is None:
                return _Refresh.INVALID
            revoked = await tokens_repo.revoke_family(conn, stored.family_id)
            log.warning(
                "auth.refresh_reuse_detected",
                user_id=str(stored.user_id),
                family_id=str(stored.family_id),
                revoked=revoked,
            )
            return _Refresh.REUSED
        await tokens_repo.insert_token(
            conn,
            token_id=new_refresh.claims.token_id,
            token_hash=token_hash(new_refresh.token),
            family_id=spent.family_id,
            user_id=user.id,
            expires_at=new_refresh.claims.expires_at,
        )
        access = ctx.tokens.issue(TokenType.ACCESS, user.id)
        return TokenPair(access_token=access.token, refresh_token=new_refresh.token)

    outcome = await ctx.db.transaction(work)
    if outcome is _Refresh.DISABLED:
        raise AccountDisabled("This account is disabled")
    if isinstance(outcome, _Refresh):
        raise Unauthorized("The refresh token is not valid")
    log.info("auth.refreshed", user_id=str(claims.user_id))
    return outcome


async def logout(ctx: AppContext, user: User, refresh_token: str) -> None:
    """Revoke the family of a refresh token that belongs to the caller."""
    claims = ctx.tokens.decode(refresh_token, TokenType.REFRESH)
    hashed = token_hash(refresh_token)

    async def work(uow: UnitOfWork) -> bool:
        stored = await tokens_repo.find_token(uow.conn, hashed)
        if stored is None or stored.user_id != user.id:
            return False
        await tokens_repo.revoke_family(uow.conn, stored.family_id)
        return True

    if claims.user_id != user.id or not await ctx.db.transaction(work):
        raise Unauthorized("The refresh token is not valid")
    log.info("auth.logout", user_id=str(user.id))

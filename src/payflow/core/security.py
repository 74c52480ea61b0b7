"""Password hashing (bcrypt, off the event loop) and JWTs (HS256 only, typed, with iss/aud/exp/jti)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import anyio.to_thread
import bcrypt
import jwt

from payflow.config import Settings
from payflow.core.errors import Unauthorized

JWT_ALGORITHM = "HS256"
MAX_PASSWORD_BYTES = 72


class PasswordHasher:
    """bcrypt at the configured cost. Unknown users are checked against a dummy hash of the same
    cost, so a login takes as long for an unknown email as for a wrong password."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._dummy_hash = bcrypt.hashpw(uuid.uuid4().bytes, bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> str:
        secret = password.encode()
        salt = bcrypt.gensalt(self.rounds)
        hashed = await anyio.to_thread.run_sync(bcrypt.hashpw, secret, salt)
        return hashed.decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        secret = password.encode()
        if len(secret) > MAX_PASSWORD_BYTES:
            return False
        target = password_hash.encode() if password_hash else self._dummy_hash
        matches = await anyio.to_thread.run_sync(bcrypt.checkpw, secret, target)
        return matches and password_hash is not None


class TokenType(StrEnum):
    ACCESS = "at+jwt"
    REFRESH = "rt+jwt"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    token_id: uuid.UUID
    type: TokenType
    expires_at: datetime
    family_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


def token_hash(token: str) -> str:
    """How refresh tokens are stored: a SHA-256 of the whole token (they are random, no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self._secrets = {
            TokenType.ACCESS: settings.jwt_access_secret,
            TokenType.REFRESH: settings.jwt_refresh_secret,
        }
        self._ttl = {
            TokenType.ACCESS: timedelta(seconds=settings.jwt_access_ttl),
            TokenType.REFRESH: timedelta(seconds=settings.jwt_refresh_ttl),
        }
        self.access_ttl_seconds = settings.jwt_access_ttl
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience

    def issue(
        self, token_type: TokenType, user_id: uuid.UUID, family_id: uuid.UUID | None = None
    ) -> IssuedToken:
        now = datetime.now(UTC)
        claims = TokenClaims(
            user_id=user_id,
            token_id=uuid.uuid4(),
            type=token_type,
            expires_at=now + self._ttl[token_type],
            family_id=family_id,
        )
        payload: dict[str, object] = {
            "sub": str(user_id),
            "jti": str(claims.token_id),
            "iss": self._issuer,
            "aud": self._audience,
            "iat": int(now.timestamp()),
            "exp": claims.expires_at,
            "type": "access" if token_type is TokenType.ACCESS else "refresh",
        }
        if family_id is not None:
            payload["fam"] = str(family_id)
        token = jwt.encode(
            payload, self._secrets[token_type], algorithm=JWT_ALGORITHM, headers={"typ": token_type}
        )
        return IssuedToken(token=token, claims=claims)

    def decode(self, token: str, expected: TokenType) -> TokenClaims:
        """The verified claims of a token of the expected type, or Unauthorized."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != expected or header.get("alg") != JWT_ALGORITHM:
                raise Unauthorized("The token is not valid")
            payload = jwt.decode(
                token,
                self._secrets[expected],
                algorithms=[JWT_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "jti", "sub"]},
            )
            kind = "access" if expected is TokenType.ACCESS else "refresh"
            if payload.get("type") != kind:
                raise Unauthorized("The token is not valid")
            for claim in _TIME_CLAIMS & payload.keys():
                _time(payload[claim])
            family = payload.get("fam")
            return TokenClaims(
                user_id=_uuid(payload["sub"]),
                token_id=_uuid(payload["jti"]),
                type=expected,
                expires_at=_time(payload["exp"]),
                family_id=None if family is None else _uuid(family),
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The token has expired") from exc
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
            raise Unauthorized("The token is not valid") from exc


# PyJWT checks that these are numbers (and exp, nbf and iat against the clock), but 1e20 is a
# number too: each must also be a time that a datetime can hold, or the token is not valid.
_TIME_CLAIMS = frozenset({"exp", "iat", "nbf"})


def _time(claim: object) -> datetime:
    """A NumericDate claim as a time; OverflowError, ValueError, TypeError (or, on some
    platforms, OSError) when it is none."""
    if isinstance(claim, bool) or not isinstance(claim, int | float):
        raise TypeError("a time claim must be a number")
    return datetime.fromtimestamp(int(claim), UTC)


def _uuid(claim: object) -> uuid.UUID:
    """An id claim; ValueError or TypeError when it is not a UUID string (uuid.UUID(5) would
    raise AttributeError)."""
    if not isinstance(claim, str):
        raise TypeError("an id claim must be a string")
    return uuid.UUID(claim)

"""Auth requests and responses."""

from __future__ import annotations

from typing import Literal

from pydantic import EmailStr, Field, field_validator

from payflow.core.schemas import RequestModel, ResponseModel, StorableText
from payflow.core.security import MAX_PASSWORD_BYTES
from payflow.users.models import Role
from payflow.users.schemas import UserOut

MIN_PASSWORD_BYTES = 8


def _password_bytes(value: str, minimum: int) -> str:
    size = len(value.encode())
    if size < minimum or size > MAX_PASSWORD_BYTES:
        raise ValueError(f"password must be {minimum}..{MAX_PASSWORD_BYTES} bytes of UTF-8")
    return value


class RegisterRequest(RequestModel):
    email: EmailStr = Field(max_length=320)
    password: str = Field(description="8..72 bytes of UTF-8")
    role: Literal[Role.USER, Role.MERCHANT] = Role.USER
    first_name: StorableText | None = Field(default=None, min_length=1, max_length=100)
    last_name: StorableText | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("password")
    @classmethod
    def _password_size(cls, value: str) -> str:
        return _password_bytes(value, MIN_PASSWORD_BYTES)


class LoginRequest(RequestModel):
    email: StorableText = Field(min_length=1, max_length=320)
    password: str = Field(description="at most 72 bytes of UTF-8")

    @field_validator("password")
    @classmethod
    def _password_size(cls, value: str) -> str:
        return _password_bytes(value, 1)


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class AuthResponse(ResponseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int


class TokenPairResponse(ResponseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int

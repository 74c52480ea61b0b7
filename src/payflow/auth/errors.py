"""Authentication errors."""

from __future__ import annotations

from payflow.core.errors import DomainError


class InvalidCredentials(DomainError):
    code = "INVALID_CREDENTIALS"
    title = "Invalid email or password"


class EmailTaken(DomainError):
    code = "EMAIL_TAKEN"
    title = "This email is already registered"


class AccountDisabled(DomainError):
    code = "ACCOUNT_DISABLED"
    title = "This account is disabled"

"""Wallet errors."""

from __future__ import annotations

from payflow.core.errors import DomainError, ValidationFailed


class InsufficientFunds(DomainError):
    code = "INSUFFICIENT_FUNDS"
    title = "Insufficient funds"


class WalletLocked(DomainError):
    code = "WALLET_LOCKED"
    title = "The wallet is locked"


class BalanceLimitExceeded(ValidationFailed):
    title = "The balance would exceed the maximum"

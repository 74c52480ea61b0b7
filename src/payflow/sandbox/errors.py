"""Stripe's API errors as the sandbox raises them, and their wire envelope.

`{"error": {"type", "code", "message", "param"}}` with Stripe's statuses. An error is `executed`
when the request got past validation and acted on the state (an over-refund, expiring a session
that is no longer open): like Stripe, only those outcomes are kept for idempotent replay.
"""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs/error-codes/"


class StripeApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        executed: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.executed = executed

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }
        if self.code:
            error["doc_url"] = DOCS + self.code.replace("_", "-")
        return {"error": error}


def parameter_missing(param: str, message: str | None = None) -> StripeApiError:
    return StripeApiError(
        400,
        message or f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
    )


def parameter_invalid(param: str, message: str, code: str = "parameter_invalid") -> StripeApiError:
    return StripeApiError(400, message, code=code, param=param)


def parameter_unknown(param: str) -> StripeApiError:
    return StripeApiError(
        400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param
    )


def resource_missing(kind: str, resource_id: str, param: str) -> StripeApiError:
    return StripeApiError(
        404, f"No such {kind}: '{resource_id}'", code="resource_missing", param=param
    )


def state_conflict(
    message: str, *, code: str | None = None, param: str | None = None
) -> StripeApiError:
    """A valid request that the object's current state refuses (kept for idempotent replay)."""
    return StripeApiError(400, message, code=code, param=param, executed=True)


def api_error(message: str = "An unexpected error occurred on Stripe's end.") -> StripeApiError:
    return StripeApiError(500, message, type_="api_error")

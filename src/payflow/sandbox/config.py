"""The sandbox's configuration: where it lives, who may use it, where it sends events and
browsers, and how fast it moves."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


def new_webhook_secret() -> str:
    """A fresh signing secret in Stripe's format."""
    return "whsec_" + secrets.token_urlsafe(32)


def new_api_key() -> str:
    """A fresh secret key in Stripe's test-mode format."""
    return "sk_test_" + secrets.token_hex(24)


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    # Where events are POSTed, e.g. http://127.0.0.1:8000/api/v1/webhooks/stripe.
    webhook_url: str
    # The URL at which browsers reach the sandbox itself, e.g. http://127.0.0.1:8000/sandbox.
    # Every URL the sandbox hands out is built from it, so the app works under any mount prefix.
    public_base: str
    # success_url and cancel_url must be under this URL (same scheme and host, under its path):
    # the hosted page redirects browsers to them from the sandbox's origin, which must not
    # become an open redirect. payflow gives its PUBLIC_URL. (Not checked here: a malformed one
    # lets no URL through, and every checkout is refused, naming its URL parameter.)
    redirect_base: str
    webhook_secret: str = field(default_factory=new_webhook_secret)
    # The only key the Stripe API (/v1) and the control API (/_sandbox) accept, as Bearer.
    api_key: str = field(default_factory=new_api_key)
    # Stripe wants expires_at 30 min..24 h ahead; the sandbox lowers the floor so tests can be short.
    min_expires_in: int = 60
    max_expires_in: int = 24 * 3600
    # How often the sweeper looks for sessions past their expires_at.
    sweep_interval: float = 1.0
    # The time an async payment method (Decline, Pay later) takes to report its result.
    async_payment_delay: float = 1.0
    # Per delivery attempt, and the waits before each retry of a failed delivery.
    delivery_timeout: float = 10.0
    retry_delays: tuple[float, ...] = (1.0, 4.0, 16.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_base", self.public_base.rstrip("/"))
        if not self.webhook_secret:
            raise ValueError("webhook_secret must not be empty")
        if not self.api_key.startswith("sk_test_") or len(self.api_key) < len("sk_test_") + 16:
            raise ValueError("api_key must be a secret test key: sk_test_ and 16+ characters")
        if not 1 <= self.min_expires_in <= self.max_expires_in:
            raise ValueError("min_expires_in must be between 1 and max_expires_in")

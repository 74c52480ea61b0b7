"""Which payment gateway a deployment talks to: real Stripe, or the built-in sandbox.

With STRIPE_SECRET_KEY set, payflow talks to Stripe (or to STRIPE_API_BASE). Without it, payflow
serves the payments sandbox itself under /sandbox and talks to it through the same SDK code path,
signing and verifying webhooks with STRIPE_WEBHOOK_SECRET or a secret made at start. The sandbox
accepts only the API key made for it at start (which payflow alone holds) and redirects browsers
only under PUBLIC_URL.
"""

from __future__ import annotations

from payflow.config import Settings
from payflow.payments.gateway import StripeGateway
from payflow.sandbox import SandboxConfig
from payflow.sandbox.config import new_webhook_secret

SANDBOX_PREFIX = "/sandbox"
WEBHOOK_PATH = "/api/v1/webhooks/stripe"


def gateway_for(settings: Settings) -> tuple[StripeGateway, SandboxConfig | None]:
    if settings.stripe_secret_key:
        gateway = StripeGateway(
            settings.stripe_secret_key,
            settings.stripe_api_base or None,
            settings.stripe_webhook_secret or "",
        )
        return gateway, None
    public = settings.public_url.rstrip("/")
    sandbox = SandboxConfig(
        webhook_url=public + WEBHOOK_PATH,
        public_base=public + SANDBOX_PREFIX,
        webhook_secret=settings.stripe_webhook_secret or new_webhook_secret(),
        redirect_base=public,
    )
    api_base = settings.stripe_api_base or sandbox.public_base
    return StripeGateway(sandbox.api_key, api_base, sandbox.webhook_secret), sandbox

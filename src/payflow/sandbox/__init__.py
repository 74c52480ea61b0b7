"""The payments sandbox: a Stripe-compatible server for what payflow uses, with a hosted
checkout page and signed webhook events, standing in for Stripe when STRIPE_SECRET_KEY is unset.
"""

from payflow.sandbox.app import create_sandbox_app
from payflow.sandbox.config import SandboxConfig, new_webhook_secret
from payflow.sandbox.runtime import Sandbox

__all__ = ["Sandbox", "SandboxConfig", "create_sandbox_app", "new_webhook_secret"]

"""Payments through Stripe Checkout: the gateway adapter, webhooks and refunds of gateway orders."""

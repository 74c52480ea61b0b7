"""Prometheus metrics. Each app owns its registry, so several apps in one process never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "payflow_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "payflow_http_request_duration_seconds",
            "HTTP request latency by route and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.orders = Counter(
            "payflow_orders_total",
            "Order transitions by resulting status and payment method",
            ["status", "method"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "payflow_webhook_events_total",
            "Webhook events by type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )

        self.gateway_refunds = Counter(
            "payflow_gateway_refunds_total",
            "Attempts to refund a payment through the gateway, by outcome",
            ["outcome"],  # succeeded | retry | failed
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

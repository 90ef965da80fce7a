"""Prometheus metrics on a registry of the application's own (no global default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class GatewayMetrics:
    CONTENT_TYPE = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dcc_gateway_requests", "Requests by path and outcome (DUIS code or HTTP status)",
            ["path", "outcome"], registry=self.registry,
        )
        self.latency = Histogram(
            "dcc_gateway_request_seconds", "Request handling time", ["path"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.queue_depth = Gauge(
            "dcc_gateway_queue_depth", "Work waiting, by queue", ["queue"], registry=self.registry
        )
        self.connections_open = Gauge(
            "dcc_gateway_connections_open", "Client connections open now", registry=self.registry
        )
        self.connections_cut = Counter(
            "dcc_gateway_connections_cut",
            "Client connections the gateway refused or closed, by reason (a limit or a timeout)",
            ["reason"], registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

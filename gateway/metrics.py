"""Prometheus metrics on a registry of the application's own (no global default registry)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gateway.stages import StageTimers


class _StageCollector(Collector):
    """``dcc_gateway_stage_cpu_seconds_total{stage}``, read from the stage timers when scraped."""

    def __init__(self, stages: StageTimers) -> None:
        self._stages = stages

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "dcc_gateway_stage_cpu_seconds", "CPU seconds spent in each stage of the request path", labels=["stage"]
        )
        for stage, seconds in self._stages.seconds().items():
            family.add_metric([stage], seconds)
        yield family


class GatewayMetrics:
    CONTENT_TYPE = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stages = StageTimers()
        self.registry.register(_StageCollector(self.stages))
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

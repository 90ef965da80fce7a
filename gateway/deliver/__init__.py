"""Delivery of asynchronous results and alerts to users' ``response_url`` (SPEC §5): the durable outbox."""

from gateway.deliver.outbox import DEFAULT_BACKOFF, Backoff, DeliveryWorker

__all__ = ["DEFAULT_BACKOFF", "Backoff", "DeliveryWorker"]

"""Delivery of asynchronous results and alerts to users' ``response_url`` (SPEC §5): the durable outbox."""

from gateway.deliver.outbox import DEFAULT_BACKOFF, DeliveryWorker, retry_delay

__all__ = ["DEFAULT_BACKOFF", "DeliveryWorker", "retry_delay"]

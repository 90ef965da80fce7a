"""Rules both stores apply the same way: checks on what they are given, and the audit records
of the outbox's state changes. Kept here once, so SQLite and PostgreSQL cannot drift apart."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Final

from gateway.eui64 import Eui64
from gateway.store.base import AdmissionRequest, AuditEntry, PendingDelivery

MAX_COUNTER: Final = (1 << 64) - 1
"""RequestID counters are unsigned 64-bit (DUIS)."""

DELIVERY_ACTOR: Final = "outbox"
"""The audit actor of the outbox's own state changes."""


def check_counter(counter: int) -> None:
    if not 0 <= counter <= MAX_COUNTER:
        raise ValueError(f"RequestID counter out of range 0..2^64-1: {counter}")


def check_read_limit(limit: int) -> int:
    """A read's row limit: at least one (a limit of 0 or less is a caller's bug, not an empty answer)."""
    if limit < 1:
        raise ValueError(f"limit must be positive: {limit}")
    return limit


def adt_limit(request: AdmissionRequest) -> tuple[dt.timedelta, int] | None:
    """(window, threshold) when a threshold applies; both or neither must be set."""
    window, threshold = request.adt_window_seconds, request.adt_threshold
    if window is None and threshold is None:
        return None
    if window is None or threshold is None:
        raise ValueError("adt_window_seconds and adt_threshold are set together or not at all")
    if window <= 0 or threshold < 0:
        raise ValueError(f"ADT window must be positive and threshold not negative ({window}, {threshold})")
    return dt.timedelta(seconds=window), threshold


def with_event_ref(entry: AuditEntry, outcome: str, event_ref: int | None) -> AuditEntry:
    """The admission's audit entry with its outcome, and the quarantine event reference if there is one."""
    detail = dict(entry.detail) if event_ref is None else {**entry.detail, "quarantine_event_ref": event_ref}
    return dataclasses.replace(entry, outcome=outcome, detail=detail)


def delivered_purge_audit(at: dt.datetime, keep: dt.timedelta, delivery_ids: list[int]) -> AuditEntry:
    """One record for a batch of delivered deliveries whose rows were deleted (each one's own
    "delivered" record, with its body's SHA-256, stays in the log)."""
    reason = f"{len(delivery_ids)} deliveries delivered more than {keep} ago: rows deleted"
    return AuditEntry(at, "delivery", DELIVERY_ACTOR, "delivered", "purged", reason, {"delivery_ids": sorted(delivery_ids)})


def delivery_audit(delivery: PendingDelivery, at: dt.datetime, outcome: str, reason: str, **detail: Any) -> AuditEntry:
    """The audit record of one state change of one delivery (kind "delivery", subject its subject)."""
    context = {
        "delivery_id": delivery.delivery_id,
        "delivery_kind": delivery.kind.value,
        "user_id": str(delivery.user_id),
        "url": delivery.url,
    }
    return AuditEntry(at, "delivery", DELIVERY_ACTOR, delivery.subject, outcome, reason, {**context, **detail})


def deliveries_rescheduled_audit(
    at: dt.datetime, user_id: Eui64, url: str, due_at: dt.datetime, delivery_ids: list[int], reason: str
) -> AuditEntry:
    """One record for a receiver's pending deliveries moved together (ids as a range: a dead
    receiver's backlog can be thousands long, and it moves at every try)."""
    detail = {
        "user_id": str(user_id), "url": url, "due_at": due_at, "count": len(delivery_ids),
        "first_delivery_id": min(delivery_ids), "last_delivery_id": max(delivery_ids),
    }
    return AuditEntry(at, "delivery", DELIVERY_ACTOR, url, "rescheduled", reason, detail)

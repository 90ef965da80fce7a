"""The small transaction interface the store's rules run on (:mod:`gateway.store.operations`).

A dialect (:mod:`~gateway.store.sqlite`, :mod:`~gateway.store.postgresql`) implements it
with its SQL and its locking: each method is one step of what a rule needs (a
check-and-set, a count, an insert), decided inside the open write transaction the
dialect runs. The rules never see SQL, and the dialects decide nothing: what is refused,
what is audited and in which order is written once, in ``operations``.

The methods are coroutines. PostgreSQL awaits the server; SQLite's run synchronously on
the store's own thread, and :func:`run_to_end` drives a rule there without an event loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from gateway.eui64 import Eui64
from gateway.store.base import (
    AdmissionRequest,
    AuditEntry,
    AuditRecord,
    ClaimedCommand,
    DeviceCommand,
    Delivery,
    DirectiveRecord,
    PendingDelivery,
    PendingPreCommand,
    QuarantinedRequest,
    QuarantineStatus,
    Shard,
)
from gateway.store.rows import Encoding

T = TypeVar("T")


class Transaction(Protocol):
    """One open write transaction of a store. Every method runs inside it; nothing is visible to
    another transaction before it commits, and a rollback undoes all of it."""

    encoding: Encoding

    # --- the audit chain ---------------------------------------------------------------------
    async def chain_head(self) -> tuple[int, str]:
        """(position, hash) in its lane of the record the next one chains onto; (0, the lane's
        genesis hash) for an empty lane. A lane has one writer, so nobody else moves it."""
        ...

    async def insert_audit(
        self, position: int, entry: AuditEntry, columns: tuple[Any, ...], previous_hash: str, digest: str
    ) -> AuditRecord:
        """Appends one chained record at ``position`` of the lane (it becomes the head) and returns it
        with its sequence. It may be held back until a row references it or the transaction
        commits, but not past either."""
        ...

    def count_audit_cpu(self, nanoseconds: int) -> None:
        """Where the dialect counts the CPU of serialising and hashing its audit records (the
        "audit" stage of :mod:`gateway.stages`); a dialect that does not split it out ignores it."""
        ...

    # --- directives --------------------------------------------------------------------------
    async def registry_version(self) -> int: ...

    async def directive(self, directive_id: str) -> DirectiveRecord | None: ...

    async def insert_directive(self, columns: tuple[Any, ...], audit_sequence: int) -> int:
        """Stores the directive's columns (see :func:`~gateway.store.rows.directive_columns`);
        returns its sequence, the next of the log."""
        ...

    # --- admissions --------------------------------------------------------------------------
    async def consume_counter(self, originator: Eui64, target: Eui64, counter: int) -> int | None:
        """Check-and-set of the replay counter: None when ``counter`` was above the stored one
        (it is stored now), else the stored counter (nothing changes)."""
        ...

    async def count_in_window(
        self, request: AdmissionRequest, window: dt.timedelta, threshold: int, retention: dt.timedelta
    ) -> bool:
        """Whether the user had fewer than ``threshold`` admissions of the SRV in
        ``(at - window, ...)``; if so this one is counted. Rows older than
        ``max(window, retention)`` may be pruned on the way."""
        ...

    async def hold(self, request: AdmissionRequest) -> int:
        """Keeps the request in quarantine with a new event reference, its AD1 alert marked due."""
        ...

    async def held(self, event_ref: int, user_id: Eui64) -> QuarantinedRequest | None:
        """That user's quarantined request, while it is HELD; None otherwise."""
        ...

    async def settle(self, event_ref: int, status: QuarantineStatus, at: dt.datetime) -> None: ...

    async def clear_alert_mark(self, event_ref: int) -> bool:
        """Clears the request's "AD1 alert due" mark; False when it was not set."""
        ...

    # --- Pre-Commands ------------------------------------------------------------------------
    async def precommand(self, request_id: str) -> PendingPreCommand | None:
        """The Pre-Command remembered under ``request_id``, taken or not."""
        ...

    async def insert_precommand(self, precommand: PendingPreCommand, audit_sequence: int) -> None: ...

    async def take_precommand(self, request_id: str, user_id: Eui64, at: dt.datetime) -> PendingPreCommand | None:
        """Marks it consumed and returns it while it is pending, that user's and ``at < expires_at``."""
        ...

    # --- the device command queue ------------------------------------------------------------
    async def insert_command(self, command: DeviceCommand) -> int | None:
        """Queues it; None when its RequestID is queued already (nothing changes)."""
        ...

    async def command_id(self, request_id: str) -> int | None: ...

    async def claim_commands(
        self, now: dt.datetime, limit: int, lease: dt.timedelta, shard: Shard
    ) -> list[ClaimedCommand]: ...

    async def release_claims(self, shard: Shard) -> int: ...

    async def complete_command(self, command_id: int, claim_token: str, at: dt.datetime, outcome: str) -> bool:
        """EXECUTED, while it is QUEUED under ``claim_token``; False (nothing changes) otherwise."""
        ...

    async def upsert_meters(self, meters: Mapping[str, str]) -> None: ...

    async def meter_epoch(self, proposed: dt.datetime) -> dt.datetime: ...

    # --- the outbox --------------------------------------------------------------------------
    async def insert_delivery(self, delivery: Delivery) -> PendingDelivery:
        """Stores it PENDING, due at its ``created_at``; returns the row as stored."""
        ...

    async def due_deliveries(self, now: dt.datetime, limit: int, lease: dt.timedelta | None) -> list[PendingDelivery]:
        """PENDING, due and not leased to another caller; leased until ``now + lease`` when given."""
        ...

    async def count_attempt(self, delivery_id: int, at: dt.datetime, error: str | None) -> PendingDelivery | None:
        """Counts one attempt and ends its lease; returns the delivery as it was before (None: unknown)."""
        ...

    async def mark_delivered(self, delivery_id: int, at: dt.datetime) -> None: ...

    async def mark_failed(self, delivery_id: int, at: dt.datetime) -> None: ...

    async def set_next_attempt(self, delivery_id: int, at: dt.datetime) -> None: ...

    async def overdue_deliveries(self, round_started_by: dt.datetime) -> list[PendingDelivery]: ...

    async def expired_failures(self, failed_by: dt.datetime) -> list[PendingDelivery]: ...

    async def delete_delivery(self, delivery_id: int) -> None: ...

    async def delete_delivered(self, delivered_by: dt.datetime, limit: int) -> list[int]: ...

    async def failed_deliveries(self, user_id: Eui64) -> list[PendingDelivery]: ...

    async def start_round(self, delivery_id: int, at: dt.datetime) -> None:
        """FAILED -> PENDING, due at ``at``, attempts counted afresh, a new round from ``at``."""
        ...

    async def reschedule_receiver(
        self, user_id: Eui64, url: str, due_at: dt.datetime, spared: int
    ) -> list[int]: ...


def run_to_end(step: Coroutine[Any, Any, T]) -> T:
    """The value of a coroutine that never suspends (a rule on SQLite's synchronous transaction).

    SQLite's transaction methods do their work before they return, so a rule over them runs to
    its end on the first step; one that suspends awaited something outside the store, which
    the store's thread has no loop for: that is a bug, and it is stopped, not left half done.
    """
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a store rule awaited something other than its transaction")

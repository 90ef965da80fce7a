"""The store's rules, once for every dialect: what each write checks, decides and audits.

Each function is the body of one write call of :class:`gateway.store.base.Store`, run inside
the transaction the dialect opened (:class:`~gateway.store.transaction.Transaction`), with the
dialect's locks already held for what it touches. The checks on a call's arguments that need
no transaction are here too (``check_*``), so that a dialect refuses a malformed call before
queuing it, in the same words on every backend.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from gateway.codes import ResponseCode
from gateway.eui64 import Eui64
from gateway.stages import now_ns
from gateway.store.audit import chain_hash_of_stored, utc_text
from gateway.store.base import (
    Admission,
    AdmissionRequest,
    AdmissionResult,
    AuditEntry,
    AuditRecord,
    ClaimedCommand,
    CommandCompletion,
    Delivery,
    DeliveryStatus,
    DeviceCommand,
    DirectiveRecord,
    PendingDelivery,
    PendingPreCommand,
    PreCommandConflict,
    QuarantineAlert,
    QuarantinedRequest,
    QuarantineStatus,
    Shard,
)
from gateway.store.rows import audit_columns, audit_entry, directive_columns, directive_record
from gateway.store.rules import (
    adt_limit,
    check_counter,
    deliveries_rescheduled_audit,
    delivered_purge_audit,
    delivery_audit,
    with_event_ref,
)
from gateway.store.transaction import Transaction

OUTCOME_CODES: Final[Mapping[Admission, str]] = MappingProxyType(
    {
        Admission.ACCEPTED: ResponseCode.I99.value,
        Admission.REPLAY: ResponseCode.E40.value,
        Admission.QUARANTINED: ResponseCode.E43.value,
    }
)


# --- checks before a call is queued -------------------------------------------------------------


def check_admission(request: AdmissionRequest) -> None:
    check_counter(request.counter)
    adt_limit(request)
    if request.precommand is not None:
        check_precommand(request.at, request.precommand.expires_at)


def check_settlement(status: QuarantineStatus, command: DeviceCommand | None) -> None:
    if status is QuarantineStatus.HELD:
        raise ValueError("a quarantined request is settled as RELEASED or DELETED")
    if command is not None and status is not QuarantineStatus.RELEASED:
        raise ValueError("only a released request has a command to queue")


def check_precommand(issued_at: dt.datetime, expires_at: dt.datetime) -> None:
    if expires_at <= issued_at:
        raise ValueError(f"a Pre-Command expires after it is issued ({issued_at} .. {expires_at})")


def check_claim(limit: int, lease: dt.timedelta | None) -> None:
    if limit < 1:
        raise ValueError(f"limit must be positive: {limit}")
    if lease is not None and lease <= dt.timedelta(0):
        raise ValueError(f"a lease must be positive: {lease}")


# --- the audit chain -----------------------------------------------------------------------------


async def append_audit(tx: Transaction, entry: AuditEntry) -> AuditRecord:
    """Chains ``entry`` onto the head of the transaction's lane (only its writer appends to it, so
    reading the head and appending are one step). Answers the record as a reader will decode it
    (the rules use :func:`chain_audit`, which does not decode it back)."""
    record, columns = await _chain(tx, entry)
    return dataclasses.replace(record, entry=audit_entry(columns, tx.encoding))


async def chain_audit(tx: Transaction, entry: AuditEntry) -> int:
    """:func:`append_audit` for the rules: the record's sequence, without decoding it back."""
    return (await _chain(tx, entry))[0].sequence


async def _chain(tx: Transaction, entry: AuditEntry) -> tuple[AuditRecord, tuple[Any, ...]]:
    """Serialises the entry once and hashes it once: the hash is taken over the stored texts
    (:func:`~gateway.store.audit.chain_hash_of_stored`), which is the hash of the entry a reader
    decodes from them."""
    last_position, previous_hash = await tx.chain_head()
    started = now_ns()
    columns = audit_columns(entry, tx.encoding)
    at = columns[0] if isinstance(columns[0], str) else utc_text(entry.at)
    digest = chain_hash_of_stored(previous_hash, at, *columns[1:])
    tx.count_audit_cpu(now_ns() - started)
    record = await tx.insert_audit(last_position + 1, entry, columns, previous_hash, digest)
    return record, columns


# --- directives ----------------------------------------------------------------------------------


async def store_directive(tx: Transaction, record: DirectiveRecord, audit: AuditEntry) -> DirectiveRecord:
    """A directive_id already stored returns the stored record and records nothing (idempotence)."""
    existing = await tx.directive(record.directive_id)
    if existing is not None:
        return existing
    columns = directive_columns(record, tx.encoding)
    audit_sequence = await chain_audit(tx, audit)
    sequence = await tx.insert_directive(columns, audit_sequence)
    return directive_record((sequence, *columns), tx.encoding)


# --- admissions and quarantine ------------------------------------------------------------------


async def admit(tx: Transaction, request: AdmissionRequest, retention: dt.timedelta) -> AdmissionResult:
    """Registry version, replay check-and-set, ADT count, quarantine, the command and the audit record.

    ``last_counter`` in the result is the counter stored after the decision: the earlier one
    for a REPLAY, this request's otherwise. STALE_REGISTRY changes and records nothing.
    """
    if request.registry_version is not None and await tx.registry_version() > request.registry_version:
        return AdmissionResult(Admission.STALE_REGISTRY)  # decided on an old registry: change nothing
    limit = adt_limit(request)
    stored = await tx.consume_counter(request.originator, request.target, request.counter)
    if stored is not None:
        return await _decided(tx, request, Admission.REPLAY, stored, None)
    if limit is not None:
        window, threshold = limit
        if not await tx.count_in_window(request, window, threshold, retention):
            return await _decided(tx, request, Admission.QUARANTINED, request.counter, await tx.hold(request))
    if request.command is not None:
        await insert_command(tx, request.command)
    decided = await _decided(tx, request, Admission.ACCEPTED, request.counter, None)
    if request.precommand is not None:  # CV4: what it issued, in the same transaction as the decision
        issued = request.precommand
        precommand = PendingPreCommand(
            request.request_id, request.user_id, issued.device_id, bytes(issued.apdu), request.at, issued.expires_at
        )
        await remember_precommand(tx, precommand, issued.audit)
    return decided


async def _decided(
    tx: Transaction, request: AdmissionRequest, admission: Admission, last: int, event_ref: int | None
) -> AdmissionResult:
    audit_sequence = await chain_audit(tx, with_event_ref(request.audit, OUTCOME_CODES[admission], event_ref))
    return AdmissionResult(admission, quarantine_event_ref=event_ref, last_counter=last, audit_sequence=audit_sequence)


async def settle_quarantine(
    tx: Transaction,
    event_ref: int,
    user_id: Eui64,
    status: QuarantineStatus,
    audit: AuditEntry,
    command: DeviceCommand | None,
) -> QuarantinedRequest | None:
    """A HELD request of that user becomes ``status`` (with ``command`` queued when released); None
    (nothing recorded) when there is none: another user's, settled already, or unknown."""
    held = await tx.held(event_ref, user_id)
    if held is None:
        return None
    await tx.settle(event_ref, status, audit.at)
    if command is not None:
        await insert_command(tx, command)
    await chain_audit(tx, with_event_ref(audit, audit.outcome, event_ref))
    return dataclasses.replace(held, status=status)


async def record_quarantine_alert(
    tx: Transaction, event_ref: int, delivery: Delivery | None, audit: AuditEntry | None
) -> bool:
    """Clears the alert mark and queues the alert (or records ``audit``); False when another worker did."""
    if not await tx.clear_alert_mark(event_ref):
        return False
    if delivery is not None:
        await enqueue(tx, delivery)
    if audit is not None:
        await chain_audit(tx, audit)
    return True


async def record_quarantine_alerts(tx: Transaction, alerts: Sequence[QuarantineAlert]) -> int:
    """:func:`record_quarantine_alert` for a batch, in one transaction; how many were queued."""
    queued = 0
    for alert in alerts:
        queued += await record_quarantine_alert(tx, alert.event_ref, alert.delivery, alert.audit)
    return queued


# --- Pre-Commands ---------------------------------------------------------------------------------


async def remember_precommand(tx: Transaction, precommand: PendingPreCommand, audit: AuditEntry) -> None:
    """Stores a new Pre-Command; the same one again is a no-op, a different one a conflict."""
    existing = await tx.precommand(precommand.request_id)
    if existing is not None:
        same = (existing.user_id, existing.device_id, existing.apdu)  # what CV5 is checked against
        if same != (precommand.user_id, precommand.device_id, bytes(precommand.apdu)):
            raise PreCommandConflict(
                f"another Pre-Command is already remembered for RequestID {precommand.request_id!r}"
            )
        return
    audit_sequence = await chain_audit(tx, audit)
    await tx.insert_precommand(precommand, audit_sequence)


# --- device commands and meter states ---------------------------------------------------------------


async def insert_command(tx: Transaction, command: DeviceCommand) -> tuple[int, bool]:
    """Queues ``command`` unless its RequestID is already queued: (command id, whether it was new)."""
    inserted = await tx.insert_command(command)
    if inserted is not None:
        return inserted, True
    existing = await tx.command_id(command.request_id)
    if existing is None:
        raise RuntimeError(f"command {command.request_id!r} was neither inserted nor found")
    return existing, False


async def queue_command(tx: Transaction, command: DeviceCommand, audit: AuditEntry) -> int:
    command_id, new = await insert_command(tx, command)
    if new:  # queued before: nothing is queued or recorded again
        await chain_audit(tx, dataclasses.replace(audit, detail={**audit.detail, "command_id": command_id}))
    return command_id


async def claim_commands(
    tx: Transaction, now: dt.datetime, limit: int, lease: dt.timedelta, shard: Shard
) -> list[ClaimedCommand]:
    claimed = await tx.claim_commands(now, limit, lease, shard)
    return sorted(claimed, key=lambda command: command.command_id)


async def store_meters(
    tx: Transaction, meters: Mapping[str, str], deliveries: Sequence[Delivery], audits: Sequence[AuditEntry]
) -> None:
    if meters:
        await tx.upsert_meters(meters)
    for delivery in deliveries:
        await enqueue(tx, delivery)
    for entry in audits:
        await chain_audit(tx, entry)


async def complete_command(tx: Transaction, claimed: ClaimedCommand, completion: CommandCompletion) -> bool:
    if not await tx.complete_command(claimed.command_id, claimed.claim_token, completion.at, completion.outcome):
        return False  # executed already, or claimed again by another executor: this execution must not count
    await store_meters(tx, completion.meters, completion.deliveries, completion.audits)
    return True


# --- the outbox ----------------------------------------------------------------------------------------
# Every state change is audited in the transaction that makes it (kind "delivery"). Delivery is at
# least once: an attempt whose outcome was not recorded (crash, lost lease) is made again.


async def enqueue(tx: Transaction, delivery: Delivery) -> int:
    """Stores the delivery, due at ``created_at``; audits its decision (if given) and the enqueue."""
    stored = await tx.insert_delivery(delivery)
    if delivery.audit is not None:
        decision = delivery.audit
        detail = {**decision.detail, "delivery_id": stored.delivery_id}
        await chain_audit(tx, dataclasses.replace(decision, detail=detail))
    digest = hashlib.sha256(stored.body).hexdigest()
    entry = delivery_audit(stored, delivery.created_at, "enqueued", "queued for delivery", body_sha256=digest)
    await chain_audit(tx, entry)
    return stored.delivery_id


async def due_deliveries(
    tx: Transaction, now: dt.datetime, limit: int, lease: dt.timedelta | None
) -> list[PendingDelivery]:
    due = await tx.due_deliveries(now, limit, lease)
    return sorted(due, key=lambda delivery: (delivery.next_attempt_at, delivery.delivery_id))


async def record_attempt(
    tx: Transaction, delivery_id: int, at: dt.datetime, error: str | None, next_attempt_at: dt.datetime | None
) -> DeliveryStatus | None:
    """One attempt (``error`` None: it succeeded) and the status it leads to; see :meth:`Store.record_attempt`."""
    before = await tx.count_attempt(delivery_id, at, error)
    if before is None:
        return None
    attempt = {"attempt": before.attempts + 1, "status_before": before.status.value}
    if error is None:
        if before.status is not DeliveryStatus.DELIVERED:
            await tx.mark_delivered(delivery_id, at)
        await chain_audit(tx, delivery_audit(before, at, "delivered", "the receiver answered 2xx", **attempt))
        return DeliveryStatus.DELIVERED
    if before.status is not DeliveryStatus.PENDING:
        reason = f"attempt failed ({error}); the delivery stays {before.status.value}"
        await chain_audit(tx, delivery_audit(before, at, "attempt-failed", reason, error=error, **attempt))
        return before.status
    if next_attempt_at is None:
        await tx.mark_failed(delivery_id, at)
        reason = f"attempt failed ({error}); no further attempt: moved to the failed queue"
        await chain_audit(tx, delivery_audit(before, at, "failed", reason, error=error, **attempt))
        return DeliveryStatus.FAILED
    await tx.set_next_attempt(delivery_id, next_attempt_at)
    reason = f"attempt failed ({error}); retry scheduled"
    schedule = {"error": error, "next_attempt_at": next_attempt_at, **attempt}
    await chain_audit(tx, delivery_audit(before, at, "retry-scheduled", reason, **schedule))
    return DeliveryStatus.PENDING


async def fail_overdue(tx: Transaction, now: dt.datetime, max_age: dt.timedelta) -> int:
    overdue = await tx.overdue_deliveries(now - max_age)
    for delivery in overdue:
        await tx.mark_failed(delivery.delivery_id, now)
        reason = f"not delivered within {max_age.total_seconds():g} s: moved to the failed queue"
        entry = delivery_audit(delivery, now, "failed", reason, attempts=delivery.attempts, error=delivery.last_error)
        await chain_audit(tx, entry)
    return len(overdue)


async def purge_failed(tx: Transaction, now: dt.datetime, keep: dt.timedelta) -> int:
    expired = await tx.expired_failures(now - keep)
    for delivery in expired:
        await tx.delete_delivery(delivery.delivery_id)
        reason = f"held in the failed queue for {keep}: deleted"
        await chain_audit(tx, delivery_audit(delivery, now, "purged", reason, failed_at=delivery.failed_at))
    return len(expired)


async def purge_delivered(tx: Transaction, now: dt.datetime, keep: dt.timedelta, limit: int) -> int:
    deleted = await tx.delete_delivered(now - keep, limit)
    if deleted:
        await chain_audit(tx, delivered_purge_audit(now, keep, deleted))
    return len(deleted)


async def redeliver_failed(tx: Transaction, user_id: Eui64, now: dt.datetime) -> int:
    failed = await tx.failed_deliveries(user_id)
    for delivery in failed:
        await tx.start_round(delivery.delivery_id, now)
        reason = "taken from the failed queue for another round of delivery"
        await chain_audit(tx, delivery_audit(delivery, now, "redelivery", reason, failed_at=delivery.failed_at))
    return len(failed)


async def reschedule_deliveries(
    tx: Transaction, user_id: Eui64, url: str, due_at: dt.datetime, at: dt.datetime, reason: str, spared: int
) -> int:
    moved = await tx.reschedule_receiver(user_id, url, due_at, spared)
    if moved:
        await chain_audit(tx, deliveries_rescheduled_audit(at, user_id, url, due_at, moved, reason))
    return len(moved)

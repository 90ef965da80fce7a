"""Row <-> record, once for both dialects.

A row is the tuple of columns a query returns (``sqlite3`` tuples, ``asyncpg.Record``);
the dialects differ only in how an instant and a boolean are stored, which a
:class:`Encoding` says: SQLite stores times as fixed-width UTC text
(:func:`~gateway.store.audit.utc_text`, text order is time order) and flags as 0/1,
PostgreSQL as ``timestamptz`` and ``boolean``. JSON (directive arguments, audit
details) is :func:`~gateway.store.audit.canonical_json` text in both, the text the
hash chain hashes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Final

from gateway.eui64 import Eui64
from gateway.store.audit import AuditRecordUnreadable, canonical_json, parse_utc_text, utc_text
from gateway.store.base import (
    AuditEntry,
    AuditRecord,
    ClaimedCommand,
    CommandForm,
    DeviceCommand,
    DeliveryKind,
    DeliveryStatus,
    DirectiveRecord,
    PendingDelivery,
    PendingPreCommand,
    QuarantinedRequest,
    QuarantineStatus,
    shard_key,
)

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a dialect stores an instant and a flag."""

    time: Callable[[dt.datetime], Any]
    """An aware datetime as stored (a naive one is refused)."""
    parse_time: Callable[[Any], dt.datetime]
    """A stored instant as an aware UTC datetime."""
    flag: Callable[[bool], Any]


def _aware_utc(when: dt.datetime) -> dt.datetime:
    utc_text(when)  # refuses a naive time, as the text encoding does
    return when.astimezone(dt.UTC)


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


TEXT_TIMES: Final = Encoding(time=utc_text, parse_time=parse_utc_text, flag=int)
"""SQLite: times as UTC text of fixed width, flags as 0/1."""

NATIVE_TIMES: Final = Encoding(time=_aware_utc, parse_time=_as_utc, flag=bool)
"""PostgreSQL: ``timestamptz`` and ``boolean``."""


# --- audit ------------------------------------------------------------------------------------


def audit_columns(entry: AuditEntry, encoding: Encoding) -> tuple[Any, ...]:
    """at, kind, actor, subject, outcome, reason, detail."""
    return (
        encoding.time(entry.at),
        entry.kind,
        entry.actor,
        entry.subject,
        entry.outcome,
        entry.reason,
        canonical_json(entry.detail),
    )


def audit_entry(columns: Row, encoding: Encoding) -> AuditEntry:
    at, kind, actor, subject, outcome, reason, detail = columns
    return AuditEntry(encoding.parse_time(at), kind, actor, subject, outcome, reason, json.loads(detail))


def audit_record(row: Row, encoding: Encoding) -> AuditRecord:
    """sequence, the seven entry columns, previous_hash, hash; an undecodable row is reported as
    such, since only tampering makes one."""
    sequence = row[0]
    try:
        return AuditRecord(sequence, audit_entry(row[1:8], encoding), row[8], row[9])
    except (TypeError, ValueError) as exc:
        raise AuditRecordUnreadable(sequence, str(exc)) from exc


# --- directives -------------------------------------------------------------------------------


def directive_columns(record: DirectiveRecord, encoding: Encoding) -> tuple[Any, ...]:
    """directive_id, actor, name, arguments, decided_at, accepted, reason."""
    return (
        record.directive_id,
        record.actor,
        record.name,
        canonical_json(record.arguments),
        encoding.time(record.decided_at),
        encoding.flag(record.accepted),
        record.reason,
    )


def directive_record(row: Row, encoding: Encoding) -> DirectiveRecord:
    sequence, directive_id, actor, name, arguments, decided_at, accepted, reason = row
    return DirectiveRecord(
        sequence, directive_id, actor, name, json.loads(arguments), encoding.parse_time(decided_at), bool(accepted),
        reason,
    )


# --- quarantine and Pre-Commands --------------------------------------------------------------


def quarantined_request(row: Row, encoding: Encoding) -> QuarantinedRequest:
    event_ref, request_id, user_id, srv, raw, quarantined_at, status = row
    return QuarantinedRequest(
        event_ref,
        request_id,
        Eui64.parse(user_id),
        srv,
        bytes(raw),
        encoding.parse_time(quarantined_at),
        QuarantineStatus(status),
    )


def precommand_columns(precommand: PendingPreCommand, encoding: Encoding) -> tuple[Any, ...]:
    """request_id, user_id, device_id, apdu, issued_at, expires_at."""
    return (
        precommand.request_id,
        str(precommand.user_id),
        str(precommand.device_id),
        bytes(precommand.apdu),
        encoding.time(precommand.issued_at),
        encoding.time(precommand.expires_at),
    )


def pending_precommand(row: Row, encoding: Encoding) -> PendingPreCommand:
    request_id, user_id, device_id, apdu, issued_at, expires_at = row
    return PendingPreCommand(
        request_id,
        Eui64.parse(user_id),
        Eui64.parse(device_id),
        bytes(apdu),
        encoding.parse_time(issued_at),
        encoding.parse_time(expires_at),
    )


# --- the outbox -------------------------------------------------------------------------------


def pending_delivery(row: Row, encoding: Encoding) -> PendingDelivery:
    """delivery_id, user_id, url, body, kind, subject, created_at, status, attempts,
    round_started_at, next_attempt_at, last_error, failed_at."""
    delivery_id, user_id, url, body, kind, subject, created_at, status = row[:8]
    attempts, round_started_at, next_attempt_at, last_error, failed_at = row[8:]
    return PendingDelivery(
        delivery_id,
        Eui64.parse(user_id),
        url,
        bytes(body),
        DeliveryKind(kind),
        subject,
        encoding.parse_time(created_at),
        DeliveryStatus(status),
        attempts,
        encoding.parse_time(round_started_at),
        encoding.parse_time(next_attempt_at),
        last_error,
        None if failed_at is None else encoding.parse_time(failed_at),
    )


# --- device commands --------------------------------------------------------------------------


def command_columns(command: DeviceCommand, encoding: Encoding) -> tuple[Any, ...]:
    """request_id, originator, device_id, shard_key, service_reference, srv, form, payload, queued_at."""
    return (
        command.request_id,
        str(command.originator),
        str(command.device_id),
        shard_key(command.device_id),
        command.service_reference,
        command.service_reference_variant,
        command.form.value,
        bytes(command.payload),
        encoding.time(command.queued_at),
    )


def claimed_command(row: Row, encoding: Encoding) -> ClaimedCommand:
    """command_id, request_id, originator, device_id, service_reference, srv, form, payload,
    queued_at, claims (after this claim), claim_token."""
    command_id, request_id, originator, device_id, service_reference, srv, form, payload, queued_at = row[:9]
    claims, token = row[9:]
    command = DeviceCommand(
        request_id,
        Eui64.parse(originator),
        Eui64.parse(device_id),
        service_reference,
        srv,
        CommandForm(form),
        bytes(payload),
        encoding.parse_time(queued_at),
    )
    return ClaimedCommand(command_id, command, token, claims)

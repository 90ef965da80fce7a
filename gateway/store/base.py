"""The store interface: everything the gateway must not lose.

Design (issue #3):

* The registry and the SoLR events are *event-sourced*: the initial registry
  comes from the world's manifest, and every accepted directive is appended to
  a durable log; start-up replays the log through the pure transition
  functions of :mod:`gateway.policy.solr`. So the log is the state, and
  reopening the store reproduces every decision.
* Per-request state (replay counters, ADT windows, quarantine, pending
  Pre-Commands, deliveries) changes in *one* transaction together with the
  decision's audit record: :meth:`Store.admit` checks and updates atomically,
  which is what several workers on one database need (issue #5).
* The audit log is append-only and hash-chained: record n stores
  ``sha256(hash(n-1) || canonical JSON of record n)``.

All times are timezone-aware UTC datetimes from the injected clock.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.eui64 import Eui64

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One decision, before it is chained."""

    at: dt.datetime
    kind: str
    """e.g. "request", "directive", "quarantine-release", "delivery"."""
    actor: str
    """Who asked: a User ID (EUI-64 text) or an actor name."""
    subject: str
    """What it was about: a RequestID, a DirectiveID, a device…"""
    outcome: str
    """A DUIS response code ("I99", "E4", …) or "accepted"/"refused"/a check id."""
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    """JSON-serialisable context (SRV, CV, role, thresholds…)."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A chained audit entry as stored."""

    sequence: int
    entry: AuditEntry
    previous_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class DirectiveRecord:
    """A directive as it was decided (accepted ones are replayed at start-up)."""

    sequence: int
    directive_id: str
    actor: str
    name: str
    arguments: Mapping[str, Any]
    """JSON-serialisable arguments of the typed directive."""
    decided_at: dt.datetime
    accepted: bool
    reason: str


class Admission(enum.Enum):
    ACCEPTED = "accepted"
    REPLAY = "replay"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """What :meth:`Store.admit` decides atomically for a request that passed every static check."""

    originator: Eui64
    target: Eui64
    counter: int
    request_id: str
    user_id: Eui64
    service_reference_variant: str
    at: dt.datetime
    adt_window_seconds: int | None
    """None: no anomaly threshold applies to this request."""
    adt_threshold: int | None
    raw_request: bytes
    """Kept with a quarantined request so that a release can execute it."""
    audit: AuditEntry
    """Recorded in the same transaction; its outcome is overwritten with the admission's code."""


@dataclass(frozen=True, slots=True)
class AdmissionResult:
    admission: Admission
    quarantine_event_ref: int | None = None
    last_counter: int | None = None
    audit_sequence: int = 0


class QuarantineStatus(enum.Enum):
    HELD = "held"
    RELEASED = "released"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class QuarantinedRequest:
    event_ref: int
    request_id: str
    user_id: Eui64
    service_reference_variant: str
    raw_request: bytes
    quarantined_at: dt.datetime
    status: QuarantineStatus


class Store(Protocol):
    """The async store interface. Implementations: SQLite (default), PostgreSQL (issue #5)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # --- directives (the event log of registry and SoLR state) -------------
    async def append_directive(self, record: DirectiveRecord, audit: AuditEntry) -> DirectiveRecord:
        """Stores the directive and its audit record in one transaction; returns it with its sequence.

        A directive_id already stored is not stored again: the stored record is returned (idempotence).
        """
        ...

    async def find_directive(self, directive_id: str) -> DirectiveRecord | None: ...

    def directives(self) -> AsyncIterator[DirectiveRecord]:
        """Every stored directive in sequence order (accepted and refused)."""
        ...

    # --- requests -----------------------------------------------------------
    async def admit(self, request: AdmissionRequest) -> AdmissionResult:
        """Atomically: replay check-and-set for (originator, target); ADT window count; quarantine; audit.

        REPLAY when ``counter`` is not strictly greater than the last accepted for
        (originator, target). Otherwise, when a threshold applies and the user has
        already had ``adt_threshold`` admissions for that SRV within the window
        ending at ``at``, the request is QUARANTINED (kept with its bytes, a new
        event reference). Otherwise ACCEPTED and counted in the window. The
        counter is consumed in both the ACCEPTED and the QUARANTINED case.
        """
        ...

    async def last_counter(self, originator: Eui64, target: Eui64) -> int | None: ...

    async def quarantined(self, user_id: Eui64) -> list[QuarantinedRequest]: ...

    async def settle_quarantine(
        self, event_ref: int, user_id: Eui64, status: QuarantineStatus, audit: AuditEntry
    ) -> QuarantinedRequest | None:
        """Marks a HELD request of that user RELEASED or DELETED; None if there is none."""
        ...

    # --- audit --------------------------------------------------------------
    async def append_audit(self, entry: AuditEntry) -> AuditRecord: ...

    def audit_records(self) -> AsyncIterator[AuditRecord]:
        """The audit log in sequence order."""
        ...

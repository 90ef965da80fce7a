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
  ``sha256(hash(n-1) || canonical JSON of record n)``; with several PostgreSQL workers the
  chain runs per worker (a lane), the lanes' heads anchored into one anchor chain (issue #14,
  :mod:`gateway.store.audit`).
* A pending Pre-Command (CV4) is taken at most once (CV5), atomically across
  workers. The outbox delivers *at least once*: every state change of a
  delivery is audited (kind "delivery"), but an attempt made and not recorded
  before a crash is made again, so receivers dedupe by ResponseID.
* Accepted commands are queued in the admission's transaction and executed
  *exactly once* (issue #5): the executor claims them, and a meter's new state
  is stored only in the transaction that marks its command executed.
* Several workers share one database: each decides on its in-memory registry,
  and an admission names the directive sequence it was decided on, so a
  decision taken on a registry another worker has since changed is refused
  by the store (STALE_REGISTRY) and taken again.

All times are timezone-aware UTC datetimes from the injected clock.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from gateway.eui64 import Eui64

GENESIS_HASH = "0" * 64


class StoreSchemaError(RuntimeError):
    """The database holds a schema this build does not know (newer, or not a gateway store)."""


class StoreNotOpenError(RuntimeError):
    """A store method was called before ``open()`` or after ``close()``."""


class StoreUnavailable(ConnectionError):
    """The database cannot serve the call now (server gone or shutting down, disk full, locked),
    which says nothing against the call itself. A write is then not known to be stored (a
    connection lost during COMMIT may still have stored it), so a caller tries again and meets
    the replay check if it was. The gateway answers it 503 with Retry-After, never 500."""


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


MAIN_LANE: Final = 0
"""The audit lane of a store with one writer (SQLite), and of every record written before lanes."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A chained audit entry as stored.

    ``sequence`` orders the whole log and is unique. The hash chain runs along a *lane*: one
    writer's records (a PostgreSQL store object, i.e. one worker, has a lane of its own; SQLite
    and every record from before lanes are :data:`MAIN_LANE`). ``position`` is the record's
    place in its lane, counted from 1 without gaps; ``previous_hash`` is the hash of the
    record before it in its lane. In the main lane position and sequence are the same number.
    """

    sequence: int
    entry: AuditEntry
    previous_hash: str
    hash: str
    lane: int = MAIN_LANE
    position: int | None = None
    """None: the same as ``sequence`` (the main lane)."""

    @property
    def lane_position(self) -> int:
        return self.sequence if self.position is None else self.position


@dataclass(frozen=True, slots=True)
class LaneAnchor:
    """A lane's head written into the anchor chain, which links every anchor to the one before
    (``hash = sha256(previous_hash || canonical JSON of lane, position, lane_hash, at)``)."""

    sequence: int
    at: dt.datetime
    lane: int
    position: int
    lane_hash: str
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
    STALE_REGISTRY = "stale-registry"
    """The decision was taken on a registry older than the stored directive log (another
    worker stored a directive meanwhile): nothing was changed or recorded; refresh and decide again."""


# --- commands queued for the simulated devices --------------------------------------------


class CommandForm(enum.StrEnum):
    """How the simulated device receives an accepted command (what ``DeviceCommand.payload`` holds)."""

    SR_BODY = "sr-body"
    """A device request (CV1-3): the signed request's body element, serialised (the device's behaviour
    reads it; SMETS1 SR 1.6 takes its mode from it)."""
    SIGNED_PRE_COMMAND = "signed-pre-command"
    """SMETS2 CV5: the GBCS APDU signed by the supplier's DS key (the meter verifies it)."""
    ACKNOWLEDGE = "acknowledge"
    """A non-device request (CV8), answered by the DCC: the signed body (empty in commands queued
    before the DCC answered with a payload)."""


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    """An accepted command on its way to its device, queued durably with the decision that accepted it."""

    request_id: str
    """Unique: a RequestID is queued at most once (queuing it again returns the first command)."""
    originator: Eui64
    """Who gets the asynchronous result (I0, E20, E21)."""
    device_id: Eui64
    service_reference: str
    service_reference_variant: str
    form: CommandForm
    payload: bytes
    queued_at: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "form", CommandForm(self.form))


SHARD_MODULUS: Final = 720_720
"""Commands carry ``device value % SHARD_MODULUS``; any shard count from 1 to 16 divides it, so
``shard_key % count`` is the device's shard for every such count."""

MAX_SHARDS: Final = 16


@dataclass(frozen=True, slots=True)
class Shard:
    """The devices one executor runs: those whose EUI-64 value is ``index`` modulo ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ValueError(f"a shard is index < count <= {MAX_SHARDS}: {self.index}/{self.count}")

    def owns(self, device_id: Eui64) -> bool:
        return device_id.value % self.count == self.index


ALL_DEVICES: Final = Shard(0, 1)


def shard_key(device_id: Eui64) -> int:
    return device_id.value % SHARD_MODULUS


class CommandStatus(enum.StrEnum):
    QUEUED = "queued"
    EXECUTED = "executed"


@dataclass(frozen=True, slots=True)
class ClaimedCommand:
    """A queued command claimed by the device executor (see :meth:`Store.claim_commands`)."""

    command_id: int
    """Increasing in queue order: commands to one device are executed in this order."""
    command: DeviceCommand
    claim_token: str
    claims: int
    """How many times it has been claimed, this claim included (>1: an earlier executor died or gave up)."""


@dataclass(frozen=True, slots=True)
class CommandCompletion:
    """Everything one execution changes, stored in one transaction by :meth:`Store.complete_command`."""

    at: dt.datetime
    outcome: str
    """The device's answer: a DUIS response code ("I0", "E20", "E21")."""
    meters: Mapping[str, str] = field(default_factory=dict)
    """Device id text -> the meter's new state (JSON text); empty when the device refused."""
    deliveries: tuple[Delivery, ...] = ()
    """The signed result for the originator and any alerts, each with its audit entry."""
    audits: tuple[AuditEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class IssuedPreCommand:
    """A CV4 Pre-Command remembered by :meth:`Store.admit` in the admission's own transaction,
    as :meth:`Store.remember_precommand` would (its RequestID, user and issue time are the
    admission's): one commit for the decision and what it issued."""

    device_id: Eui64
    apdu: bytes
    """The GBCS general-signing APDU as issued (unsigned)."""
    expires_at: dt.datetime
    audit: AuditEntry
    """Its own record ("Pre-Command issued"), chained after the admission's."""


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
    command: DeviceCommand | None = None
    """Queued in the same transaction when ACCEPTED (None: nothing goes to the device, e.g. CV4)."""
    registry_version: int | None = None
    """The directive sequence the decision was taken on; when set and the stored log has a
    later directive, the admission is STALE_REGISTRY and changes nothing (several workers)."""
    precommand: IssuedPreCommand | None = None
    """Remembered in the same transaction when ACCEPTED (CV4); a PreCommandConflict then rolls
    the whole admission back."""


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


@dataclass(frozen=True, slots=True)
class QuarantineAlert:
    """The AD1 alert of one quarantined request, signed, as :meth:`Store.record_quarantine_alerts` queues it."""

    event_ref: int
    delivery: Delivery | None
    """To the user's response_url; None for a user without one (then only ``audit`` is recorded)."""
    audit: AuditEntry | None


# --- pending Pre-Commands ---------------------------------------------------------------


class PreCommandConflict(ValueError):
    """A different Pre-Command is already remembered under that RequestID (nothing was replaced)."""


@dataclass(frozen=True, slots=True)
class PendingPreCommand:
    """A Pre-Command issued with CV4, waiting for its signed return with CV5 under the same RequestID."""

    request_id: str
    user_id: Eui64
    device_id: Eui64
    apdu: bytes
    """The GBCS general-signing APDU as issued (unsigned)."""
    issued_at: dt.datetime
    expires_at: dt.datetime
    """The first instant at which it can no longer be taken."""


# --- the outbox -------------------------------------------------------------------------

DELIVERY_MAX_AGE: Final = dt.timedelta(seconds=300)
"""A delivery not made within this long of its round's start goes to the failed queue (SEC: 300 s)."""

FAILED_DELIVERY_KEEP: Final = dt.timedelta(days=2)
"""How long the failed queue holds a delivery for re-delivery (SEC: 2 days)."""

DELIVERED_KEEP: Final = dt.timedelta(days=2)
"""How long a delivered document's row (with its body) is kept; the audit log keeps, for good, that
it was delivered and its body's SHA-256. Without a limit the outbox grows by every answer sent."""

PURGE_BATCH: Final = 1000
"""Rows one purge of delivered deliveries deletes at most: its rows stay locked while it runs."""


class DeliveryKind(enum.StrEnum):
    RESPONSE = "response"
    """An asynchronous result (e.g. I0 from the device) for a Service Request."""
    DEVICE_ALERT = "device-alert"
    DCC_ALERT = "dcc-alert"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A signed document to POST to a user's ``response_url``, as handed to :meth:`Store.enqueue_delivery`."""

    user_id: Eui64
    """The recipient."""
    url: str
    """The recipient's ``response_url``: http or https only."""
    body: bytes
    """The signed XML, sent as is."""
    kind: DeliveryKind
    subject: str
    """What it is about (a RequestID, an alert's event reference…); audit records carry it."""
    created_at: dt.datetime
    audit: AuditEntry | None = None
    """The decision that produced it, recorded in the same transaction (with ``delivery_id`` in its detail)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DeliveryKind(self.kind))  # a plain "response" is accepted, "foo" is not
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"a delivery URL is http or https: {self.url!r}")


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A delivery as the outbox holds it (pending, or in the failed queue)."""

    delivery_id: int
    user_id: Eui64
    url: str
    body: bytes
    kind: DeliveryKind
    subject: str
    created_at: dt.datetime
    status: DeliveryStatus
    attempts: int
    """Attempts in the current round (a round starts at enqueue and at each re-delivery)."""
    round_started_at: dt.datetime
    next_attempt_at: dt.datetime
    last_error: str | None
    failed_at: dt.datetime | None


class Store(Protocol):
    """The async store interface. Implementations: SQLite (default), PostgreSQL.

    Write transactions are grouped: concurrent calls are queued and run by one writer in one
    transaction (each call in its own savepoint, so a failing call rolls back alone), and answered
    after that transaction commits. Durability then costs one commit per group, not per call.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # --- directives (the event log of registry and SoLR state) -------------
    async def append_directive(self, record: DirectiveRecord, audit: AuditEntry) -> DirectiveRecord:
        """Stores the directive and its audit record in one transaction; returns it with its sequence.

        A directive_id already stored is not stored again: the stored record is returned (idempotence).
        """
        ...

    async def find_directive(self, directive_id: str) -> DirectiveRecord | None: ...

    def directives(self, after_sequence: int = 0) -> AsyncIterator[DirectiveRecord]:
        """Every stored directive with a sequence above ``after_sequence``, in sequence order (accepted and refused)."""
        ...

    async def registry_version(self) -> int:
        """The sequence of the last stored directive (0 when there is none)."""
        ...

    # --- requests -----------------------------------------------------------
    async def admit(self, request: AdmissionRequest) -> AdmissionResult:
        """Atomically: replay check-and-set for (originator, target); ADT window count; quarantine; audit.

        REPLAY when ``counter`` is not strictly greater than the last accepted for
        (originator, target). Otherwise, when a threshold applies and the user has
        already had ``adt_threshold`` admissions for that SRV within the window
        ending at ``at``, the request is QUARANTINED (kept with its bytes, a new
        event reference). Otherwise ACCEPTED and counted in the window. The
        counter is consumed in both the ACCEPTED and the QUARANTINED case. ACCEPTED also
        queues ``request.command`` and remembers ``request.precommand``, in that transaction.
        """
        ...

    async def last_counter(self, originator: Eui64, target: Eui64) -> int | None: ...

    async def quarantined(self, user_id: Eui64) -> list[QuarantinedRequest]: ...

    async def settle_quarantine(
        self,
        event_ref: int,
        user_id: Eui64,
        status: QuarantineStatus,
        audit: AuditEntry,
        command: DeviceCommand | None = None,
    ) -> QuarantinedRequest | None:
        """Marks a HELD request of that user RELEASED or DELETED; None (and nothing changes) if there is none.

        ``command`` (with RELEASED only) is queued in the same transaction.
        """
        ...

    async def quarantine_alerts_due(self, limit: int = 100) -> list[QuarantinedRequest]:
        """Quarantined requests whose AD1 alert is not queued yet, oldest first (any status).

        :meth:`admit` marks each QUARANTINED request so in the transaction that quarantines it:
        the alert its E43 answer promises then survives a crash between that answer and the
        alert being queued, and any worker may queue it.
        """
        ...

    async def record_quarantine_alert(self, event_ref: int, delivery: Delivery | None, audit: AuditEntry | None) -> bool:
        """In one transaction: clears the mark, queues ``delivery`` (as :meth:`enqueue_delivery`) or,
        for a user without a response URL, appends ``audit``. False, changing nothing, when the mark
        was already cleared (another worker queued that alert)."""
        ...

    async def record_quarantine_alerts(self, alerts: Sequence[QuarantineAlert]) -> int:
        """:meth:`record_quarantine_alert` for each of ``alerts``, all in one transaction (one commit
        for a batch of alerts); returns how many were queued (an alert whose mark another worker
        cleared meanwhile is skipped, changing nothing)."""
        ...

    # --- audit --------------------------------------------------------------
    async def append_audit(self, entry: AuditEntry) -> AuditRecord: ...

    def audit_records(self) -> AsyncIterator[AuditRecord]:
        """The audit log in sequence order."""
        ...

    # --- pending Pre-Commands (the critical flow: CV4 issues, CV5 returns it signed) --------
    async def remember_precommand(
        self,
        request_id: str,
        user_id: Eui64,
        device_id: Eui64,
        apdu: bytes,
        issued_at: dt.datetime,
        expires_at: dt.datetime,
        audit: AuditEntry,
    ) -> None:
        """Keeps the Pre-Command issued for ``request_id`` (CV4), with its audit record, in one transaction.

        Idempotent for the same Pre-Command: remembering identical ``(user_id,
        device_id, apdu)`` again changes and records nothing, even after it was
        taken (a taken Pre-Command is never re-armed). Anything else under a known
        ``request_id`` raises :class:`PreCommandConflict` and nothing is stored.
        """
        ...

    async def take_precommand(self, request_id: str, user_id: Eui64, at: dt.datetime) -> PendingPreCommand | None:
        """The Pre-Command issued for ``request_id`` to ``user_id``, marked consumed: at most once, ever.

        None (and nothing changes) when it is unknown, another user's, already
        taken, or expired: it can be taken while ``at < expires_at``. The caller
        audits the CV5 decision; the row keeps when it was taken.
        """
        ...

    # --- commands for the simulated devices (executed exactly once) -------------------------
    async def queue_command(self, command: DeviceCommand, audit: AuditEntry) -> int:
        """Queues a command with the decision's audit record in one transaction; returns its command id.

        A RequestID already queued is not queued again (and nothing is recorded): its id is returned.
        """
        ...

    async def claim_commands(
        self, now: dt.datetime, limit: int, lease: dt.timedelta, shard: Shard = ALL_DEVICES
    ) -> list[ClaimedCommand]:
        """QUEUED commands to ``shard``'s devices not under another live claim, oldest first, at most ``limit``.

        Each is claimed until ``now + lease`` under a new claim token. A claim whose
        lease has ended can be taken again (the executor that held it died).
        """
        ...

    async def release_claims(self, shard: Shard = ALL_DEVICES) -> int:
        """Ends every claim on a QUEUED command to ``shard``'s devices (their sole executor starting
        again); returns how many."""
        ...

    async def complete_command(self, claimed: ClaimedCommand, completion: CommandCompletion) -> bool:
        """In one transaction: marks the command EXECUTED, stores the meters' new states, enqueues the
        deliveries (each with its audit record) and appends the audits.

        Only while the command is QUEUED under ``claimed.claim_token``; otherwise nothing is stored and
        the answer is False. This is what makes execution exactly once: a meter's state changes in the
        store only together with the command that changed it.
        """
        ...

    async def command_status(self, request_id: str) -> CommandStatus | None: ...

    async def queued_commands(self) -> int:
        """How many commands are QUEUED (claimed or not)."""
        ...

    # --- the simulated meters' states (only meters that changed since installation) ----------
    async def save_meters(
        self, meters: Mapping[str, str], deliveries: Sequence[Delivery] = (), audits: Sequence[AuditEntry] = ()
    ) -> None:
        """Stores meter states (device id text -> JSON text, replacing earlier ones), the deliveries their
        alerts produced and audit entries, in one transaction."""
        ...

    async def load_meters(self) -> dict[str, str]:
        """Every stored meter state: device id text -> JSON text."""
        ...

    async def load_meter(self, device_id: str) -> str | None: ...

    async def meter_epoch(self, proposed: dt.datetime) -> dt.datetime:
        """The stored instant the simulation started; on first use stores ``proposed`` and returns it."""
        ...

    # --- the outbox (async results and alerts, delivered at least once) -----------------
    async def enqueue_delivery(self, delivery: Delivery) -> int:
        """Stores a delivery, PENDING and due at once, and audits it in one transaction; returns its id."""
        ...

    async def due_deliveries(
        self, now: dt.datetime, limit: int, *, lease: dt.timedelta | None = None
    ) -> list[PendingDelivery]:
        """PENDING deliveries with ``next_attempt_at <= now``, oldest due first, at most ``limit``.

        With ``lease``, the rows returned are claimed until ``now + lease``: another
        worker's call does not return them until then, or until the attempt is
        recorded. A worker that dies mid-attempt loses its claim when the lease ends.
        """
        ...

    async def record_attempt(
        self, delivery_id: int, at: dt.datetime, ok: bool, error: str | None, next_attempt_at: dt.datetime | None
    ) -> DeliveryStatus | None:
        """Records one attempt and its audit record; returns the status after it (None: unknown id).

        ``ok``: DELIVERED (also from FAILED: an attempt that was in flight when the
        delivery went overdue still counts). Not ``ok``: a PENDING delivery is due
        again at ``next_attempt_at``, or FAILED when that is None; a FAILED one stays
        FAILED; a DELIVERED one stays DELIVERED.
        """
        ...

    async def fail_overdue(self, now: dt.datetime, max_age: dt.timedelta = DELIVERY_MAX_AGE) -> int:
        """PENDING deliveries whose round began at least ``max_age`` ago become FAILED; returns how many."""
        ...

    async def purge_failed(self, now: dt.datetime, keep: dt.timedelta = FAILED_DELIVERY_KEEP) -> int:
        """Deletes FAILED deliveries that failed at least ``keep`` ago; returns how many."""
        ...

    async def purge_delivered(
        self, now: dt.datetime, keep: dt.timedelta = DELIVERED_KEEP, limit: int = PURGE_BATCH
    ) -> int:
        """Deletes up to ``limit`` DELIVERED deliveries delivered at least ``keep`` ago, oldest first,
        with one audit record naming them; returns how many."""
        ...

    async def failed_deliveries(self, user_id: Eui64) -> list[PendingDelivery]:
        """That user's failed queue, oldest first."""
        ...

    async def redeliver_failed(self, user_id: Eui64, now: dt.datetime) -> int:
        """Every FAILED delivery of that user becomes PENDING, due at ``now``, for a new round of ``max_age``."""
        ...

    async def reschedule_deliveries(
        self, user_id: Eui64, url: str, due_at: dt.datetime, *, at: dt.datetime, reason: str,
        except_delivery: int | None = None,
    ) -> int:
        """Every PENDING delivery of ``user_id`` to ``url`` (but ``except_delivery``) becomes due at
        ``due_at``, sooner or later than it was; claims, attempts and rounds are unchanged. One audit
        record (kind "delivery", subject the URL) says how many moved and why; returns how many.

        The outbox holds a receiver that does not answer until its next try (so its backlog costs
        no attempts, and is not in the way of others' deliveries), and brings the backlog forward
        when it answers again."""
        ...

    # --- reading back for people (the console): no call here changes anything ----------
    async def audit_tail(self, limit: int) -> list[AuditRecord]:
        """The last ``limit`` audit records, newest first (the first is the chain's head)."""
        ...

    async def recent_deliveries(self, limit: int) -> list[PendingDelivery]:
        """The ``limit`` deliveries queued last, any status, newest first (purged ones are gone)."""
        ...

    async def delivery(self, delivery_id: int) -> PendingDelivery | None:
        """One delivery by id, any status; None when unknown or purged."""
        ...

    async def adt_admissions(self, user_id: Eui64, service_reference_variant: str, since: dt.datetime) -> int:
        """How many of that user's admissions of that SRV the anomaly detection counts after ``since``
        (the count a window ending now holds when ``since`` is now minus the window)."""
        ...

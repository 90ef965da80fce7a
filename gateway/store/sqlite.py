"""The embedded default store: :class:`gateway.store.base.Store` on one SQLite file.

This module is the SQLite dialect only: its SQL, its transaction and its locking. What a
write checks, decides and audits is :mod:`gateway.store.operations`, run over
:class:`_SqliteTransaction` (the interface is :mod:`gateway.store.transaction`; rows are
mapped by :mod:`gateway.store.rows`).

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so a commit returns
only once the WAL has been fsynced; an acknowledged decision survives a power
cut, not just a crash of the process.

Atomicity across workers: every read-then-write runs inside ``BEGIN IMMEDIATE``,
which takes SQLite's write lock *before* the read. Two connections (two
``SqliteStore`` objects, or two processes) therefore cannot both pass the replay
check for one counter, nor both see an ADT count one below the threshold.
One ``SqliteStore`` has one connection: concurrent calls are grouped into one
transaction (see :class:`SqliteStore`) whose statements run on the event loop and whose
COMMIT, the fsync, runs on the store's thread, so a commit's fsync is shared and the loop
does not wait for it.

Encodings, chosen so that SQL comparisons on the stored text are correct:

* times: ISO 8601 UTC, fixed width, microseconds and ``Z``
  (:func:`gateway.store.audit.utc_text`): text order is time order;
* EUI-64s: the DUIS text form (``str(eui)``);
* replay counters: TEXT of exactly 20 decimal digits, zero-padded. Counters go
  up to 2^64-1 and SQLite's INTEGER is signed 64-bit; fixed-width digits keep
  text order equal to numeric order in one readable column, and a CHECK
  constraint rejects anything else;
* JSON (directive arguments, audit details): :func:`~gateway.store.audit.canonical_json`,
  the same text the hash chain hashes.

ADT window convention: a request at ``t`` counts the earlier admissions at
``t0`` with ``t - window < t0``; an admission exactly ``window`` seconds old no
longer counts. Rows older than ``max(window, adt_retention)`` are pruned for
that user and SRV when it is next counted, so pruning never drops a row a
window could still see.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from gateway.eui64 import Eui64
from gateway.stages import StageTimers, now_ns
from gateway.store import operations
from gateway.store.audit import utc_text
from gateway.store.base import (
    ALL_DEVICES,
    DELIVERED_KEEP,
    DELIVERY_MAX_AGE,
    FAILED_DELIVERY_KEEP,
    GENESIS_HASH,
    PURGE_BATCH,
    AdmissionRequest,
    AdmissionResult,
    AuditEntry,
    AuditRecord,
    ClaimedCommand,
    CommandCompletion,
    CommandStatus,
    Delivery,
    DeliveryStatus,
    DeviceCommand,
    DirectiveRecord,
    PendingDelivery,
    PendingPreCommand,
    QuarantineAlert,
    QuarantinedRequest,
    QuarantineStatus,
    Shard,
    StoreNotOpenError,
    StoreSchemaError,
    StoreUnavailable,
)
from gateway.store.rows import (
    TEXT_TIMES,
    Row,
    audit_record,
    claimed_command,
    command_columns,
    directive_record,
    pending_delivery,
    pending_precommand,
    precommand_columns,
    quarantined_request,
)
from gateway.store.rules import check_read_limit
from gateway.store.transaction import run_to_end

SCHEMA_VERSION: Final = 1
"""Bumped by the first migration; :meth:`SqliteStore.open` refuses a file from a newer build."""

_COUNTER_DIGITS: Final = 20
_LOCKED_RETRY_SECONDS: Final = 0.01
_PAGE_SIZE: Final = 500
"""Rows per query when streaming a log, so no lock is held while the caller consumes it."""

T = TypeVar("T")


# --- SQL, one class per table -----------------------------------------------------------


class _SchemaVersionSql:
    create: Final = (
        "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    )
    exists: Final = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    select: Final = "SELECT version FROM schema_version WHERE id = 1"
    insert: Final = "INSERT INTO schema_version (id, version) VALUES (1, ?)"


class _AuditSql:
    # sequence is assigned by the store (last + 1), not AUTOINCREMENT: a gap is then evidence.
    create: Final = (
        """CREATE TABLE audit (
            sequence INTEGER PRIMARY KEY CHECK (sequence >= 1),
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            subject TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            previous_hash TEXT NOT NULL CHECK (length(previous_hash) = 64),
            hash TEXT NOT NULL UNIQUE CHECK (length(hash) = 64)
        )""",
        # Append-only against the gateway's own code; an attacker with the file can drop
        # these, which is what the hash chain is for.
        """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
        """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    )
    last: Final = "SELECT sequence, hash FROM audit ORDER BY sequence DESC LIMIT 1"
    insert: Final = """INSERT INTO audit
        (sequence, at, kind, actor, subject, outcome, reason, detail, previous_hash, hash)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
    page: Final = """SELECT sequence, at, kind, actor, subject, outcome, reason, detail, previous_hash, hash
        FROM audit WHERE sequence > ? ORDER BY sequence LIMIT ?"""
    tail: Final = """SELECT sequence, at, kind, actor, subject, outcome, reason, detail, previous_hash, hash
        FROM audit ORDER BY sequence DESC LIMIT ?"""


class _DirectivesSql:
    create: Final = (
        """CREATE TABLE directives (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            directive_id TEXT NOT NULL UNIQUE,
            actor TEXT NOT NULL,
            name TEXT NOT NULL,
            arguments TEXT NOT NULL,
            decided_at TEXT NOT NULL,
            accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
            reason TEXT NOT NULL,
            audit_sequence INTEGER NOT NULL REFERENCES audit (sequence)
        )""",
    )
    columns: Final = "sequence, directive_id, actor, name, arguments, decided_at, accepted, reason"
    insert: Final = """INSERT INTO directives
        (directive_id, actor, name, arguments, decided_at, accepted, reason, audit_sequence)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
    by_id: Final = f"SELECT {columns} FROM directives WHERE directive_id = ?"
    page: Final = f"SELECT {columns} FROM directives WHERE sequence > ? ORDER BY sequence LIMIT ?"
    version: Final = "SELECT coalesce(max(sequence), 0) FROM directives"


class _ReplayCountersSql:
    create: Final = (
        f"""CREATE TABLE replay_counters (
            originator TEXT NOT NULL,
            target TEXT NOT NULL,
            last_counter TEXT NOT NULL
                CHECK (length(last_counter) = {_COUNTER_DIGITS} AND last_counter NOT GLOB '*[^0-9]*'),
            PRIMARY KEY (originator, target)
        ) WITHOUT ROWID""",
    )
    select: Final = "SELECT last_counter FROM replay_counters WHERE originator = ? AND target = ?"
    consume: Final = """INSERT INTO replay_counters (originator, target, last_counter) VALUES (?, ?, ?)
        ON CONFLICT (originator, target) DO UPDATE SET last_counter = excluded.last_counter
        WHERE excluded.last_counter > replay_counters.last_counter RETURNING last_counter"""
    """Check-and-set in one statement: a row comes back only when the counter was greater than the
    stored one (or the first), and was stored; fixed-width digits compare as numbers do."""


class _AdtEventsSql:
    create: Final = (
        "CREATE TABLE adt_events (user_id TEXT NOT NULL, srv TEXT NOT NULL, at TEXT NOT NULL)",
        "CREATE INDEX adt_events_window ON adt_events (user_id, srv, at)",
    )
    prune: Final = "DELETE FROM adt_events WHERE user_id = ? AND srv = ? AND at <= ?"
    count_after: Final = "SELECT count(*) FROM adt_events WHERE user_id = ? AND srv = ? AND at > ?"
    count_after_up_to: Final = """SELECT count(*) FROM
        (SELECT 1 FROM adt_events WHERE user_id = ? AND srv = ? AND at > ? LIMIT ?)"""
    """The count, but no further than the threshold: a decision needs only whether it is reached, and
    a user past it (a flood) would otherwise cost a walk over its whole window per request."""
    count_between: Final = "SELECT count(*) FROM adt_events WHERE user_id = ? AND srv = ? AND at > ? AND at <= ?"
    """The admissions that left a window whose start moved from the first time to the second."""
    insert: Final = "INSERT INTO adt_events (user_id, srv, at) VALUES (?, ?, ?)"


class _QuarantineSql:
    create: Final = (
        """CREATE TABLE quarantine (
            event_ref INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            srv TEXT NOT NULL,
            raw_request BLOB NOT NULL,
            quarantined_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('held', 'released', 'deleted')),
            settled_at TEXT
        )""",
        "CREATE INDEX quarantine_user ON quarantine (user_id, event_ref)",
    )
    columns: Final = "event_ref, request_id, user_id, srv, raw_request, quarantined_at, status"
    insert: Final = """INSERT INTO quarantine (request_id, user_id, srv, raw_request, quarantined_at, status)
        VALUES (?, ?, ?, ?, ?, 'held')"""
    by_user: Final = f"SELECT {columns} FROM quarantine WHERE user_id = ? ORDER BY event_ref"
    held: Final = f"SELECT {columns} FROM quarantine WHERE event_ref = ? AND user_id = ? AND status = 'held'"
    settle: Final = "UPDATE quarantine SET status = ?, settled_at = ? WHERE event_ref = ? AND status = 'held'"


# Tables added after schema version 1 was released. An older build ignores them and a
# file an older build created gets them on open, so adding them needs no version bump
# (IF NOT EXISTS): schema_version changes only for what an older build cannot ignore.


class _PreCommandsSql:
    create: Final = (
        """CREATE TABLE IF NOT EXISTS precommands (
            request_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            apdu BLOB NOT NULL,
            issued_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'consumed')),
            consumed_at TEXT,
            audit_sequence INTEGER NOT NULL REFERENCES audit (sequence)
        ) WITHOUT ROWID""",
    )
    columns: Final = "request_id, user_id, device_id, apdu, issued_at, expires_at"
    insert: Final = """INSERT INTO precommands
        (request_id, user_id, device_id, apdu, issued_at, expires_at, status, audit_sequence)
        VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)"""
    by_id: Final = f"SELECT {columns} FROM precommands WHERE request_id = ?"
    takeable: Final = f"""SELECT {columns} FROM precommands
        WHERE request_id = ? AND user_id = ? AND status = 'pending' AND expires_at > ?"""
    consume: Final = "UPDATE precommands SET status = 'consumed', consumed_at = ? WHERE request_id = ?"


class _DeliveriesSql:
    create: Final = (
        """CREATE TABLE IF NOT EXISTS deliveries (
            delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            url TEXT NOT NULL,
            body BLOB NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('response', 'device-alert', 'dcc-alert')),
            subject TEXT NOT NULL,
            created_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            total_attempts INTEGER NOT NULL DEFAULT 0 CHECK (total_attempts >= attempts),
            round_started_at TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            leased_until TEXT,
            last_attempt_at TEXT,
            last_error TEXT,
            delivered_at TEXT,
            failed_at TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at)",
        "CREATE INDEX IF NOT EXISTS deliveries_user ON deliveries (user_id, status, delivery_id)",
        "CREATE INDEX IF NOT EXISTS deliveries_delivered ON deliveries (status, delivered_at)",
    )
    columns: Final = """delivery_id, user_id, url, body, kind, subject, created_at, status,
        attempts, round_started_at, next_attempt_at, last_error, failed_at"""
    # RETURNING: the row as stored, read back by the statement that wrote it.
    insert: Final = f"""INSERT INTO deliveries
        (user_id, url, body, kind, subject, created_at, status, round_started_at, next_attempt_at)
        VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING {columns}"""
    _due_ids: Final = """SELECT delivery_id FROM deliveries
        WHERE status = 'pending' AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)
        ORDER BY next_attempt_at, delivery_id LIMIT ?"""
    due: Final = f"SELECT {columns} FROM deliveries WHERE delivery_id IN ({_due_ids})"
    lease_due: Final = f"UPDATE deliveries SET leased_until = ? WHERE delivery_id IN ({_due_ids}) RETURNING {columns}"
    # The row's status and attempts are as before this attempt: status is not changed here,
    # and attempts is returned from the old row (RETURNING sees the new one, hence the - 1).
    attempted: Final = f"""UPDATE deliveries SET attempts = attempts + 1, total_attempts = total_attempts + 1,
        last_attempt_at = ?, last_error = ?, leased_until = NULL WHERE delivery_id = ?
        RETURNING {columns.replace("attempts,", "attempts - 1,")}"""
    delivered: Final = "UPDATE deliveries SET status = 'delivered', delivered_at = ? WHERE delivery_id = ?"
    reschedule: Final = "UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ?"
    fail: Final = "UPDATE deliveries SET status = 'failed', failed_at = ? WHERE delivery_id = ?"
    overdue: Final = f"""SELECT {columns} FROM deliveries
        WHERE status = 'pending' AND round_started_at <= ? ORDER BY delivery_id"""
    expired: Final = f"SELECT {columns} FROM deliveries WHERE status = 'failed' AND failed_at <= ? ORDER BY delivery_id"
    delete: Final = "DELETE FROM deliveries WHERE delivery_id = ?"
    delete_delivered: Final = """DELETE FROM deliveries WHERE delivery_id IN (SELECT delivery_id FROM deliveries
        WHERE status = 'delivered' AND delivered_at <= ? ORDER BY delivered_at LIMIT ?) RETURNING delivery_id"""
    failed_by_user: Final = f"""SELECT {columns} FROM deliveries
        WHERE user_id = ? AND status = 'failed' ORDER BY delivery_id"""
    recent: Final = f"SELECT {columns} FROM deliveries ORDER BY delivery_id DESC LIMIT ?"
    by_id: Final = f"SELECT {columns} FROM deliveries WHERE delivery_id = ?"
    redeliver: Final = """UPDATE deliveries SET status = 'pending', attempts = 0, round_started_at = ?,
        next_attempt_at = ?, leased_until = NULL, failed_at = NULL WHERE delivery_id = ?"""
    # deliveries_user serves it: (user_id, status) first, the URL checked on those rows only.
    reschedule_receiver: Final = """UPDATE deliveries SET next_attempt_at = ?
        WHERE user_id = ? AND status = 'pending' AND url = ? AND next_attempt_at <> ? AND delivery_id <> ?
        RETURNING delivery_id"""


class _CommandsSql:
    create: Final = (
        """CREATE TABLE IF NOT EXISTS commands (
            command_id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL UNIQUE,
            originator TEXT NOT NULL,
            device_id TEXT NOT NULL,
            shard_key INTEGER NOT NULL,
            service_reference TEXT NOT NULL,
            srv TEXT NOT NULL,
            form TEXT NOT NULL CHECK (form IN ('sr-body', 'signed-pre-command', 'acknowledge')),
            payload BLOB NOT NULL,
            queued_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'executed')),
            claim_token TEXT,
            claimed_until TEXT,
            claims INTEGER NOT NULL DEFAULT 0 CHECK (claims >= 0),
            executed_at TEXT,
            outcome TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS commands_queued ON commands (status, shard_key, command_id)",
    )
    columns: Final = "command_id, request_id, originator, device_id, service_reference, srv, form, payload, queued_at"
    insert: Final = """INSERT INTO commands
        (request_id, originator, device_id, shard_key, service_reference, srv, form, payload, queued_at, status)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued')
        ON CONFLICT (request_id) DO NOTHING RETURNING command_id"""
    id_by_request: Final = "SELECT command_id FROM commands WHERE request_id = ?"
    status_by_request: Final = "SELECT status FROM commands WHERE request_id = ?"
    # One statement claims the batch, each row under its own random token.
    claim: Final = f"""UPDATE commands
        SET claim_token = lower(hex(randomblob(16))), claimed_until = ?, claims = claims + 1
        WHERE command_id IN (
            SELECT command_id FROM commands
            WHERE status = 'queued' AND shard_key % ? = ? AND (claimed_until IS NULL OR claimed_until <= ?)
            ORDER BY command_id LIMIT ?)
        RETURNING {columns}, claims, claim_token"""
    release: Final = """UPDATE commands SET claim_token = NULL, claimed_until = NULL
        WHERE status = 'queued' AND shard_key % ? = ? AND claim_token IS NOT NULL"""
    complete: Final = """UPDATE commands SET status = 'executed', executed_at = ?, outcome = ?,
        claim_token = NULL, claimed_until = NULL
        WHERE command_id = ? AND status = 'queued' AND claim_token = ?"""
    count_queued: Final = "SELECT count(*) FROM commands WHERE status = 'queued'"


class _MetersSql:
    # The same tables (and layout) the fleet's own SQLite persistence used, so a world's
    # stored meter states carry over.
    create: Final = (
        "CREATE TABLE IF NOT EXISTS meters (device_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS meters_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    upsert: Final = """INSERT INTO meters (device_id, state) VALUES (?, ?)
        ON CONFLICT (device_id) DO UPDATE SET state = excluded.state"""
    select_all: Final = "SELECT device_id, state FROM meters"
    select_one: Final = "SELECT state FROM meters WHERE device_id = ?"
    propose_epoch: Final = "INSERT OR IGNORE INTO meters_meta (key, value) VALUES ('epoch', ?)"
    select_epoch: Final = "SELECT value FROM meters_meta WHERE key = 'epoch'"


class _QuarantineAlertsSql:
    """Quarantined requests whose AD1 alert is not queued yet (a row leaves when it is)."""

    create: Final = (
        """CREATE TABLE IF NOT EXISTS quarantine_alerts_due (
            event_ref INTEGER PRIMARY KEY REFERENCES quarantine (event_ref)
        )""",
    )
    mark: Final = "INSERT INTO quarantine_alerts_due (event_ref) VALUES (?)"
    due: Final = f"""SELECT {_QuarantineSql.columns} FROM quarantine WHERE event_ref IN
        (SELECT event_ref FROM quarantine_alerts_due ORDER BY event_ref LIMIT ?) ORDER BY event_ref"""
    clear: Final = "DELETE FROM quarantine_alerts_due WHERE event_ref = ?"


_ADDED_TABLES: Final = (
    *_PreCommandsSql.create,
    *_DeliveriesSql.create,
    *_CommandsSql.create,
    *_MetersSql.create,
    *_QuarantineAlertsSql.create,
)


_SCHEMA: Final = (
    *_SchemaVersionSql.create,
    *_AuditSql.create,
    *_DirectivesSql.create,
    *_ReplayCountersSql.create,
    *_AdtEventsSql.create,
    *_QuarantineSql.create,
)


# --- the transaction the rules run in (gateway.store.operations) -------------------------


def _counter_text(counter: int) -> str:
    return f"{counter:0{_COUNTER_DIGITS}d}"


def _fetch_one(db: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> Row | None:
    row: Row | None = db.execute(sql, parameters).fetchone()
    return row


def _fetch_all(db: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> list[Row]:
    return list(db.execute(sql, parameters).fetchall())


def _insert(db: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> int:
    cursor = db.execute(sql, parameters)
    if cursor.lastrowid is None:
        raise RuntimeError("SQLite returned no row id for an INSERT")
    return cursor.lastrowid


class _SqliteTransaction:
    """:class:`~gateway.store.transaction.Transaction` inside one ``BEGIN IMMEDIATE``: SQLite's write
    lock is held for the whole of it, so every check-and-set here is decided on data no other
    connection is changing. Its methods do their work before they return (no await inside).

    It also remembers what the transaction has already read or written itself: the audit chain's
    head, the directive log's last sequence, the ADT keys already pruned, so each is read once
    per transaction. Sound because the write lock is held: nobody else can append to either
    inside it, and each transaction starts with a new one of these. The ADT counts it keeps up
    to date are the store's, carried across transactions while no other connection has
    committed (see :attr:`SqliteStore._adt_counts`).
    """

    encoding: Final = TEXT_TIMES
    __slots__ = ("db", "_head", "_directives_head", "_adt_pruned", "_adt_counts", "audit_ns")

    def __init__(self, db: sqlite3.Connection, adt_counts: dict[tuple[str, str], tuple[str, int]] | None = None) -> None:
        """``adt_counts``: the counts earlier transactions of this connection left (see
        :attr:`SqliteStore._adt_counts` for when they may be carried on); default: none."""
        self.db = db
        self._head: tuple[int, str] | None = None
        self._directives_head: int | None = None
        self._adt_pruned: set[tuple[str, str]] = set()
        self._adt_counts = adt_counts if adt_counts is not None else {}
        """(user, SRV) -> (window start, admissions after it) as last counted, kept up to date with
        the rows added: the next admission of that user subtracts what left the window instead of
        counting the whole window again (which, for a user with a high threshold, is a walk over
        every admission of the last hour)."""
        self.audit_ns = 0
        """CPU nanoseconds this transaction spent serialising and hashing audit records."""

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement of a unit that is plain SQL (no rule of the store's)."""
        return self.db.execute(sql, parameters)

    # --- the audit chain ---------------------------------------------------------------------

    async def chain_head(self) -> tuple[int, str]:
        if self._head is None:
            last = _fetch_one(self.db, _AuditSql.last, ())
            self._head = (0, GENESIS_HASH) if last is None else (int(last[0]), str(last[1]))
        return self._head

    async def insert_audit(
        self, position: int, entry: AuditEntry, columns: tuple[Any, ...], previous_hash: str, digest: str
    ) -> AuditRecord:
        # One writer at a time (the write lock): the whole log is the main lane, position = sequence.
        self.db.execute(_AuditSql.insert, (position, *columns, previous_hash, digest))
        self._head = (position, digest)
        return AuditRecord(position, entry, previous_hash, digest)

    def count_audit_cpu(self, nanoseconds: int) -> None:
        self.audit_ns += nanoseconds

    # --- directives --------------------------------------------------------------------------

    async def registry_version(self) -> int:
        if self._directives_head is None:
            self._directives_head = _registry_version(self.db)
        return self._directives_head

    async def directive(self, directive_id: str) -> DirectiveRecord | None:
        row = _fetch_one(self.db, _DirectivesSql.by_id, (directive_id,))
        return None if row is None else directive_record(row, TEXT_TIMES)

    async def insert_directive(self, columns: tuple[Any, ...], audit_sequence: int) -> int:
        sequence = _insert(self.db, _DirectivesSql.insert, (*columns, audit_sequence))
        self._directives_head = sequence
        return sequence

    # --- admissions --------------------------------------------------------------------------

    async def consume_counter(self, originator: Eui64, target: Eui64, counter: int) -> int | None:
        key = (str(originator), str(target))
        if _fetch_one(self.db, _ReplayCountersSql.consume, (*key, _counter_text(counter))) is not None:
            return None
        row = _fetch_one(self.db, _ReplayCountersSql.select, key)
        if row is None:
            raise RuntimeError("a counter was refused with none stored")
        return int(row[0])

    async def count_in_window(
        self, request: AdmissionRequest, window: dt.timedelta, threshold: int, retention: dt.timedelta
    ) -> bool:
        # Pruning is once per transaction and key: the count does not need it (it bounds ``at``
        # itself), it only keeps the table small.
        key = (str(request.user_id), request.service_reference_variant)
        known = self._adt_counts.get(key)
        if key not in self._adt_pruned:
            cutoff = utc_text(request.at - max(window, retention))
            if known is not None and known[0] < cutoff:  # the rows about to go leave the count first
                row = _fetch_one(self.db, _AdtEventsSql.count_between, (*key, known[0], cutoff))
                known = (cutoff, known[1] - (0 if row is None else int(row[0])))
                self._adt_counts[key] = known
            self.db.execute(_AdtEventsSql.prune, (*key, cutoff))
            self._adt_pruned.add(key)
        start = utc_text(request.at - window)
        if known is not None and known[0] <= start:
            # Only this connection has written these rows since they were counted (BEGIN IMMEDIATE
            # now; PRAGMA data_version between groups), and it counted what it added: what was
            # counted then, less what has left the window since, is the count now.
            row = _fetch_one(self.db, _AdtEventsSql.count_between, (*key, known[0], start))
            count = known[1] - (0 if row is None else int(row[0]))
        else:  # counted no further than the threshold, all the decision needs
            row = _fetch_one(self.db, _AdtEventsSql.count_after_up_to, (*key, start, threshold))
            count = 0 if row is None else int(row[0])
        if count >= threshold:
            self._adt_counts.pop(key, None)  # perhaps cut at the threshold: not a count to carry on
            return False
        self.db.execute(_AdtEventsSql.insert, (*key, utc_text(request.at)))
        self._adt_counts[key] = (start, count + 1)  # this admission is inside the window just counted
        return True

    async def hold(self, request: AdmissionRequest) -> int:
        held = (
            request.request_id,
            str(request.user_id),
            request.service_reference_variant,
            request.raw_request,
            utc_text(request.at),
        )
        event_ref = _insert(self.db, _QuarantineSql.insert, held)
        self.db.execute(_QuarantineAlertsSql.mark, (event_ref,))
        return event_ref

    async def held(self, event_ref: int, user_id: Eui64) -> QuarantinedRequest | None:
        row = _fetch_one(self.db, _QuarantineSql.held, (event_ref, str(user_id)))
        return None if row is None else quarantined_request(row, TEXT_TIMES)

    async def settle(self, event_ref: int, status: QuarantineStatus, at: dt.datetime) -> None:
        self.db.execute(_QuarantineSql.settle, (status.value, utc_text(at), event_ref))

    async def clear_alert_mark(self, event_ref: int) -> bool:
        return self.db.execute(_QuarantineAlertsSql.clear, (event_ref,)).rowcount > 0

    # --- Pre-Commands ------------------------------------------------------------------------

    async def precommand(self, request_id: str) -> PendingPreCommand | None:
        row = _fetch_one(self.db, _PreCommandsSql.by_id, (request_id,))
        return None if row is None else pending_precommand(row, TEXT_TIMES)

    async def insert_precommand(self, precommand: PendingPreCommand, audit_sequence: int) -> None:
        self.db.execute(_PreCommandsSql.insert, (*precommand_columns(precommand, TEXT_TIMES), audit_sequence))

    async def take_precommand(self, request_id: str, user_id: Eui64, at: dt.datetime) -> PendingPreCommand | None:
        row = _fetch_one(self.db, _PreCommandsSql.takeable, (request_id, str(user_id), utc_text(at)))
        if row is None:
            return None
        self.db.execute(_PreCommandsSql.consume, (utc_text(at), request_id))
        return pending_precommand(row, TEXT_TIMES)

    # --- the device command queue ------------------------------------------------------------

    async def insert_command(self, command: DeviceCommand) -> int | None:
        inserted = _fetch_one(self.db, _CommandsSql.insert, command_columns(command, TEXT_TIMES))
        return None if inserted is None else int(inserted[0])

    async def command_id(self, request_id: str) -> int | None:
        row = _fetch_one(self.db, _CommandsSql.id_by_request, (request_id,))
        return None if row is None else int(row[0])

    async def claim_commands(
        self, now: dt.datetime, limit: int, lease: dt.timedelta, shard: Shard
    ) -> list[ClaimedCommand]:
        parameters = (utc_text(now + lease), shard.count, shard.index, utc_text(now), limit)
        return [claimed_command(row, TEXT_TIMES) for row in _fetch_all(self.db, _CommandsSql.claim, parameters)]

    async def release_claims(self, shard: Shard) -> int:
        return self.db.execute(_CommandsSql.release, (shard.count, shard.index)).rowcount

    async def complete_command(self, command_id: int, claim_token: str, at: dt.datetime, outcome: str) -> bool:
        parameters = (utc_text(at), outcome, command_id, claim_token)
        return self.db.execute(_CommandsSql.complete, parameters).rowcount == 1

    async def upsert_meters(self, meters: Mapping[str, str]) -> None:
        self.db.executemany(_MetersSql.upsert, list(meters.items()))

    async def meter_epoch(self, proposed: dt.datetime) -> dt.datetime:
        self.db.execute(_MetersSql.propose_epoch, (proposed.astimezone(dt.UTC).isoformat(),))
        row = _fetch_one(self.db, _MetersSql.select_epoch, ())
        if row is None:
            raise RuntimeError("the meter epoch vanished between insert and select")
        return dt.datetime.fromisoformat(row[0])

    # --- the outbox --------------------------------------------------------------------------

    async def insert_delivery(self, delivery: Delivery) -> PendingDelivery:
        created = utc_text(delivery.created_at)
        columns = (str(delivery.user_id), delivery.url, bytes(delivery.body), delivery.kind.value, delivery.subject)
        row = _fetch_one(self.db, _DeliveriesSql.insert, (*columns, created, created, created))
        if row is None:
            raise RuntimeError("SQLite returned no row for an INSERT ... RETURNING")
        return pending_delivery(row, TEXT_TIMES)

    async def due_deliveries(self, now: dt.datetime, limit: int, lease: dt.timedelta | None) -> list[PendingDelivery]:
        now_text = utc_text(now)
        if lease is None:
            rows = _fetch_all(self.db, _DeliveriesSql.due, (now_text, now_text, limit))
        else:
            rows = _fetch_all(self.db, _DeliveriesSql.lease_due, (utc_text(now + lease), now_text, now_text, limit))
        return [pending_delivery(row, TEXT_TIMES) for row in rows]

    async def count_attempt(self, delivery_id: int, at: dt.datetime, error: str | None) -> PendingDelivery | None:
        row = _fetch_one(self.db, _DeliveriesSql.attempted, (utc_text(at), error, delivery_id))
        return None if row is None else pending_delivery(row, TEXT_TIMES)  # but last_error, this attempt's already

    async def mark_delivered(self, delivery_id: int, at: dt.datetime) -> None:
        self.db.execute(_DeliveriesSql.delivered, (utc_text(at), delivery_id))

    async def mark_failed(self, delivery_id: int, at: dt.datetime) -> None:
        self.db.execute(_DeliveriesSql.fail, (utc_text(at), delivery_id))

    async def set_next_attempt(self, delivery_id: int, at: dt.datetime) -> None:
        self.db.execute(_DeliveriesSql.reschedule, (utc_text(at), delivery_id))

    async def overdue_deliveries(self, round_started_by: dt.datetime) -> list[PendingDelivery]:
        rows = _fetch_all(self.db, _DeliveriesSql.overdue, (utc_text(round_started_by),))
        return [pending_delivery(row, TEXT_TIMES) for row in rows]

    async def expired_failures(self, failed_by: dt.datetime) -> list[PendingDelivery]:
        rows = _fetch_all(self.db, _DeliveriesSql.expired, (utc_text(failed_by),))
        return [pending_delivery(row, TEXT_TIMES) for row in rows]

    async def delete_delivery(self, delivery_id: int) -> None:
        self.db.execute(_DeliveriesSql.delete, (delivery_id,))

    async def delete_delivered(self, delivered_by: dt.datetime, limit: int) -> list[int]:
        rows = _fetch_all(self.db, _DeliveriesSql.delete_delivered, (utc_text(delivered_by), limit))
        return [int(row[0]) for row in rows]

    async def failed_deliveries(self, user_id: Eui64) -> list[PendingDelivery]:
        rows = _fetch_all(self.db, _DeliveriesSql.failed_by_user, (str(user_id),))
        return [pending_delivery(row, TEXT_TIMES) for row in rows]

    async def start_round(self, delivery_id: int, at: dt.datetime) -> None:
        self.db.execute(_DeliveriesSql.redeliver, (utc_text(at), utc_text(at), delivery_id))

    async def reschedule_receiver(self, user_id: Eui64, url: str, due_at: dt.datetime, spared: int) -> list[int]:
        due_text = utc_text(due_at)
        rows = _fetch_all(self.db, _DeliveriesSql.reschedule_receiver, (due_text, str(user_id), url, due_text, spared))
        return [int(row[0]) for row in rows]


def _registry_version(db: sqlite3.Connection) -> int:
    row = _fetch_one(db, _DirectivesSql.version, ())
    return 0 if row is None else int(row[0])


def _append_audit(tx: _SqliteTransaction, entry: AuditEntry) -> AuditRecord:
    """:func:`gateway.store.operations.append_audit` as one unit of a group (tests use it so)."""
    return run_to_end(operations.append_audit(tx, entry))


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[_SqliteTransaction]:
    """One ``BEGIN IMMEDIATE`` transaction on the calling thread, waiting for the lock as the
    busy timeout allows (opening the file; the writer has its own, :meth:`SqliteStore._run_group`):
    committed if the body returns, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    tx = _SqliteTransaction(db)
    try:
        yield tx
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    # "No transaction is active" (a failed COMMIT may already have ended it) is not an error here.
    with contextlib.suppress(sqlite3.OperationalError):
        db.execute("ROLLBACK")


def _run_unit(unit: Unit[Any], tx: _SqliteTransaction) -> Any:
    """A unit's value: a rule (a coroutine over ``tx``) is run to its end on this thread."""
    value = unit(tx)
    return run_to_end(value) if inspect.iscoroutine(value) else value



# --- opening ----------------------------------------------------------------------------


def _pragma(db: sqlite3.Connection, statement: str) -> Any:
    row = _fetch_one(db, f"PRAGMA {statement}", ())
    return None if row is None else row[0]


def _enable_wal(db: sqlite3.Connection, *, in_memory: bool, timeout: float) -> None:
    """Switches the file to WAL (a persistent setting), retrying while another connection holds a lock.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database
    is locked" at once rather than calling the busy handler, so two workers creating
    one file at the same moment would otherwise fail. Some filesystems refuse WAL
    without an error, so the resulting mode is checked.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = _pragma(db, "journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(_LOCKED_RETRY_SECONDS)
    if mode != ("memory" if in_memory else "wal"):
        raise StoreSchemaError(f"SQLite refused WAL mode (journal_mode={mode!r})")


def _configure(db: sqlite3.Connection, *, in_memory: bool, read_only: bool, timeout: float) -> None:
    """Per-connection durability settings (synchronous and foreign_keys are not stored in the file)."""
    if not read_only:
        _enable_wal(db, in_memory=in_memory, timeout=timeout)
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")


def _schema_version(db: sqlite3.Connection) -> int | None:
    exists = _fetch_one(db, _SchemaVersionSql.exists, ())
    if exists is None or exists[0] == 0:
        return None
    row = _fetch_one(db, _SchemaVersionSql.select, ())
    return None if row is None else int(row[0])


def _check_version(version: int | None) -> None:
    if version != SCHEMA_VERSION:
        raise StoreSchemaError(f"store schema version {version}, this build knows {SCHEMA_VERSION}")


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        db.execute(statement)
    db.execute(_SchemaVersionSql.insert, (SCHEMA_VERSION,))


# --- the store --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one unit of a group came to: its value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


Unit = Callable[[_SqliteTransaction], T]

_UNAVAILABLE_CODES = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
"""Primary SQLite result codes that say the database cannot take the write now rather than that
the statement is wrong: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL."""


def _outcome_of_failure(error: Exception) -> _Outcome:
    """A unit's exception as its caller gets it: a database that cannot write becomes StoreUnavailable."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(error, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        unavailable = StoreUnavailable(f"the SQLite store cannot write now: {error}")
        unavailable.__cause__ = error
        return _Outcome(error=unavailable)
    return _Outcome(error=error)


class SqliteStore:
    """:class:`gateway.store.base.Store` on one SQLite file (or ``":memory:"`` for throwaway use).

    Writes are *grouped*: a call queues a unit of work and waits; one writer task
    runs everything queued in a single ``BEGIN IMMEDIATE`` transaction, its
    statements on the event loop (cheaper than handing each to a thread, see
    :meth:`_run_group`) and its fsync'd COMMIT on the store's own thread, and only
    then are the callers answered. When a unit raises, the group is rolled back and
    its units run again one transaction each, so a failing call fails alone. Reads
    run on the store's thread, between groups: the loop and the thread never use
    the connection at once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        adt_retention: dt.timedelta = dt.timedelta(days=1),
        read_only: bool = False,
        max_group: int = 256,
        stages: StageTimers | None = None,
    ) -> None:
        """``busy_timeout``: seconds to wait for another connection's write transaction.

        ``adt_retention``: ADT rows are kept at least this long (and at least the
        request's window); set it to the largest window the deployment uses.
        ``read_only``: for ``audit verify``; no schema is created and nothing is
        written, so evidence in a tampered file is left as found.
        ``max_group``: the most calls one transaction takes.
        ``stages``: where the CPU of transactions ("store", "audit") and of handing groups to the
        store's thread ("handoff") is counted.
        """
        if max_group < 1:
            raise ValueError(f"max_group must be positive: {max_group}")
        self._path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._adt_retention = adt_retention
        self._read_only = read_only
        self._max_group = max_group
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._queued: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._adt_counts: dict[tuple[str, str], tuple[str, int]] = {}
        """The ADT counts of :class:`_SqliteTransaction`, carried from one group to the next while
        they are true: dropped when a group rolls back, and when ``PRAGMA data_version`` says
        another connection committed since this one's last group (it may have added admissions)."""
        self._data_version: int | None = None
        self._using = asyncio.Lock()
        """Held by whoever uses the connection (a group from BEGIN to COMMIT, a read on the thread):
        the loop and the thread never use it at once."""
        self._groups_committed = 0
        self._stages = stages if stages is not None else StageTimers()

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def groups_committed(self) -> int:
        """Write transactions committed so far (each carries one or more calls)."""
        return self._groups_committed

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Connects, applies the durability pragmas and creates (or checks) the schema."""
        if self._thread is not None:
            raise RuntimeError(f"{self!r} is already open")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            self._db = await self._on_thread(self._connect)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise

    async def close(self) -> None:
        """Answers every queued call, then closes the connection (SQLite checkpoints the WAL); idempotent."""
        while self._writer is not None:
            await asyncio.shield(self._writer)
        thread, self._thread = self._thread, None
        if thread is None:
            return
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(thread, db.close)
        thread.shutdown(wait=True)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def pragmas(self) -> Mapping[str, Any]:
        """The settings in force on this connection (journal_mode, synchronous, foreign_keys, busy_timeout)."""
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        return await self._on_thread(lambda db: {name: _pragma(db, name) for name in names})

    # --- directives ---------------------------------------------------------------------

    async def append_directive(self, record: DirectiveRecord, audit: AuditEntry) -> DirectiveRecord:
        """Stores the directive and its audit record together; a known directive_id returns the stored one
        and records nothing, so a retried submission is idempotent."""
        return await self._write(lambda tx: operations.store_directive(tx, record, audit))

    async def find_directive(self, directive_id: str) -> DirectiveRecord | None:
        rows = await self._read(_DirectivesSql.by_id, (directive_id,))
        return directive_record(rows[0], TEXT_TIMES) if rows else None

    async def directives(self, after_sequence: int = 0) -> AsyncIterator[DirectiveRecord]:
        """Directives after ``after_sequence`` in sequence order, read a page at a time."""
        async for row in self._pages(_DirectivesSql.page, after_sequence):
            yield directive_record(row, TEXT_TIMES)

    async def registry_version(self) -> int:
        return await self._on_thread(_registry_version)

    # --- requests -----------------------------------------------------------------------

    async def admit(self, request: AdmissionRequest) -> AdmissionResult:
        """Registry version check, replay check-and-set, ADT count, quarantine, the command and the
        audit record in one write transaction.

        ``last_counter`` in the result is the counter stored after the decision: the
        earlier one for a REPLAY, this request's otherwise.
        """
        operations.check_admission(request)  # refused before it is queued
        utc_text(request.at)
        retention = self._adt_retention
        return await self._write(lambda tx: operations.admit(tx, request, retention))

    async def last_counter(self, originator: Eui64, target: Eui64) -> int | None:
        rows = await self._read(_ReplayCountersSql.select, (str(originator), str(target)))
        return int(rows[0][0]) if rows else None

    async def quarantined(self, user_id: Eui64) -> list[QuarantinedRequest]:
        """Every request ever quarantined for that user, any status, in event-reference order."""
        rows = await self._read(_QuarantineSql.by_user, (str(user_id),))
        return [quarantined_request(row, TEXT_TIMES) for row in rows]

    async def settle_quarantine(
        self,
        event_ref: int,
        user_id: Eui64,
        status: QuarantineStatus,
        audit: AuditEntry,
        command: DeviceCommand | None = None,
    ) -> QuarantinedRequest | None:
        """Marks a HELD request of that user RELEASED or DELETED, with its audit record (and, released,
        queues ``command``); None if there is none (another user's, already settled, unknown), and then
        nothing is recorded."""
        operations.check_settlement(status, command)
        return await self._write(
            lambda tx: operations.settle_quarantine(tx, event_ref, user_id, status, audit, command)
        )

    async def quarantine_alerts_due(self, limit: int = 100) -> list[QuarantinedRequest]:
        rows = await self._read(_QuarantineAlertsSql.due, (limit,))
        return [quarantined_request(row, TEXT_TIMES) for row in rows]

    async def record_quarantine_alert(self, event_ref: int, delivery: Delivery | None, audit: AuditEntry | None) -> bool:
        return await self._write(lambda tx: operations.record_quarantine_alert(tx, event_ref, delivery, audit))

    async def record_quarantine_alerts(self, alerts: Sequence[QuarantineAlert]) -> int:
        batch = tuple(alerts)
        if not batch:
            return 0
        return await self._write(lambda tx: operations.record_quarantine_alerts(tx, batch))

    # --- pending Pre-Commands -----------------------------------------------------------

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
        """Keeps the issued Pre-Command with its audit record; identical again is a no-op that records
        nothing, a different one under that RequestID raises :class:`PreCommandConflict`."""
        operations.check_precommand(issued_at, expires_at)
        precommand = PendingPreCommand(request_id, user_id, device_id, bytes(apdu), issued_at, expires_at)
        precommand_columns(precommand, TEXT_TIMES)  # a naive time is refused before it is queued
        await self._write(lambda tx: operations.remember_precommand(tx, precommand, audit))

    async def take_precommand(self, request_id: str, user_id: Eui64, at: dt.datetime) -> PendingPreCommand | None:
        """Check-and-consume in one write transaction: one caller gets it, across connections and processes."""
        return await self._write(lambda tx: tx.take_precommand(request_id, user_id, at))

    # --- device commands ----------------------------------------------------------------

    async def queue_command(self, command: DeviceCommand, audit: AuditEntry) -> int:
        return await self._write(lambda tx: operations.queue_command(tx, command, audit))

    async def claim_commands(
        self, now: dt.datetime, limit: int, lease: dt.timedelta, shard: Shard = ALL_DEVICES
    ) -> list[ClaimedCommand]:
        operations.check_claim(limit, lease)
        return await self._write(lambda tx: operations.claim_commands(tx, now, limit, lease, shard))

    async def release_claims(self, shard: Shard = ALL_DEVICES) -> int:
        return await self._write(lambda tx: tx.release_claims(shard))

    async def complete_command(self, claimed: ClaimedCommand, completion: CommandCompletion) -> bool:
        return await self._write(lambda tx: operations.complete_command(tx, claimed, completion))

    async def command_status(self, request_id: str) -> CommandStatus | None:
        rows = await self._read(_CommandsSql.status_by_request, (request_id,))
        return CommandStatus(rows[0][0]) if rows else None

    async def queued_commands(self) -> int:
        rows = await self._read(_CommandsSql.count_queued, ())
        return int(rows[0][0])

    # --- meter states -------------------------------------------------------------------

    async def save_meters(
        self, meters: Mapping[str, str], deliveries: Sequence[Delivery] = (), audits: Sequence[AuditEntry] = ()
    ) -> None:
        if meters or deliveries or audits:
            await self._write(lambda tx: operations.store_meters(tx, meters, deliveries, audits))

    async def load_meters(self) -> dict[str, str]:
        return {device_id: state for device_id, state in await self._read(_MetersSql.select_all, ())}

    async def load_meter(self, device_id: str) -> str | None:
        rows = await self._read(_MetersSql.select_one, (device_id,))
        return str(rows[0][0]) if rows else None

    async def meter_epoch(self, proposed: dt.datetime) -> dt.datetime:
        return await self._write(lambda tx: tx.meter_epoch(proposed))

    # --- the outbox ---------------------------------------------------------------------
    # Every state change is audited in the transaction that makes it (kind "delivery"). Delivery
    # is at least once: an attempt whose outcome was not recorded (crash, lost lease) is made
    # again, so a receiver may see a document twice and dedupes by its ResponseID.

    async def enqueue_delivery(self, delivery: Delivery) -> int:
        """Stores the delivery, due at ``created_at``; audits its decision (if given) and the enqueue."""
        return await self._write(lambda tx: operations.enqueue(tx, delivery))

    async def due_deliveries(
        self, now: dt.datetime, limit: int, *, lease: dt.timedelta | None = None
    ) -> list[PendingDelivery]:
        """Due PENDING deliveries, oldest due first; claimed until ``now + lease`` when a lease is given."""
        operations.check_claim(limit, lease)
        return await self._write(lambda tx: operations.due_deliveries(tx, now, limit, lease))

    async def record_attempt(
        self, delivery_id: int, at: dt.datetime, ok: bool, error: str | None, next_attempt_at: dt.datetime | None
    ) -> DeliveryStatus | None:
        """One attempt and the status it leads to (see :meth:`gateway.store.base.Store.record_attempt`)."""
        failure = None if ok else (error or "unknown error")
        return await self._write(lambda tx: operations.record_attempt(tx, delivery_id, at, failure, next_attempt_at))

    async def fail_overdue(self, now: dt.datetime, max_age: dt.timedelta = DELIVERY_MAX_AGE) -> int:
        """PENDING deliveries with ``round_started_at <= now - max_age`` become FAILED (exactly at the
        limit too: by then the schedule has had its attempts within it)."""
        return await self._write(lambda tx: operations.fail_overdue(tx, now, max_age))

    async def purge_failed(self, now: dt.datetime, keep: dt.timedelta = FAILED_DELIVERY_KEEP) -> int:
        """Deletes FAILED deliveries with ``failed_at <= now - keep``; each deletion is audited."""
        return await self._write(lambda tx: operations.purge_failed(tx, now, keep))

    async def purge_delivered(
        self, now: dt.datetime, keep: dt.timedelta = DELIVERED_KEEP, limit: int = PURGE_BATCH
    ) -> int:
        return await self._write(lambda tx: operations.purge_delivered(tx, now, keep, limit))

    async def failed_deliveries(self, user_id: Eui64) -> list[PendingDelivery]:
        rows = await self._read(_DeliveriesSql.failed_by_user, (str(user_id),))
        return [pending_delivery(row, TEXT_TIMES) for row in rows]

    async def redeliver_failed(self, user_id: Eui64, now: dt.datetime) -> int:
        """FAILED → PENDING, due at ``now``, attempts counted afresh and a new ``max_age`` from ``now``."""
        return await self._write(lambda tx: operations.redeliver_failed(tx, user_id, now))

    async def reschedule_deliveries(
        self, user_id: Eui64, url: str, due_at: dt.datetime, *, at: dt.datetime, reason: str,
        except_delivery: int | None = None,
    ) -> int:
        """See :meth:`gateway.store.base.Store.reschedule_deliveries`."""
        spared = -1 if except_delivery is None else except_delivery
        return await self._write(lambda tx: operations.reschedule_deliveries(tx, user_id, url, due_at, at, reason, spared))

    # --- audit --------------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        return await self._write(lambda tx: operations.append_audit(tx, entry))

    async def audit_records(self) -> AsyncIterator[AuditRecord]:
        """The audit log in sequence order; raises :class:`AuditRecordUnreadable` at an undecodable row."""
        async for row in self._pages(_AuditSql.page):
            yield audit_record(row, TEXT_TIMES)

    # --- reading back for people (the console) ------------------------------------------

    async def audit_tail(self, limit: int) -> list[AuditRecord]:
        return [audit_record(row, TEXT_TIMES) for row in await self._read(_AuditSql.tail, (check_read_limit(limit),))]

    async def recent_deliveries(self, limit: int) -> list[PendingDelivery]:
        return [pending_delivery(row, TEXT_TIMES) for row in await self._read(_DeliveriesSql.recent, (check_read_limit(limit),))]

    async def delivery(self, delivery_id: int) -> PendingDelivery | None:
        rows = await self._read(_DeliveriesSql.by_id, (delivery_id,))
        return pending_delivery(rows[0], TEXT_TIMES) if rows else None

    async def adt_admissions(self, user_id: Eui64, service_reference_variant: str, since: dt.datetime) -> int:
        rows = await self._read(_AdtEventsSql.count_after, (str(user_id), service_reference_variant, utc_text(since)))
        return int(rows[0][0])

    # --- plumbing: the store's thread, grouped writes -------------------------------------

    def _location(self) -> str:
        if self._path == ":memory:":
            return ":memory:"
        uri = Path(self._path).resolve().as_uri()
        return uri + "?mode=ro" if self._read_only else uri

    def _connect(self) -> sqlite3.Connection:
        """On the store's thread: connect, configure and prepare the schema (closing again on failure)."""
        # Used on the loop and on this thread, never at once (self._using).
        db = sqlite3.connect(
            self._location(), uri=True, isolation_level=None, timeout=self._busy_timeout, check_same_thread=False
        )
        try:
            in_memory = self._path == ":memory:"
            _configure(db, in_memory=in_memory, read_only=self._read_only, timeout=self._busy_timeout)
            self._prepare_schema(db)
        except BaseException:
            db.close()
            raise
        return db

    def _prepare_schema(self, db: sqlite3.Connection) -> None:
        if self._read_only:
            _check_version(_schema_version(db))
            return
        with _immediate(db):  # two workers may create the file at once
            version = _schema_version(db)
            if version is None:
                _create_schema(db)
            else:
                _check_version(version)
            for statement in _ADDED_TABLES:
                db.execute(statement)

    async def _on_thread(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``function(connection)`` on the store's thread (``_connect`` gets no connection)."""
        thread = self._thread
        if thread is None:
            raise StoreNotOpenError(f"{self!r} is not open")
        if function == self._connect:
            return await asyncio.get_running_loop().run_in_executor(thread, self._connect)  # type: ignore[arg-type]
        async with self._using:
            return await asyncio.get_running_loop().run_in_executor(thread, lambda: function(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreNotOpenError(f"{self!r} is not open")
        return self._db

    async def _write(self, unit: Unit[T]) -> T:
        """Queues ``unit`` for the next group and waits until that group has committed."""
        if self._thread is None or self._read_only:
            raise StoreNotOpenError(f"{self!r} is not open for writing")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append((unit, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_groups())
        return await future

    async def _write_groups(self) -> None:
        """The writer: runs the queue a group at a time until it is empty."""
        try:
            while self._queued:
                group = [entry for entry in self._queued[: self._max_group] if not entry[1].cancelled()]
                del self._queued[: self._max_group]
                if not group:
                    continue  # every caller gave up before its unit ran: nothing to do
                async with self._using:
                    outcomes = await self._run_group([unit for unit, _ in group])
                answered = now_ns()
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():
                        continue  # its caller was cancelled while the group ran (it is committed all the same)
                    if outcome.error is not None:
                        future.set_exception(outcome.error)
                    else:
                        future.set_result(outcome.value)
                self._stages.since("handoff", answered)
        finally:
            self._writer = None

    async def _run_group(self, units: list[Unit[Any]]) -> list[_Outcome]:
        """All units in one transaction, or, if one raises (or the COMMIT fails), each in its own.

        The statements run here, on the event loop, and only the COMMIT on the store's thread: a
        group's statements cost less than handing them to the thread (and than the GIL hand-overs
        at each statement while the loop runs), while the COMMIT's fsync is a wait, during which
        the loop goes on. The loop never waits for another connection's write lock: BEGIN
        IMMEDIATE is tried without SQLite's busy wait, and again every few ms until it passes."""
        db = self._connection()
        try:
            await self._begin_immediate(db)
        except sqlite3.Error as error:  # the lock stayed another connection's: no unit ran
            return [_outcome_of_failure(error)] * len(units)
        started = now_ns()
        failure: Exception | None = None
        tx = _SqliteTransaction(db, self._adt_counts)
        try:
            version = _fetch_one(db, "PRAGMA data_version", ())
            if version != self._data_version:
                self._adt_counts.clear()  # another connection committed: its admissions are not counted
                self._data_version = version
            values = [_run_unit(unit, tx) for unit in units]
        except Exception as error:
            _rollback(db)
            self._adt_counts.clear()  # they counted rows the rollback took away
            failure = error
        committing = now_ns()
        self._stages.add("audit", tx.audit_ns)
        self._stages.add("store", committing - started - tx.audit_ns)
        if failure is not None:
            return await self._each_alone(units, failure)
        try:
            commit = asyncio.get_running_loop().run_in_executor(self._thread, self._commit, db)
            self._stages.since("handoff", committing)
            await commit
        except Exception as error:
            _rollback(db)
            self._adt_counts.clear()
            return await self._each_alone(units, error)
        self._groups_committed += 1
        return [_Outcome(value) for value in values]

    def _commit(self, db: sqlite3.Connection) -> None:
        """On the store's thread: the COMMIT, its CPU (the WAL's write and fsync, mostly in the
        kernel) counted to "commit"."""
        started = now_ns()
        try:
            db.execute("COMMIT")
        finally:
            self._stages.since("commit", started)

    async def _each_alone(self, units: list[Unit[Any]], error: Exception) -> list[_Outcome]:
        """After a group failed with ``error``: one unit's failure is its own; several run again one
        transaction each, so that a failing call fails alone."""
        if len(units) == 1:
            return [_outcome_of_failure(error)]
        return [(await self._run_group([unit]))[0] for unit in units]

    async def _begin_immediate(self, db: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` without blocking the loop: while another connection holds the write
        lock, tried again every few ms, up to the store's busy timeout (then "database is locked")."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            await asyncio.sleep(_LOCKED_RETRY_SECONDS)

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Row]:
        return await self._on_thread(lambda db: _fetch_all(db, sql, parameters))

    async def _pages(self, sql: str, after: int = 0) -> AsyncIterator[Row]:
        """Rows of a ``WHERE sequence > ? ... LIMIT ?`` query, keyed on the first column.

        One query per page, not one across ``yield``, so a caller may use the store
        while it iterates.
        """
        while True:
            rows = await self._read(sql, (after, _PAGE_SIZE))
            for row in rows:
                yield row
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1][0]

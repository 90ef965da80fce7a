""":class:`gateway.store.base.Store` on PostgreSQL, for several gateway workers on one database (issue #5).

This module is the PostgreSQL dialect only: its SQL, its transactions and its locking. What a
write checks, decides and audits is :mod:`gateway.store.operations`, run over
:class:`_GroupTransaction` (the interface is :mod:`gateway.store.transaction`; rows are mapped
by :mod:`gateway.store.rows`).

URL: ``postgresql://user[:password]@host[:port]/database[?schema=NAME]`` (``postgres://``
too). The tables live in schema ``NAME`` (default ``dcc_gateway``), created if absent;
every connection of the store has ``search_path`` set to it, so tests can isolate
themselves in a throwaway schema. Other query parameters go to asyncpg as they are.

Schema migrations: ``schema_migrations (version, applied_at)`` records the steps of
:data:`MIGRATIONS` applied, in order, each in its own transaction. :meth:`PostgresStore.open`
applies the missing ones under a session advisory lock keyed on the schema, so two
workers starting at once do not race, and refuses a schema newer than this build.
A read-only store (``audit verify``) creates and migrates nothing.

Concurrency across workers: no lock is shared by every write (issue #14). Each write call
names the advisory keys of what it checks and changes, and a group takes all its calls' keys
in one statement, in key order (so two groups queue on a key they share, never deadlock on
two): the replay counter of one (originator, target), the ADT window of one (user, SRV), one
quarantined request, one Pre-Command's RequestID, one command, one delivery, one receiver's
backlog, one executor shard. Decisions about different keys therefore run side by side on
any number of workers. Reads that decide a later write lock their rows (``FOR UPDATE``; the
outbox's and the executor's claims ``SKIP LOCKED``), and a group PostgreSQL cancels to break
a deadlock between rows (outbox maintenance against an attempt) is run again, unanswered.
Two locks are shared by all workers, and only they are serial: the registry's
(:attr:`PostgresStore.write_lock_key`), taken exclusively by a directive and shared by every
admission, since an admission checks the directive log's version (directives, rare and
global, keep one order); and the anchor chain's, held once a second per worker for one row
(:attr:`PostgresStore.serial_seconds` adds up both). Reads (``last_counter``,
``audit_records``…) use a small pool and see committed data only.

The audit log (migration 6): each store object writes its own *lane*, a hash chain only it
appends to, so appending reads no shared head. A lane belongs to the writer connection that
holds its session lock; a worker started again takes a free lane and continues its chain.
The lane's committed head goes into ``audit_anchors``, a chain of its own, at most once a
second while it writes and when the store closes; :func:`~gateway.store.audit.verify_chain`
checks every lane and every anchor. Records from before migration 6 are the main lane (0),
whose head is anchored once. ``sequence`` still orders the whole log and is unique; it is
drawn from a database sequence with the group's locks (a store writing alone numbers without
gaps), and gaps are no longer evidence: each lane's ``lane_position`` is.

Group commit: concurrent write calls on one store object are queued; one writer task takes
up to ``group_limit`` of them, runs them on one dedicated connection in one transaction,
and answers every caller only after COMMIT returned. A call that raises is rolled back
alone and gets its exception; the others go on. Since calls seldom raise, a group is first
run without savepoints (two round trips fewer per call); only if a call raises is that
attempt rolled back, unanswered, and the group run again with a SAVEPOINT per call. While a
group commits, the next one gathers, so a busy store pays one durable commit
(``synchronous_commit=on``, the server's default, is left alone) for many calls.
:attr:`PostgresStore.groups_committed` counts the groups. A group's audit rows are held back
and inserted in one pipelined round trip (see :class:`_GroupTransaction`). Within one
worker, groups run one after another: a group waiting for a key another worker holds holds
up that worker's next group (not the other workers).

Encodings: times are ``timestamptz`` (microsecond precision, compared as instants);
replay counters ``numeric(20, 0)`` checked to 0..2^64-1 (``bigint`` is signed);
JSON (directive arguments, audit details) is the text of
:func:`~gateway.store.audit.canonical_json`, stored as text so that what the hash
chain hashed is what is read back; bytes are ``bytea``. Directive sequence numbers are
assigned as last + 1 under the registry's lock, so they have no gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import re
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from gateway.eui64 import Eui64
from gateway.store import operations
from gateway.store.audit import anchor_hash, lane_genesis, parse_utc_text, utc_text
from gateway.store.base import (
    ALL_DEVICES,
    DELIVERED_KEEP,
    DELIVERY_MAX_AGE,
    FAILED_DELIVERY_KEEP,
    GENESIS_HASH,
    MAIN_LANE,
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
    LaneAnchor,
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
    NATIVE_TIMES,
    audit_record,
    claimed_command,
    command_columns,
    directive_record,
    pending_delivery,
    pending_precommand,
    precommand_columns,
    quarantined_request,
)
from gateway.store.rules import MAX_COUNTER, check_read_limit

POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
DEFAULT_SCHEMA: Final = "dcc_gateway"
DEFAULT_GROUP_LIMIT: Final = 256
DEFAULT_POOL_SIZE: Final = 4
_PAGE_SIZE: Final = 500
"""Rows per query when streaming a log, so that no connection is held while the caller consumes it."""

_SCHEMA_NAME: Final = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")

T = TypeVar("T")


class StoreReadOnlyError(RuntimeError):
    """A write was asked of a store opened read-only."""


class StoreWriteFailed(StoreUnavailable):
    """A write group's transaction failed as a whole (connection lost, lock or COMMIT failed).

    None of the group's calls may be taken as stored; when the connection was lost during
    COMMIT, the server may nevertheless have committed it, so a caller answers an error
    (never I99) and a retry meets the replay check, as a retried request would.
    """


class PostgresStoreMissing(FileNotFoundError):
    """A read-only open found no gateway store in that schema (nothing to verify, not an intact log)."""


# --- migrations -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_AUDIT_APPEND_ONLY: Final = """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "audit log, directive log, replay counters, ADT windows, quarantine",
        (
            """CREATE TABLE audit (
                sequence bigint PRIMARY KEY CHECK (sequence >= 1),
                at timestamptz NOT NULL,
                kind text NOT NULL,
                actor text NOT NULL,
                subject text NOT NULL,
                outcome text NOT NULL,
                reason text NOT NULL,
                detail text NOT NULL,
                previous_hash text NOT NULL CHECK (length(previous_hash) = 64),
                hash text NOT NULL UNIQUE CHECK (length(hash) = 64)
            )""",
            # Append-only against the gateway's own code; whoever owns the database can drop
            # these, which is what the hash chain is for.
            _AUDIT_APPEND_ONLY,
            """CREATE TRIGGER audit_no_update_or_delete BEFORE UPDATE OR DELETE ON audit
                FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
            """CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
                FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
            """CREATE TABLE directives (
                sequence bigint PRIMARY KEY CHECK (sequence >= 1),
                directive_id text NOT NULL UNIQUE,
                actor text NOT NULL,
                name text NOT NULL,
                arguments text NOT NULL,
                decided_at timestamptz NOT NULL,
                accepted boolean NOT NULL,
                reason text NOT NULL,
                audit_sequence bigint NOT NULL REFERENCES audit (sequence)
            )""",
            f"""CREATE TABLE replay_counters (
                originator text NOT NULL,
                target text NOT NULL,
                last_counter numeric(20, 0) NOT NULL CHECK (last_counter BETWEEN 0 AND {MAX_COUNTER}),
                PRIMARY KEY (originator, target)
            )""",
            """CREATE TABLE adt_events (
                user_id text NOT NULL,
                srv text NOT NULL,
                at timestamptz NOT NULL
            )""",
            "CREATE INDEX adt_events_window ON adt_events (user_id, srv, at)",
            """CREATE TABLE quarantine (
                event_ref bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                request_id text NOT NULL,
                user_id text NOT NULL,
                srv text NOT NULL,
                raw_request bytea NOT NULL,
                quarantined_at timestamptz NOT NULL,
                status text NOT NULL CHECK (status IN ('held', 'released', 'deleted')),
                settled_at timestamptz
            )""",
            "CREATE INDEX quarantine_user ON quarantine (user_id, event_ref)",
        ),
    ),
    Migration(
        2,
        "pending Pre-Commands and the outbox",
        (
            """CREATE TABLE precommands (
                request_id text PRIMARY KEY,
                user_id text NOT NULL,
                device_id text NOT NULL,
                apdu bytea NOT NULL,
                issued_at timestamptz NOT NULL,
                expires_at timestamptz NOT NULL,
                status text NOT NULL CHECK (status IN ('pending', 'consumed')),
                consumed_at timestamptz,
                audit_sequence bigint NOT NULL REFERENCES audit (sequence)
            )""",
            """CREATE TABLE deliveries (
                delivery_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                user_id text NOT NULL,
                url text NOT NULL,
                body bytea NOT NULL,
                kind text NOT NULL CHECK (kind IN ('response', 'device-alert', 'dcc-alert')),
                subject text NOT NULL,
                created_at timestamptz NOT NULL,
                status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
                attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                total_attempts integer NOT NULL DEFAULT 0 CHECK (total_attempts >= attempts),
                round_started_at timestamptz NOT NULL,
                next_attempt_at timestamptz NOT NULL,
                leased_until timestamptz,
                last_attempt_at timestamptz,
                last_error text,
                delivered_at timestamptz,
                failed_at timestamptz
            )""",
            "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
            "CREATE INDEX deliveries_user ON deliveries (user_id, status, delivery_id)",
        ),
    ),
    Migration(
        3,
        "the device command queue and the simulated meters' states",
        (
            """CREATE TABLE commands (
                command_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                request_id text NOT NULL UNIQUE,
                originator text NOT NULL,
                device_id text NOT NULL,
                shard_key integer NOT NULL,
                service_reference text NOT NULL,
                srv text NOT NULL,
                form text NOT NULL CHECK (form IN ('sr-body', 'signed-pre-command', 'acknowledge')),
                payload bytea NOT NULL,
                queued_at timestamptz NOT NULL,
                status text NOT NULL CHECK (status IN ('queued', 'executed')),
                claim_token text,
                claimed_until timestamptz,
                claims integer NOT NULL DEFAULT 0 CHECK (claims >= 0),
                executed_at timestamptz,
                outcome text
            )""",
            "CREATE INDEX commands_queued ON commands (status, shard_key, command_id)",
            "CREATE TABLE meters (device_id text PRIMARY KEY, state text NOT NULL)",
            "CREATE TABLE meters_meta (key text PRIMARY KEY, value text NOT NULL)",
        ),
    ),
    Migration(
        4,
        "quarantined requests whose AD1 alert is not queued yet",
        (
            """CREATE TABLE quarantine_alerts_due (
                event_ref bigint PRIMARY KEY REFERENCES quarantine (event_ref)
            )""",
        ),
    ),
    Migration(
        5,
        "an index to find delivered deliveries old enough to delete",
        ("CREATE INDEX deliveries_delivered ON deliveries (status, delivered_at)",),
    ),
    Migration(
        6,
        "audit lanes (one hash chain per store object) and the anchor chain of their heads",
        (
            # Records from before lanes stay as they are: the main lane (0), position = sequence.
            # Adding a column with a default rewrites no row, so the append-only trigger is not hit.
            "ALTER TABLE audit ADD COLUMN lane integer NOT NULL DEFAULT 0 CHECK (lane >= 0)",
            "ALTER TABLE audit ADD COLUMN lane_position bigint CHECK (lane_position >= 1)",
            "CREATE UNIQUE INDEX audit_lane_position ON audit (lane, lane_position) WHERE lane_position IS NOT NULL",
            "CREATE SEQUENCE audit_sequence AS bigint",
            "SELECT setval('audit_sequence', coalesce((SELECT max(sequence) FROM audit), 0) + 1, false)",
            "CREATE SEQUENCE audit_lane_numbers AS integer",
            """CREATE TABLE audit_lanes (
                lane integer PRIMARY KEY CHECK (lane >= 1),
                opened_at timestamptz NOT NULL DEFAULT now()
            )""",
            """CREATE TABLE audit_anchors (
                sequence bigint PRIMARY KEY CHECK (sequence >= 1),
                at timestamptz NOT NULL,
                lane integer NOT NULL CHECK (lane >= 0),
                lane_position bigint NOT NULL CHECK (lane_position >= 1),
                lane_hash text NOT NULL CHECK (length(lane_hash) = 64),
                previous_hash text NOT NULL CHECK (length(previous_hash) = 64),
                hash text NOT NULL UNIQUE CHECK (length(hash) = 64)
            )""",
            """CREATE TRIGGER audit_anchors_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_anchors
                FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
            """CREATE TRIGGER audit_anchors_no_truncate BEFORE TRUNCATE ON audit_anchors
                FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
        ),
    ),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version
_LANES_VERSION: Final = 6
"""The migration that gave the audit log lanes; a store from before it is read as one chain."""
"""The newest schema this build knows; :meth:`PostgresStore.open` refuses a newer one."""


class _MigrationsSql:
    create: Final = """CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY CHECK (version >= 1),
        applied_at timestamptz NOT NULL DEFAULT now()
    )"""
    exists: Final = "SELECT to_regclass('schema_migrations') IS NOT NULL"
    current: Final = "SELECT coalesce(max(version), 0) FROM schema_migrations"
    # applied_at is the database's own bookkeeping of when it changed shape, not a decision's
    # time, so the server's clock is the right one (the injected clock governs decisions).
    insert: Final = "INSERT INTO schema_migrations (version) VALUES ($1)"


# --- SQL of the store's operations --------------------------------------------------------


class _Sql:
    audit_columns: Final = "sequence, at, kind, actor, subject, outcome, reason, detail, previous_hash, hash, lane, lane_position"
    audit_insert: Final = f"""INSERT INTO audit ({audit_columns})
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""
    audit_page: Final = f"SELECT {audit_columns} FROM audit WHERE sequence > $1 ORDER BY sequence LIMIT $2"
    audit_tail: Final = f"SELECT {audit_columns} FROM audit ORDER BY sequence DESC LIMIT $1"
    _columns_before_lanes: Final = "sequence, at, kind, actor, subject, outcome, reason, detail, previous_hash, hash"
    audit_page_before_lanes: Final = (
        f"SELECT {_columns_before_lanes} FROM audit WHERE sequence > $1 ORDER BY sequence LIMIT $2"
    )
    audit_tail_before_lanes: Final = f"SELECT {_columns_before_lanes} FROM audit ORDER BY sequence DESC LIMIT $1"
    lane_head: Final = """SELECT lane_position, hash, at FROM audit WHERE lane = $1 AND lane_position IS NOT NULL
        ORDER BY lane_position DESC LIMIT 1"""
    main_lane_head: Final = "SELECT sequence, hash, at FROM audit WHERE lane = 0 ORDER BY sequence DESC LIMIT 1"
    lane_open: Final = "INSERT INTO audit_lanes (lane) VALUES (nextval('audit_lane_numbers')) RETURNING lane"
    lanes: Final = "SELECT lane FROM audit_lanes ORDER BY lane"
    lane_anchored: Final = "SELECT coalesce(max(lane_position), 0) FROM audit_anchors WHERE lane = $1"
    try_lock: Final = "SELECT pg_try_advisory_lock($1)"

    anchor_columns: Final = "sequence, at, lane, lane_position, lane_hash, previous_hash, hash"
    anchor_lock: Final = "SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)"
    """The anchor chain's lock, and a COMMIT that does not wait for the disk: the lock is held for
    two statements, not for an fsync. An anchor lost in a crash of the server loses no record
    (they were committed durably) and breaks nothing (the anchors after it were lost with it,
    the WAL being one sequence); the lane is anchored again at the next turn."""
    anchor_last: Final = "SELECT sequence, hash FROM audit_anchors ORDER BY sequence DESC LIMIT 1"
    anchor_insert: Final = f"INSERT INTO audit_anchors ({anchor_columns}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    anchor_exists: Final = "SELECT 1 FROM audit_anchors WHERE lane = $1 AND lane_position = $2"
    anchor_page: Final = f"SELECT {anchor_columns} FROM audit_anchors WHERE sequence > $1 ORDER BY sequence LIMIT $2"

    take_locks: Final = """SELECT ARRAY(SELECT nextval('audit_sequence') FROM generate_series(1, $3))
        FROM (SELECT count(*) FROM (
            SELECT CASE WHEN exclusive THEN pg_advisory_xact_lock(key)::text
                        ELSE pg_advisory_xact_lock_shared(key)::text END
            FROM (SELECT key, exclusive FROM unnest($1::bigint[], $2::boolean[]) AS wanted (key, exclusive)
                  ORDER BY key) AS in_order
        ) AS taken) AS locked"""
    """Every lock of a group in one round trip, in key order (two groups wanting some of the same
    keys take them in the same order, so they queue rather than deadlock), and the audit sequence
    numbers the group's calls announced."""
    reserve_sequences: Final = "SELECT nextval('audit_sequence') FROM generate_series(1, $1)"

    directive_columns: Final = "sequence, directive_id, actor, name, arguments, decided_at, accepted, reason"
    directive_insert: Final = """INSERT INTO directives
        (sequence, directive_id, actor, name, arguments, decided_at, accepted, reason, audit_sequence)
        SELECT coalesce(max(sequence), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8 FROM directives
        RETURNING sequence"""
    directive_by_id: Final = f"SELECT {directive_columns} FROM directives WHERE directive_id = $1"
    directive_page: Final = f"SELECT {directive_columns} FROM directives WHERE sequence > $1 ORDER BY sequence LIMIT $2"
    registry_version: Final = "SELECT coalesce(max(sequence), 0) FROM directives"

    counter_select: Final = "SELECT last_counter FROM replay_counters WHERE originator = $1 AND target = $2"
    counter_consume: Final = """INSERT INTO replay_counters (originator, target, last_counter) VALUES ($1, $2, $3)
        ON CONFLICT (originator, target) DO UPDATE SET last_counter = excluded.last_counter
            WHERE replay_counters.last_counter < excluded.last_counter
        RETURNING last_counter"""
    """Check-and-set in one statement: a row comes back only when the counter was strictly greater."""

    adt_count_in: Final = """WITH
            pruned AS (DELETE FROM adt_events WHERE user_id = $1 AND srv = $2 AND at <= $3),
            seen AS (SELECT count(*) AS admissions FROM
                (SELECT 1 FROM adt_events WHERE user_id = $1 AND srv = $2 AND at > $4 LIMIT $6) AS bounded)
        INSERT INTO adt_events (user_id, srv, at) SELECT $1, $2, $5 FROM seen WHERE admissions < $6
        RETURNING at"""
    """Prune, count and (below the threshold) count this admission in, in one statement. The pruned
    rows (``at <= $3``, at least a window old) and the counted ones (``at > $4``, inside the window)
    never overlap, so the count is the same whether or not it sees the deletion. The count stops at
    the threshold, all the decision needs (a flooding user would otherwise cost a walk over its
    whole window per request)."""
    adt_count_after: Final = "SELECT count(*) FROM adt_events WHERE user_id = $1 AND srv = $2 AND at > $3"

    quarantine_columns: Final = "event_ref, request_id, user_id, srv, raw_request, quarantined_at, status"
    quarantine_insert: Final = """WITH held AS (
            INSERT INTO quarantine (request_id, user_id, srv, raw_request, quarantined_at, status)
            VALUES ($1, $2, $3, $4, $5, 'held') RETURNING event_ref
        )
        INSERT INTO quarantine_alerts_due (event_ref) SELECT event_ref FROM held RETURNING event_ref"""
    """Keeps the request with a new event reference and marks its AD1 alert due, in one statement."""
    quarantine_alerts_due: Final = f"""SELECT {quarantine_columns} FROM quarantine WHERE event_ref IN
        (SELECT event_ref FROM quarantine_alerts_due ORDER BY event_ref LIMIT $1) ORDER BY event_ref"""
    quarantine_alert_clear: Final = "DELETE FROM quarantine_alerts_due WHERE event_ref = $1"
    quarantine_by_user: Final = f"SELECT {quarantine_columns} FROM quarantine WHERE user_id = $1 ORDER BY event_ref"
    quarantine_held: Final = f"""SELECT {quarantine_columns} FROM quarantine
        WHERE event_ref = $1 AND user_id = $2 AND status = 'held'"""
    quarantine_settle: Final = """UPDATE quarantine SET status = $1, settled_at = $2
        WHERE event_ref = $3 AND status = 'held'"""

    precommand_columns: Final = "request_id, user_id, device_id, apdu, issued_at, expires_at"
    precommand_insert: Final = """INSERT INTO precommands
        (request_id, user_id, device_id, apdu, issued_at, expires_at, status, audit_sequence)
        VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)"""
    precommand_by_id: Final = f"SELECT {precommand_columns} FROM precommands WHERE request_id = $1"
    precommand_take: Final = f"""UPDATE precommands SET status = 'consumed', consumed_at = $3
        WHERE request_id = $1 AND user_id = $2 AND status = 'pending' AND expires_at > $3
        RETURNING {precommand_columns}"""

    delivery_columns: Final = """delivery_id, user_id, url, body, kind, subject, created_at, status,
        attempts, round_started_at, next_attempt_at, last_error, failed_at"""
    delivery_insert: Final = f"""INSERT INTO deliveries
        (user_id, url, body, kind, subject, created_at, status, round_started_at, next_attempt_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'pending', $6, $6) RETURNING {delivery_columns}"""
    delivery_by_id: Final = f"SELECT {delivery_columns} FROM deliveries WHERE delivery_id = $1"
    delivery_for_attempt: Final = delivery_by_id + " FOR UPDATE"
    delivery_due: Final = f"""SELECT {delivery_columns} FROM deliveries
        WHERE status = 'pending' AND next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until <= $1)
        ORDER BY next_attempt_at, delivery_id LIMIT $2"""
    delivery_due_to_lease: Final = delivery_due + " FOR UPDATE SKIP LOCKED"
    """Rows another worker is leasing right now are left to it (they will be leased when it commits)."""
    delivery_lease: Final = "UPDATE deliveries SET leased_until = $1 WHERE delivery_id = ANY($2::bigint[])"
    delivery_attempted: Final = """UPDATE deliveries SET attempts = attempts + 1, total_attempts = total_attempts + 1,
        last_attempt_at = $1, last_error = $2, leased_until = NULL WHERE delivery_id = $3"""
    delivery_delivered: Final = "UPDATE deliveries SET status = 'delivered', delivered_at = $1 WHERE delivery_id = $2"
    delivery_reschedule: Final = "UPDATE deliveries SET next_attempt_at = $1 WHERE delivery_id = $2"
    delivery_fail: Final = "UPDATE deliveries SET status = 'failed', failed_at = $1 WHERE delivery_id = $2"
    # FOR UPDATE: a row an attempt is recording meanwhile is read again once it committed, and
    # left out if it is no longer pending (failed) or failed (expired).
    delivery_overdue: Final = f"""SELECT {delivery_columns} FROM deliveries
        WHERE status = 'pending' AND round_started_at <= $1 ORDER BY delivery_id FOR UPDATE"""
    delivery_expired: Final = f"""SELECT {delivery_columns} FROM deliveries
        WHERE status = 'failed' AND failed_at <= $1 ORDER BY delivery_id FOR UPDATE"""
    delivery_delete: Final = "DELETE FROM deliveries WHERE delivery_id = $1"
    delivery_delete_delivered: Final = """DELETE FROM deliveries WHERE delivery_id = ANY(ARRAY(SELECT delivery_id
        FROM deliveries WHERE status = 'delivered' AND delivered_at <= $1 ORDER BY delivered_at LIMIT $2
        FOR UPDATE SKIP LOCKED)) RETURNING delivery_id"""
    """ARRAY(...) is computed once, then rows are deleted by primary key (an IN (subquery) may be
    planned as a hash join over a scan of the whole table)."""
    delivery_failed_by_user: Final = f"""SELECT {delivery_columns} FROM deliveries
        WHERE user_id = $1 AND status = 'failed' ORDER BY delivery_id"""
    delivery_failed_to_redeliver: Final = delivery_failed_by_user + " FOR UPDATE"
    delivery_recent: Final = f"SELECT {delivery_columns} FROM deliveries ORDER BY delivery_id DESC LIMIT $1"
    delivery_redeliver: Final = """UPDATE deliveries SET status = 'pending', attempts = 0, round_started_at = $1,
        next_attempt_at = $1, leased_until = NULL, failed_at = NULL WHERE delivery_id = $2"""
    # deliveries_user serves it: (user_id, status) first, the URL checked on those rows only.
    delivery_reschedule_receiver: Final = """UPDATE deliveries SET next_attempt_at = $1
        WHERE user_id = $2 AND status = 'pending' AND url = $3 AND next_attempt_at <> $1 AND delivery_id <> $4
        RETURNING delivery_id"""

    command_columns: Final = (
        "command_id, request_id, originator, device_id, service_reference, srv, form, payload, queued_at"
    )
    command_insert: Final = """INSERT INTO commands
        (request_id, originator, device_id, shard_key, service_reference, srv, form, payload, queued_at, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued')
        ON CONFLICT (request_id) DO NOTHING RETURNING command_id"""
    command_id_by_request: Final = "SELECT command_id FROM commands WHERE request_id = $1"
    command_status: Final = "SELECT status FROM commands WHERE request_id = $1"
    command_claim: Final = f"""UPDATE commands SET claim_token = 'claim-' || command_id || '-' || $3,
            claimed_until = $2, claims = claims + 1
        WHERE command_id IN (
            SELECT command_id FROM commands
            WHERE status = 'queued' AND shard_key % $5 = $6 AND (claimed_until IS NULL OR claimed_until <= $1)
            ORDER BY command_id LIMIT $4 FOR UPDATE SKIP LOCKED)
        RETURNING {command_columns}, claims, claim_token"""
    command_release: Final = """UPDATE commands SET claim_token = NULL, claimed_until = NULL
        WHERE status = 'queued' AND shard_key % $1 = $2 AND claim_token IS NOT NULL"""
    command_complete: Final = """UPDATE commands SET status = 'executed', executed_at = $1, outcome = $2,
            claim_token = NULL, claimed_until = NULL
        WHERE command_id = $3 AND status = 'queued' AND claim_token = $4"""
    command_count_queued: Final = "SELECT count(*) FROM commands WHERE status = 'queued'"

    meter_upsert: Final = """INSERT INTO meters (device_id, state) VALUES ($1, $2)
        ON CONFLICT (device_id) DO UPDATE SET state = excluded.state"""
    meter_all: Final = "SELECT device_id, state FROM meters"
    meter_one: Final = "SELECT state FROM meters WHERE device_id = $1"
    epoch_propose: Final = "INSERT INTO meters_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING"
    epoch_select: Final = "SELECT value FROM meters_meta WHERE key = 'epoch'"


# --- the URL ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PostgresLocation:
    """Where a PostgreSQL store lives: asyncpg's DSN (without ``schema=``) and the schema."""

    dsn: str
    schema: str

    @classmethod
    def parse(cls, url: str) -> PostgresLocation:
        if not url.startswith(POSTGRES_SCHEMES):
            raise ValueError(f"not a PostgreSQL store URL: {_redacted(url)!r}")
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        if len(schemas) > 1:
            raise ValueError(f"store URL names more than one schema: {_redacted(url)!r}")
        schema = schemas[0] if schemas else DEFAULT_SCHEMA
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema name must be a plain identifier (letters, digits, _): {schema!r}")
        rest = urlencode([(key, value) for key, value in query if key != "schema"])
        return cls(urlunsplit(parts._replace(query=rest)), schema)

    def describe(self) -> str:
        """The location without credentials, for messages and repr."""
        return f"{_redacted(self.dsn)} schema {self.schema}"


_SERVER_UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
"""What asyncpg raises when the server cannot be reached or is shutting down (SQLSTATE classes 08,
57 and 53, the socket's own errors): the database is unavailable, not the statement wrong."""


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key per purpose and schema (the same in every process).

    Keyed per schema so that stores in different schemas of one database (tests) do not wait on
    each other; every worker on one schema uses the one key.
    """
    digest = hashlib.sha256(f"dcc-gateway:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _aware(when: dt.datetime) -> dt.datetime:
    """The instant in UTC; a naive time is refused (as :func:`~gateway.store.audit.utc_text` does)."""
    return NATIVE_TIMES.time(when)  # type: ignore[no-any-return]


# --- the transaction the rules run in (gateway.store.operations) ---------------------------

Connection = asyncpg.Connection


def _delivery_audits(deliveries: Sequence[Delivery]) -> int:
    """The audit records enqueuing them writes: the enqueue's, and the decision's where there is one."""
    return sum(1 + (delivery.audit is not None) for delivery in deliveries)


def _affected_rows(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


class _GroupTransaction:
    """:class:`~gateway.store.transaction.Transaction` on the writer's connection, inside one group's
    transaction, which holds the advisory locks of every call in the group (see
    :meth:`PostgresStore._attempt`).

    The audit records go into the store's own lane: nobody else appends to it, so its head
    (position, hash, time) is kept here, handed from group to group, and put back when a call's
    savepoint is rolled back. Their sequence numbers come from ``reserved``, numbers the group
    drew from ``audit_sequence`` with its locks (more are drawn if a group writes more records
    than its calls announced); the ones not used go to the next group, so one store writing
    alone numbers its records without gaps.

    It holds back the group's audit rows, which :meth:`flush_audit` inserts in one pipelined
    round trip: before COMMIT, before each savepoint, and before a row that references the audit
    log. Nothing reads the audit table inside a group (the head is held here), so holding them
    back changes no decision.
    """

    encoding: Final = NATIVE_TIMES
    __slots__ = ("_db", "lane", "head", "reserved", "used", "pending_audit")

    def __init__(
        self, db: Connection, lane: int, head: tuple[int, str, dt.datetime | None], reserved: list[int]
    ) -> None:
        self._db = db
        self.lane = lane
        self.head = head
        self.reserved = reserved
        self.used = 0
        self.pending_audit: list[tuple[Any, ...]] = []

    async def flush_audit(self) -> None:
        """Inserts the audit rows held back so far (one round trip however many there are)."""
        if self.pending_audit:
            rows, self.pending_audit = self.pending_audit, []
            await self._db.executemany(_Sql.audit_insert, rows)

    # --- the audit chain ---------------------------------------------------------------------

    async def chain_head(self) -> tuple[int, str]:
        return self.head[0], self.head[1]

    async def insert_audit(
        self, position: int, entry: AuditEntry, columns: tuple[Any, ...], previous_hash: str, digest: str
    ) -> AuditRecord:
        if self.used == len(self.reserved):
            self.reserved.extend(int(row[0]) for row in await self._db.fetch(_Sql.reserve_sequences, _RESERVE_MORE))
        sequence = self.reserved[self.used]
        self.used += 1
        self.pending_audit.append((sequence, *columns, previous_hash, digest, self.lane, position))
        self.head = (position, digest, entry.at)
        return AuditRecord(sequence, entry, previous_hash, digest, lane=self.lane, position=position)

    def count_audit_cpu(self, nanoseconds: int) -> None:
        """Not split out here: the transaction runs on the event loop, between the server's answers."""

    # --- directives --------------------------------------------------------------------------

    async def registry_version(self) -> int:
        return int(await self._db.fetchval(_Sql.registry_version))

    async def directive(self, directive_id: str) -> DirectiveRecord | None:
        row = await self._db.fetchrow(_Sql.directive_by_id, directive_id)
        return None if row is None else directive_record(row, NATIVE_TIMES)

    async def insert_directive(self, columns: tuple[Any, ...], audit_sequence: int) -> int:
        await self.flush_audit()  # the directive row references its audit record
        return int(await self._db.fetchval(_Sql.directive_insert, *columns, audit_sequence))

    # --- admissions --------------------------------------------------------------------------

    async def consume_counter(self, originator: Eui64, target: Eui64, counter: int) -> int | None:
        key = (str(originator), str(target))
        if await self._db.fetchval(_Sql.counter_consume, *key, Decimal(counter)) is not None:
            return None
        return int(await self._db.fetchval(_Sql.counter_select, *key))

    async def count_in_window(
        self, request: AdmissionRequest, window: dt.timedelta, threshold: int, retention: dt.timedelta
    ) -> bool:
        key = (str(request.user_id), request.service_reference_variant)
        at = _aware(request.at)
        counted = await self._db.fetchval(
            _Sql.adt_count_in, *key, at - max(window, retention), at - window, at, threshold
        )
        return counted is not None

    async def hold(self, request: AdmissionRequest) -> int:
        return int(
            await self._db.fetchval(
                _Sql.quarantine_insert,
                request.request_id,
                str(request.user_id),
                request.service_reference_variant,
                bytes(request.raw_request),
                _aware(request.at),
            )
        )

    async def held(self, event_ref: int, user_id: Eui64) -> QuarantinedRequest | None:
        row = await self._db.fetchrow(_Sql.quarantine_held, event_ref, str(user_id))
        return None if row is None else quarantined_request(row, NATIVE_TIMES)

    async def settle(self, event_ref: int, status: QuarantineStatus, at: dt.datetime) -> None:
        await self._db.execute(_Sql.quarantine_settle, status.value, _aware(at), event_ref)

    async def clear_alert_mark(self, event_ref: int) -> bool:
        return _affected_rows(await self._db.execute(_Sql.quarantine_alert_clear, event_ref)) > 0

    # --- Pre-Commands ------------------------------------------------------------------------

    async def precommand(self, request_id: str) -> PendingPreCommand | None:
        row = await self._db.fetchrow(_Sql.precommand_by_id, request_id)
        return None if row is None else pending_precommand(row, NATIVE_TIMES)

    async def insert_precommand(self, precommand: PendingPreCommand, audit_sequence: int) -> None:
        await self.flush_audit()  # the Pre-Command row references its audit record
        await self._db.execute(_Sql.precommand_insert, *precommand_columns(precommand, NATIVE_TIMES), audit_sequence)

    async def take_precommand(self, request_id: str, user_id: Eui64, at: dt.datetime) -> PendingPreCommand | None:
        row = await self._db.fetchrow(_Sql.precommand_take, request_id, str(user_id), _aware(at))
        return None if row is None else pending_precommand(row, NATIVE_TIMES)

    # --- the device command queue ------------------------------------------------------------

    async def insert_command(self, command: DeviceCommand) -> int | None:
        inserted = await self._db.fetchval(_Sql.command_insert, *command_columns(command, NATIVE_TIMES))
        return None if inserted is None else int(inserted)

    async def command_id(self, request_id: str) -> int | None:
        existing = await self._db.fetchval(_Sql.command_id_by_request, request_id)
        return None if existing is None else int(existing)

    async def claim_commands(
        self, now: dt.datetime, limit: int, lease: dt.timedelta, shard: Shard
    ) -> list[ClaimedCommand]:
        # One random part per call, made unique per command by its id: a token is never reused.
        token = secrets.token_hex(16)
        rows = await self._db.fetch(
            _Sql.command_claim, _aware(now), _aware(now) + lease, token, limit, shard.count, shard.index
        )
        return [claimed_command(row, NATIVE_TIMES) for row in rows]

    async def release_claims(self, shard: Shard) -> int:
        return _affected_rows(await self._db.execute(_Sql.command_release, shard.count, shard.index))

    async def complete_command(self, command_id: int, claim_token: str, at: dt.datetime, outcome: str) -> bool:
        status = await self._db.execute(_Sql.command_complete, _aware(at), outcome, command_id, claim_token)
        return _affected_rows(status) == 1

    async def upsert_meters(self, meters: Mapping[str, str]) -> None:
        await self._db.executemany(_Sql.meter_upsert, list(meters.items()))

    async def meter_epoch(self, proposed: dt.datetime) -> dt.datetime:
        await self._db.execute(_Sql.epoch_propose, utc_text(proposed))
        stored = await self._db.fetchval(_Sql.epoch_select)
        if stored is None:
            raise RuntimeError("the meter epoch vanished between insert and select")
        return parse_utc_text(stored)

    # --- the outbox --------------------------------------------------------------------------

    async def insert_delivery(self, delivery: Delivery) -> PendingDelivery:
        row = await self._db.fetchrow(
            _Sql.delivery_insert,
            str(delivery.user_id),
            delivery.url,
            bytes(delivery.body),
            delivery.kind.value,
            delivery.subject,
            _aware(delivery.created_at),
        )
        return pending_delivery(row, NATIVE_TIMES)

    async def due_deliveries(self, now: dt.datetime, limit: int, lease: dt.timedelta | None) -> list[PendingDelivery]:
        rows = await self._db.fetch(_Sql.delivery_due if lease is None else _Sql.delivery_due_to_lease, _aware(now), limit)
        if lease is not None and rows:
            await self._db.execute(_Sql.delivery_lease, _aware(now) + lease, [row[0] for row in rows])
        return [pending_delivery(row, NATIVE_TIMES) for row in rows]

    async def count_attempt(self, delivery_id: int, at: dt.datetime, error: str | None) -> PendingDelivery | None:
        row = await self._db.fetchrow(_Sql.delivery_for_attempt, delivery_id)
        if row is None:
            return None
        await self._db.execute(_Sql.delivery_attempted, _aware(at), error, delivery_id)
        return pending_delivery(row, NATIVE_TIMES)

    async def mark_delivered(self, delivery_id: int, at: dt.datetime) -> None:
        await self._db.execute(_Sql.delivery_delivered, _aware(at), delivery_id)

    async def mark_failed(self, delivery_id: int, at: dt.datetime) -> None:
        await self._db.execute(_Sql.delivery_fail, _aware(at), delivery_id)

    async def set_next_attempt(self, delivery_id: int, at: dt.datetime) -> None:
        await self._db.execute(_Sql.delivery_reschedule, _aware(at), delivery_id)

    async def overdue_deliveries(self, round_started_by: dt.datetime) -> list[PendingDelivery]:
        rows = await self._db.fetch(_Sql.delivery_overdue, _aware(round_started_by))
        return [pending_delivery(row, NATIVE_TIMES) for row in rows]

    async def expired_failures(self, failed_by: dt.datetime) -> list[PendingDelivery]:
        rows = await self._db.fetch(_Sql.delivery_expired, _aware(failed_by))
        return [pending_delivery(row, NATIVE_TIMES) for row in rows]

    async def delete_delivery(self, delivery_id: int) -> None:
        await self._db.execute(_Sql.delivery_delete, delivery_id)

    async def delete_delivered(self, delivered_by: dt.datetime, limit: int) -> list[int]:
        return [int(row[0]) for row in await self._db.fetch(_Sql.delivery_delete_delivered, _aware(delivered_by), limit)]

    async def failed_deliveries(self, user_id: Eui64) -> list[PendingDelivery]:
        rows = await self._db.fetch(_Sql.delivery_failed_to_redeliver, str(user_id))
        return [pending_delivery(row, NATIVE_TIMES) for row in rows]

    async def start_round(self, delivery_id: int, at: dt.datetime) -> None:
        await self._db.execute(_Sql.delivery_redeliver, _aware(at), delivery_id)

    async def reschedule_receiver(self, user_id: Eui64, url: str, due_at: dt.datetime, spared: int) -> list[int]:
        rows = await self._db.fetch(_Sql.delivery_reschedule_receiver, _aware(due_at), str(user_id), url, spared)
        return [int(row[0]) for row in rows]


Tx = _GroupTransaction


# --- the group-commit writer -----------------------------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class _WriteCall(Generic[T]):
    """One write call waiting for its group: its work, and the caller's future (answered after COMMIT)."""

    work: Callable[[Tx], Awaitable[T]]
    future: asyncio.Future[T]
    locks: tuple[Lock, ...] = ()
    audits: int = 0
    """How many audit records the call expects to write (numbers are drawn for them with the locks)."""
    result: Any = None
    error: BaseException | None = None


Lock = tuple[int, bool]
"""(advisory key, exclusive): exclusive for a key a call checks and changes, shared for one it
only reads while another kind of call may change it (the registry)."""

_RESERVE_MORE: Final = 16
"""Sequence numbers drawn at once when a group writes more audit records than its calls announced."""

ANCHOR_INTERVAL_SECONDS: Final = 1.0
"""How often, at most, a store writes its lane's head into the anchor chain while it writes."""

_LOCK_RETRIES: Final = 5
"""Times a group is run again after PostgreSQL broke a deadlock by cancelling it (nothing of it
was answered): two groups can still wait on each other's rows (outbox maintenance against an
attempt being recorded), which the ordered advisory locks do not cover."""

_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


# --- the store --------------------------------------------------------------------------


class PostgresStore:
    """:class:`gateway.store.base.Store` on PostgreSQL; several of these (workers) may share one schema."""

    def __init__(
        self,
        url: str,
        *,
        adt_retention: dt.timedelta = dt.timedelta(days=1),
        read_only: bool = False,
        group_limit: int = DEFAULT_GROUP_LIMIT,
        pool_size: int = DEFAULT_POOL_SIZE,
        connect_timeout: float = 10.0,
    ) -> None:
        """``adt_retention``: ADT rows are kept at least this long (and at least the request's window).

        ``read_only``: for ``audit verify``; the schema is neither created nor migrated and the
        connections are read-only. ``group_limit``: at most this many write calls per transaction.
        ``pool_size``: connections for reads (the writer has its own).
        """
        if group_limit < 1 or pool_size < 1:
            raise ValueError(f"group_limit and pool_size must be positive ({group_limit}, {pool_size})")
        self._location = PostgresLocation.parse(url)
        self._adt_retention = adt_retention
        self._read_only = read_only
        self._group_limit = group_limit
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._registry_lock_key = _lock_key("write", self._location.schema)
        self._anchor_lock_key = _lock_key("audit-anchors", self._location.schema)
        self._lane: int | None = None
        self._lane_head: tuple[int, str, dt.datetime | None] | None = None
        """The committed head of this store's lane (position, hash, time); None: to be read again."""
        self._reserved: list[int] = []
        self._anchored_position = 0
        self._anchored_at = 0.0
        self._serial_seconds = 0.0
        self._serial_sections = 0
        self._schema_version = SCHEMA_VERSION
        """What the open schema is at (a read-only store may find an older one)."""
        self._pool: asyncpg.Pool | None = None
        self._writer_db: Connection | None = None
        self._queue: asyncio.Queue[_WriteCall[Any] | None] | None = None
        """Write calls for the writer task; None on it (put by :meth:`close`) stops the writer."""
        self._writer: asyncio.Task[None] | None = None
        self._groups_committed = 0
        self._calls_committed = 0

    def __repr__(self) -> str:
        return f"PostgresStore({self._location.describe()!r})"

    @property
    def schema(self) -> str:
        return self._location.schema

    @property
    def write_lock_key(self) -> int:
        """The registry's advisory lock, one per schema: a directive takes it exclusively, and every
        admission shares it (it checks the registry version it was decided on). Holding it stops
        every decision; no other lock is shared by all writers but the anchor chain's."""
        return self._registry_lock_key

    @property
    def lane(self) -> int | None:
        """This store's audit lane (None until opened for writing)."""
        return self._lane

    @property
    def serial_seconds(self) -> float:
        """Time this store spent waiting for or holding a lock every worker takes exclusively (a
        directive's hold of the registry lock, an anchor's of the anchor chain's): the part of
        the work no number of workers runs side by side."""
        return self._serial_seconds

    @property
    def serial_sections(self) -> int:
        """How many such waits-and-holds :attr:`serial_seconds` adds up."""
        return self._serial_sections

    @property
    def groups_committed(self) -> int:
        """Write transactions committed by this store object (one per group of write calls)."""
        return self._groups_committed

    @property
    def calls_committed(self) -> int:
        """Write calls answered after a committed group (failed calls rolled back in their savepoint included)."""
        return self._calls_committed

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Connects, creates and migrates the schema (unless read-only), starts the writer."""
        if self._pool is not None:
            raise RuntimeError(f"{self!r} is already open")
        settings = {"search_path": f'"{self._location.schema}"'}
        if self._read_only:
            settings["default_transaction_read_only"] = "on"
        writer_db: Connection | None = None
        pool: asyncpg.Pool | None = None
        try:
            if self._read_only:
                pool = await self._create_pool(settings)
                async with pool.acquire() as db:
                    self._schema_version = await _check_existing_schema(db, self._location)
            else:
                writer_db = await self._connect(settings)
                await _migrate(writer_db, self._location)
                await self._open_lane(writer_db)
                pool = await self._create_pool(settings)
        except BaseException:
            if writer_db is not None:
                await writer_db.close()
            if pool is not None:
                await pool.close()
            raise
        self._pool, self._writer_db = pool, writer_db
        if writer_db is not None:
            self._queue = asyncio.Queue()
            self._writer = asyncio.create_task(self._write_loop(), name=f"{self!r} writer")

    async def close(self) -> None:
        """Answers the write calls already queued, then closes the connections; idempotent."""
        pool, self._pool = self._pool, None
        queue, self._queue = self._queue, None
        writer, self._writer = self._writer, None
        if queue is not None and writer is not None:
            queue.put_nowait(None)  # the writer answers what was queued before it, then stops
            await asyncio.shield(writer)
        writer_db, self._writer_db = self._writer_db, None
        if writer_db is not None and not writer_db.is_closed():
            with contextlib.suppress(Exception):  # a store closing on a lost server cannot anchor
                await self._anchor_lane(writer_db)
        if writer_db is not None:
            await writer_db.close()
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """The last migration applied to this store's schema."""
        return int(await self._fetchval(_MigrationsSql.current))

    # --- directives ---------------------------------------------------------------------

    async def append_directive(self, record: DirectiveRecord, audit: AuditEntry) -> DirectiveRecord:
        """Stores the directive and its audit record together; a known directive_id returns the stored one
        and records nothing, so a retried submission is idempotent."""
        registry = ((self._registry_lock_key, True),)  # directives keep one global order
        return await self._write(lambda tx: operations.store_directive(tx, record, audit), registry, audits=1)

    async def find_directive(self, directive_id: str) -> DirectiveRecord | None:
        row = await self._fetchrow(_Sql.directive_by_id, directive_id)
        return None if row is None else directive_record(row, NATIVE_TIMES)

    async def directives(self, after_sequence: int = 0) -> AsyncIterator[DirectiveRecord]:
        """Every directive above ``after_sequence`` in sequence order, read a page at a time."""
        async for row in self._pages(_Sql.directive_page, after_sequence):
            yield directive_record(row, NATIVE_TIMES)

    async def registry_version(self) -> int:
        """The last directive's sequence; directives are appended under the write lock, so this is a
        committed version an admission can name."""
        return int(await self._fetchval(_Sql.registry_version))

    # --- requests -----------------------------------------------------------------------

    async def admit(self, request: AdmissionRequest) -> AdmissionResult:
        """Replay check-and-set, ADT count, quarantine, command and audit in one transaction.

        ``last_counter`` in the result is the counter stored after the decision: the earlier
        one for a REPLAY, this request's otherwise. STALE_REGISTRY changes and records nothing.
        """
        operations.check_admission(request)  # refused before it is queued
        _aware(request.at)
        retention = self._adt_retention
        locks = [
            (self._registry_lock_key, False),
            (self._key("counter", str(request.originator), str(request.target)), True),
        ]
        if request.adt_threshold is not None:
            locks.append((self._key("adt", str(request.user_id), request.service_reference_variant), True))
        audits = 1
        if request.precommand is not None:  # remembered in the same transaction, under its own key (as alone)
            locks.append((self._key("precommand", request.request_id), True))
            audits = 2
        return await self._write(lambda tx: operations.admit(tx, request, retention), tuple(locks), audits=audits)

    async def last_counter(self, originator: Eui64, target: Eui64) -> int | None:
        stored = await self._fetchval(_Sql.counter_select, str(originator), str(target))
        return None if stored is None else int(stored)

    async def quarantined(self, user_id: Eui64) -> list[QuarantinedRequest]:
        """Every request ever quarantined for that user, any status, in event-reference order."""
        return [quarantined_request(row, NATIVE_TIMES) for row in await self._fetch(_Sql.quarantine_by_user, str(user_id))]

    async def settle_quarantine(
        self,
        event_ref: int,
        user_id: Eui64,
        status: QuarantineStatus,
        audit: AuditEntry,
        command: DeviceCommand | None = None,
    ) -> QuarantinedRequest | None:
        """Marks a HELD request of that user RELEASED or DELETED with its audit record (and queues
        ``command`` when RELEASED); None if there is none, and then nothing is recorded."""
        operations.check_settlement(status, command)
        return await self._write(
            lambda tx: operations.settle_quarantine(tx, event_ref, user_id, status, audit, command),
            ((self._key("quarantine", str(event_ref)), True),),
            audits=1,
        )

    async def quarantine_alerts_due(self, limit: int = 100) -> list[QuarantinedRequest]:
        return [quarantined_request(row, NATIVE_TIMES) for row in await self._fetch(_Sql.quarantine_alerts_due, limit)]

    async def record_quarantine_alert(self, event_ref: int, delivery: Delivery | None, audit: AuditEntry | None) -> bool:
        return await self._write(
            lambda tx: operations.record_quarantine_alert(tx, event_ref, delivery, audit),
            ((self._key("quarantine", str(event_ref)), True),),
            audits=_delivery_audits((delivery,) if delivery else ()) + (audit is not None),
        )

    async def record_quarantine_alerts(self, alerts: Sequence[QuarantineAlert]) -> int:
        batch = tuple(alerts)
        if not batch:
            return 0
        return await self._write(
            lambda tx: operations.record_quarantine_alerts(tx, batch),
            audits=sum(_delivery_audits((a.delivery,) if a.delivery else ()) + (a.audit is not None) for a in batch),
        )

    # --- audit --------------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        return await self._write(lambda tx: operations.append_audit(tx, entry), audits=1)

    async def audit_records(self) -> AsyncIterator[AuditRecord]:
        """The audit log in sequence order; raises :class:`AuditRecordUnreadable` at an undecodable row."""
        page = _Sql.audit_page if self._schema_version >= _LANES_VERSION else _Sql.audit_page_before_lanes
        async for row in self._pages(page, 0):
            yield audit_record(row, NATIVE_TIMES)

    # --- reading back for people (the console) ------------------------------------------

    async def audit_tail(self, limit: int) -> list[AuditRecord]:
        tail = _Sql.audit_tail if self._schema_version >= _LANES_VERSION else _Sql.audit_tail_before_lanes
        return [audit_record(row, NATIVE_TIMES) for row in await self._fetch(tail, check_read_limit(limit))]

    async def recent_deliveries(self, limit: int) -> list[PendingDelivery]:
        return [pending_delivery(row, NATIVE_TIMES) for row in await self._fetch(_Sql.delivery_recent, check_read_limit(limit))]

    async def delivery(self, delivery_id: int) -> PendingDelivery | None:
        row = await self._fetchrow(_Sql.delivery_by_id, delivery_id)
        return None if row is None else pending_delivery(row, NATIVE_TIMES)

    async def adt_admissions(self, user_id: Eui64, service_reference_variant: str, since: dt.datetime) -> int:
        return int(await self._fetchval(_Sql.adt_count_after, str(user_id), service_reference_variant, _aware(since)))

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
        operations.check_precommand(_aware(issued_at), _aware(expires_at))
        precommand = PendingPreCommand(request_id, user_id, device_id, bytes(apdu), issued_at, expires_at)
        await self._write(
            lambda tx: operations.remember_precommand(tx, precommand, audit),
            ((self._key("precommand", request_id), True),),
            audits=1,
        )

    async def take_precommand(self, request_id: str, user_id: Eui64, at: dt.datetime) -> PendingPreCommand | None:
        """Check-and-consume in one statement under the write lock: one caller gets it, across workers."""
        _aware(at)
        return await self._write(
            lambda tx: tx.take_precommand(request_id, user_id, at), ((self._key("precommand", request_id), True),)
        )

    # --- commands for the simulated devices ---------------------------------------------

    async def queue_command(self, command: DeviceCommand, audit: AuditEntry) -> int:
        """Queues the command with its audit record (``command_id`` added to its detail); a RequestID
        already queued returns its id and records nothing."""
        _aware(command.queued_at)
        return await self._write(
            lambda tx: operations.queue_command(tx, command, audit),
            ((self._key("command-request", command.request_id), True),),
            audits=1,
        )

    async def claim_commands(
        self, now: dt.datetime, limit: int, lease: dt.timedelta, shard: Shard = ALL_DEVICES
    ) -> list[ClaimedCommand]:
        """QUEUED commands without a live claim, oldest first, each claimed until ``now + lease``."""
        operations.check_claim(limit, lease)
        _aware(now)
        shard_lock = ((self._key("shard", str(shard.count), str(shard.index)), True),)
        return await self._write(lambda tx: operations.claim_commands(tx, now, limit, lease, shard), shard_lock)

    async def release_claims(self, shard: Shard = ALL_DEVICES) -> int:
        shard_lock = ((self._key("shard", str(shard.count), str(shard.index)), True),)
        return await self._write(lambda tx: tx.release_claims(shard), shard_lock)

    async def complete_command(self, claimed: ClaimedCommand, completion: CommandCompletion) -> bool:
        """Marks it EXECUTED with the meters' states, deliveries and audits, only under its live claim token."""
        _aware(completion.at)
        return await self._write(
            lambda tx: operations.complete_command(tx, claimed, completion),
            ((self._key("command", str(claimed.command_id)), True),),
            audits=_delivery_audits(completion.deliveries) + len(completion.audits),
        )

    async def command_status(self, request_id: str) -> CommandStatus | None:
        status = await self._fetchval(_Sql.command_status, request_id)
        return None if status is None else CommandStatus(status)

    async def queued_commands(self) -> int:
        return int(await self._fetchval(_Sql.command_count_queued))

    # --- the simulated meters' states ---------------------------------------------------

    async def save_meters(
        self, meters: Mapping[str, str], deliveries: Sequence[Delivery] = (), audits: Sequence[AuditEntry] = ()
    ) -> None:
        meters, deliveries, audits = dict(meters), tuple(deliveries), tuple(audits)
        await self._write(
            lambda tx: operations.store_meters(tx, meters, deliveries, audits),
            audits=_delivery_audits(deliveries) + len(audits),
        )

    async def load_meters(self) -> dict[str, str]:
        return {row[0]: row[1] for row in await self._fetch(_Sql.meter_all)}

    async def load_meter(self, device_id: str) -> str | None:
        state = await self._fetchval(_Sql.meter_one, device_id)
        return None if state is None else str(state)

    async def meter_epoch(self, proposed: dt.datetime) -> dt.datetime:
        """The stored simulation start; the first caller (of any worker) stores ``proposed``."""
        _aware(proposed)
        return await self._write(lambda tx: tx.meter_epoch(proposed))

    # --- the outbox ---------------------------------------------------------------------
    # Every state change is audited in its own transaction (kind "delivery"). Delivery is
    # at least once: an attempt whose outcome was not recorded (crash, lost lease) is made
    # again, so a receiver may see a document twice and dedupes by its ResponseID.

    async def enqueue_delivery(self, delivery: Delivery) -> int:
        """Stores the delivery, due at ``created_at``; audits its decision (if given) and the enqueue."""
        _aware(delivery.created_at)
        return await self._write(lambda tx: operations.enqueue(tx, delivery), audits=_delivery_audits((delivery,)))

    async def due_deliveries(
        self, now: dt.datetime, limit: int, *, lease: dt.timedelta | None = None
    ) -> list[PendingDelivery]:
        """Due PENDING deliveries, oldest due first; claimed until ``now + lease`` when a lease is given."""
        operations.check_claim(limit, lease)
        _aware(now)
        return await self._write(lambda tx: operations.due_deliveries(tx, now, limit, lease))

    async def record_attempt(
        self, delivery_id: int, at: dt.datetime, ok: bool, error: str | None, next_attempt_at: dt.datetime | None
    ) -> DeliveryStatus | None:
        """One attempt and the status it leads to (see :meth:`gateway.store.base.Store.record_attempt`)."""
        failure = None if ok else (error or "unknown error")
        _aware(at)
        return await self._write(
            lambda tx: operations.record_attempt(tx, delivery_id, at, failure, next_attempt_at),
            ((self._key("delivery", str(delivery_id)), True),),
            audits=1,
        )

    async def fail_overdue(self, now: dt.datetime, max_age: dt.timedelta = DELIVERY_MAX_AGE) -> int:
        """PENDING deliveries with ``round_started_at <= now - max_age`` become FAILED."""
        _aware(now)
        return await self._write(lambda tx: operations.fail_overdue(tx, now, max_age))

    async def purge_failed(self, now: dt.datetime, keep: dt.timedelta = FAILED_DELIVERY_KEEP) -> int:
        """Deletes FAILED deliveries with ``failed_at <= now - keep``; each deletion is audited."""
        _aware(now)
        return await self._write(lambda tx: operations.purge_failed(tx, now, keep))

    async def purge_delivered(
        self, now: dt.datetime, keep: dt.timedelta = DELIVERED_KEEP, limit: int = PURGE_BATCH
    ) -> int:
        _aware(now)
        return await self._write(lambda tx: operations.purge_delivered(tx, now, keep, limit))

    async def failed_deliveries(self, user_id: Eui64) -> list[PendingDelivery]:
        return [pending_delivery(row, NATIVE_TIMES) for row in await self._fetch(_Sql.delivery_failed_by_user, str(user_id))]

    async def redeliver_failed(self, user_id: Eui64, now: dt.datetime) -> int:
        """FAILED → PENDING, due at ``now``, attempts counted afresh and a new ``max_age`` from ``now``."""
        _aware(now)
        return await self._write(
            lambda tx: operations.redeliver_failed(tx, user_id, now), ((self._key("receiver", str(user_id)), True),)
        )

    async def reschedule_deliveries(
        self, user_id: Eui64, url: str, due_at: dt.datetime, *, at: dt.datetime, reason: str,
        except_delivery: int | None = None,
    ) -> int:
        """See :meth:`gateway.store.base.Store.reschedule_deliveries`."""
        _aware(due_at)
        _aware(at)
        spared = -1 if except_delivery is None else except_delivery
        return await self._write(
            lambda tx: operations.reschedule_deliveries(tx, user_id, url, due_at, at, reason, spared),
            ((self._key("receiver", str(user_id)), True),),
            audits=1,
        )

    # --- plumbing: connections --------------------------------------------------------------

    async def _connect(self, settings: Mapping[str, str]) -> Connection:
        return await asyncpg.connect(
            self._location.dsn, server_settings=dict(settings), timeout=self._connect_timeout
        )

    async def _create_pool(self, settings: Mapping[str, str]) -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            self._location.dsn,
            min_size=1,
            max_size=self._pool_size,
            server_settings=dict(settings),
            timeout=self._connect_timeout,
        )
        if pool is None:  # asyncpg's typing allows it; an opened pool is never None
            raise RuntimeError("asyncpg returned no pool")
        return pool

    def _readers(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreNotOpenError(f"{self!r} is not open")
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with self._reads_unavailable_when_disconnected():
            return list(await self._readers().fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        with self._reads_unavailable_when_disconnected():
            return await self._readers().fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        with self._reads_unavailable_when_disconnected():
            return await self._readers().fetchval(sql, *args)

    @contextlib.contextmanager
    def _reads_unavailable_when_disconnected(self) -> Iterator[None]:
        """A read that fails for want of the server is StoreUnavailable, like a failed write group."""
        try:
            yield
        except _SERVER_UNREACHABLE as exc:
            raise StoreUnavailable(f"reading {self._location.describe()} failed: {exc!r}") from exc

    async def _pages(self, sql: str, after: int) -> AsyncIterator[asyncpg.Record]:
        """Rows of a ``WHERE sequence > $1 ... LIMIT $2`` query, keyed on the first column; no
        connection is held across ``yield``, so the caller may use the store while it iterates."""
        while True:
            rows = await self._fetch(sql, after, _PAGE_SIZE)
            for row in rows:
                yield row
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1][0]

    # --- plumbing: group commit -------------------------------------------------------------

    async def _write(
        self, work: Callable[[Tx], Awaitable[T]], locks: tuple[Lock, ...] = (), *, audits: int = 0
    ) -> T:
        """Runs ``work`` in the next group's transaction, under ``locks``; returns its result once
        that group committed. ``audits``: how many audit records it will likely write.

        A caller cancelled before its group starts is dropped from it; one cancelled later may
        still be committed (like a request whose client left after the decision).
        """
        if self._read_only:
            raise StoreReadOnlyError(f"{self!r} was opened read-only")
        if self._queue is None:
            raise StoreNotOpenError(f"{self!r} is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_WriteCall(work, future, locks, audits))
        return await future

    def _key(self, purpose: str, *parts: str) -> int:
        """The advisory key of one thing decisions about it are serialised on (a counter, a window…)."""
        return _lock_key(":".join((purpose, *parts)), self._location.schema)

    async def _write_loop(self) -> None:
        queue = self._queue
        if queue is None:
            return
        held_back: _WriteCall[Any] | None = None
        while True:
            first = held_back if held_back is not None else await queue.get()
            held_back = None
            if first is None:
                return
            # Whatever queued up while the previous group committed forms the next group; a call
            # every worker waits for (a directive) goes in a group of its own, so that what all
            # of them wait for is that call alone.
            group = [first]
            stop = False
            while not self._serial(first) and len(group) < self._group_limit and not queue.empty():
                call = queue.get_nowait()
                if call is None:
                    stop = True
                    break
                if self._serial(call):
                    held_back = call
                    break
                group.append(call)
            await self._run_group(group)
            await self._anchor_when_due()
            if stop:
                return

    def _serial(self, call: _WriteCall[Any]) -> bool:
        return (self._registry_lock_key, True) in call.locks

    async def _run_group(self, group: list[_WriteCall[Any]]) -> None:
        """Runs the live calls of ``group`` in one transaction and answers them after COMMIT.

        First without savepoints (two round trips fewer per call, and calls seldom raise); if a
        call raises, that attempt is rolled back, nothing of it having been answered, and the
        group runs again with a savepoint per call, so that the failing call is undone alone.
        A group PostgreSQL cancels to break a deadlock is run again (it was answered nothing).
        """
        live = [call for call in group if not call.future.done()]
        if not live:
            return
        for retry in range(_LOCK_RETRIES + 1):
            try:
                db = await self._writer_connection()
                if not await self._attempt(db, live, savepoints=False):
                    await self._attempt(db, live, savepoints=True)
                break
            except _RETRYABLE as exc:
                if retry < _LOCK_RETRIES:
                    continue
                self._fail_group(live, exc)
                return
            except Exception as exc:  # the group as a whole failed: no call of it can be answered as stored
                self._discard_writer_connection()
                self._fail_group(live, exc)
                return
        self._groups_committed += 1
        self._calls_committed += len(live)
        for call in live:
            if call.future.done():
                continue
            if call.error is not None:
                call.future.set_exception(call.error)
            else:
                call.future.set_result(call.result)

    def _fail_group(self, calls: list[_WriteCall[Any]], exc: Exception) -> None:
        for call in calls:
            if not call.future.done():
                failure = StoreWriteFailed(f"write transaction on {self._location.describe()} failed: {exc!r}")
                failure.__cause__ = exc
                call.future.set_exception(failure)

    async def _attempt(self, db: Connection, calls: list[_WriteCall[Any]], *, savepoints: bool) -> bool:
        """One transaction over ``calls`` under their locks; True when it committed.

        Without ``savepoints``, the first call that raises rolls the whole attempt back and the
        answer is False. With them, a call that raises is rolled back to its savepoint alone.
        """
        wanted: dict[int, bool] = {}
        for call in calls:
            for key, exclusive in call.locks:
                wanted[key] = wanted.get(key, False) or exclusive
        serial = wanted.get(self._registry_lock_key, False)  # a directive: every decision waits meanwhile
        started = time.perf_counter()
        # READ COMMITTED whatever the server's default: each statement then sees what the writer
        # that held a lock before committed (a snapshot taken before the lock was granted, as
        # REPEATABLE READ would keep, would decide on stale rows).
        transaction = db.transaction(isolation="read_committed")
        await transaction.start()
        tx: _GroupTransaction | None = None
        try:
            head = self._lane_head or await self._read_lane_head(db)
            reserved = list(self._reserved)
            await self._lock_and_reserve(db, wanted, sum(call.audits for call in calls) - len(reserved), reserved)
            tx = _GroupTransaction(db, self._lane_number(), head, reserved)
            for call in calls:
                call.result, call.error = None, None
                if not savepoints:
                    try:
                        call.result = await call.work(tx)
                    except _RETRYABLE:
                        raise
                    except Exception as exc:
                        call.error = exc
                        await transaction.rollback()
                        self._reserved = tx.reserved  # nothing of this attempt was stored
                        return False
                    continue
                position, used = tx.head, tx.used
                try:
                    async with db.transaction():  # a SAVEPOINT inside the group's transaction
                        call.result = await call.work(tx)
                        await tx.flush_audit()  # inside the savepoint: a row that fails is this call's
                except _RETRYABLE:
                    raise
                except Exception as exc:  # this call alone is rolled back; its caller gets the error
                    call.error = exc
                    tx.head, tx.used = position, used  # its audit records were rolled back with it
                    tx.pending_audit.clear()  # or were never inserted
            if not savepoints:
                try:
                    await tx.flush_audit()
                except _RETRYABLE:
                    raise
                except asyncpg.PostgresError:  # a call's row was refused: the run with savepoints tells whose
                    await transaction.rollback()
                    self._reserved = tx.reserved
                    return False
        except BaseException:
            with contextlib.suppress(Exception):  # a lost connection cannot roll back; the caller discards it
                await transaction.rollback()
            if tx is not None:
                self._reserved = tx.reserved  # rolled back: none of its numbers was used
            raise
        try:
            await transaction.commit()
        except BaseException:
            self._lane_head, self._reserved = None, []  # committed or not: the head is read again
            raise
        self._lane_head, self._reserved = tx.head, tx.reserved[tx.used :]
        if serial:
            self._count_serial(started)
        return True

    async def _lock_and_reserve(self, db: Connection, wanted: dict[int, bool], more: int, reserved: list[int]) -> None:
        """Takes the group's advisory locks (in key order) and draws ``more`` audit sequence numbers,
        in one round trip; neither when there is nothing to do."""
        if wanted:
            keys = sorted(wanted)
            numbers = await db.fetchval(_Sql.take_locks, keys, [wanted[key] for key in keys], max(more, 0))
            reserved.extend(int(number) for number in numbers)
        elif more > 0:
            reserved.extend(int(row[0]) for row in await db.fetch(_Sql.reserve_sequences, more))

    def _count_serial(self, started: float) -> None:
        self._serial_seconds += time.perf_counter() - started
        self._serial_sections += 1

    def _lane_number(self) -> int:
        if self._lane is None:
            raise StoreNotOpenError(f"{self!r} has no audit lane (not open for writing)")
        return self._lane

    async def _read_lane_head(self, db: Connection) -> tuple[int, str, dt.datetime | None]:
        """The lane's head as stored (after a group whose COMMIT may or may not have happened)."""
        lane = self._lane_number()
        row = await db.fetchrow(_Sql.lane_head, lane)
        return (0, lane_genesis(lane), None) if row is None else (int(row[0]), str(row[1]), row[2])

    # --- the audit lane and the anchor chain -------------------------------------------------

    async def _open_lane(self, db: Connection) -> None:
        """A lane of this store's own, and the main lane's head anchored if it was not yet (the
        records of a store from before lanes: nothing is appended to them any more)."""
        await self._claim_lane(db)
        main = await db.fetchrow(_Sql.main_lane_head)
        if main is not None and not await db.fetchval(_Sql.anchor_exists, MAIN_LANE, main[0]):
            await self._append_anchor(db, MAIN_LANE, int(main[0]), str(main[1]), main[2])

    async def _claim_lane(self, db: Connection) -> None:
        """Takes a lane no open store writes to (a session lock on the writer's connection says
        whose it is, and goes with that connection), or a new one; its chain goes on from its head.
        A worker started again so continues the lane of the one that stopped."""
        lane = None
        for row in await db.fetch(_Sql.lanes):
            if await db.fetchval(_Sql.try_lock, self._key("lane", str(row[0]))):
                lane = int(row[0])
                break
        if lane is None:
            lane = int(await db.fetchval(_Sql.lane_open))
            await db.execute("SELECT pg_advisory_lock($1)", self._key("lane", str(lane)))
        self._lane, self._reserved = lane, []
        self._lane_head = await self._read_lane_head(db)
        self._anchored_position = int(await db.fetchval(_Sql.lane_anchored, lane))
        self._anchored_at = time.monotonic()

    async def _anchor_when_due(self) -> None:
        if time.monotonic() - self._anchored_at < ANCHOR_INTERVAL_SECONDS:
            return
        try:
            await self._anchor_lane(await self._writer_connection())
        except Exception:  # the next group's turn tries again; the lane's records are committed
            logging.getLogger("dcc_gateway.store").exception("anchoring audit lane %s failed", self._lane)

    async def _anchor_lane(self, db: Connection) -> None:
        """Writes this lane's committed head into the anchor chain, unless it is anchored already."""
        head = self._lane_head
        if head is None or head[0] <= self._anchored_position or head[2] is None:
            return
        await self._append_anchor(db, self._lane_number(), head[0], head[1], head[2])
        self._anchored_position, self._anchored_at = head[0], time.monotonic()

    async def _append_anchor(self, db: Connection, lane: int, position: int, lane_hash: str, at: dt.datetime) -> None:
        """One anchor, chained onto the last under the anchor chain's lock (all workers share it,
        once a second each: it is part of :attr:`serial_seconds`)."""
        started = time.perf_counter()
        async with db.transaction():
            await db.execute(_Sql.anchor_lock, self._anchor_lock_key)
            last = await db.fetchrow(_Sql.anchor_last)  # after the lock: it reads the last one committed
            sequence, previous = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
            when = _aware(at)
            digest = anchor_hash(previous, lane, position, lane_hash, when)
            await db.execute(_Sql.anchor_insert, sequence, when, lane, position, lane_hash, previous, digest)
        self._count_serial(started)

    async def lane_anchors(self) -> AsyncIterator[LaneAnchor]:
        """The anchor chain in order (empty for a store from before lanes)."""
        if self._schema_version < _LANES_VERSION:
            return
        async for row in self._pages(_Sql.anchor_page, 0):
            sequence, at, lane, position, lane_hash, previous_hash, digest = row
            yield LaneAnchor(sequence, NATIVE_TIMES.parse_time(at), lane, position, lane_hash, previous_hash, digest)

    def _discard_writer_connection(self) -> None:
        """After a failed group the connection's state is unknown (asyncpg may be mid-protocol):
        it is closed at once, and the next group connects afresh."""
        db = self._writer_db
        if db is not None and not db.is_closed():
            db.terminate()

    async def _writer_connection(self) -> Connection:
        """The writer's connection, reconnected if it was lost or discarded (the group then in flight failed)."""
        db = self._writer_db
        if db is None:
            raise StoreNotOpenError(f"{self!r} is not open")
        if db.is_closed():
            db = self._writer_db = await self._connect({"search_path": f'"{self._location.schema}"'})
            await self._claim_lane(db)  # the lane's lock went with the lost connection
        return db


# --- opening: schema and migrations ---------------------------------------------------------


async def _migrate(db: Connection, location: PostgresLocation) -> None:
    """Creates the schema if absent and applies the missing migrations in order.

    Under a session advisory lock keyed on the schema: a second worker opening at the same
    moment waits, then finds the migrations applied. Each step commits with its
    ``schema_migrations`` row, so a step is either wholly applied or not at all.
    """
    key = _lock_key("migrate", location.schema)
    await db.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await db.execute(f'CREATE SCHEMA IF NOT EXISTS "{location.schema}"')
        await db.execute(_MigrationsSql.create)
        current = int(await db.fetchval(_MigrationsSql.current))
        _refuse_newer(current, location)
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            async with db.transaction():
                # one round trip per step: a script of statements (no parameters) runs as one simple query
                await db.execute(";\n".join(migration.statements))
                await db.execute(_MigrationsSql.insert, migration.version)
    finally:
        await db.execute("SELECT pg_advisory_unlock($1)", key)


async def _check_existing_schema(db: Connection, location: PostgresLocation) -> int:
    """For a read-only open: the schema must hold a gateway store this build can read."""
    if not await db.fetchval(_MigrationsSql.exists):
        raise PostgresStoreMissing(f"no gateway store at {location.describe()}")
    current = int(await db.fetchval(_MigrationsSql.current))
    if current == 0:
        raise PostgresStoreMissing(f"no gateway store at {location.describe()} (no migration applied)")
    _refuse_newer(current, location)
    return current


def _refuse_newer(current: int, location: PostgresLocation) -> None:
    if current > SCHEMA_VERSION:
        raise StoreSchemaError(
            f"store schema version {current} at {location.describe()}, this build knows {SCHEMA_VERSION}"
        )

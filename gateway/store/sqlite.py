"""The embedded default store: :class:`gateway.store.base.Store` on one SQLite file.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so a commit returns
only once the WAL has been fsynced; an acknowledged decision survives a power
cut, not just a crash of the process.

Atomicity across workers: every read-then-write runs inside ``BEGIN IMMEDIATE``,
which takes SQLite's write lock *before* the read. Two connections (two
``SqliteStore`` objects, or two processes) therefore cannot both pass the replay
check for one counter, nor both see an ADT count one below the threshold.
One ``SqliteStore`` has one connection; an :class:`asyncio.Lock` keeps two
coroutines from interleaving statements on it (one's uncommitted rows would be
visible to the other). aiosqlite runs every statement on its own thread, so
the event loop never waits on the disk.

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
import dataclasses
import datetime as dt
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self

import aiosqlite

from gateway.codes import ResponseCode
from gateway.eui64 import Eui64
from gateway.store.audit import (
    AuditRecordUnreadable,
    canonical_json,
    chain_hash,
    parse_utc_text,
    utc_text,
)
from gateway.store.base import (
    GENESIS_HASH,
    Admission,
    AdmissionRequest,
    AdmissionResult,
    AuditEntry,
    AuditRecord,
    DirectiveRecord,
    QuarantinedRequest,
    QuarantineStatus,
)

SCHEMA_VERSION: Final = 1
"""Bumped by the first migration; :meth:`SqliteStore.open` refuses a file from a newer build."""

MAX_COUNTER: Final = (1 << 64) - 1
_COUNTER_DIGITS: Final = 20
_LOCKED_RETRY_SECONDS: Final = 0.01
_PAGE_SIZE: Final = 500
"""Rows per query when streaming a log, so no lock is held while the caller consumes it."""

_OUTCOME_CODES: Final[Mapping[Admission, str]] = MappingProxyType(
    {
        Admission.ACCEPTED: ResponseCode.I99.value,
        Admission.REPLAY: ResponseCode.E40.value,
        Admission.QUARANTINED: ResponseCode.E43.value,
    }
)

Row = Sequence[Any]


class StoreSchemaError(RuntimeError):
    """The file holds a schema this build does not know (newer, or not a gateway store)."""


class StoreNotOpenError(RuntimeError):
    """A store method was called before :meth:`SqliteStore.open` or after :meth:`SqliteStore.close`."""


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
    upsert: Final = """INSERT INTO replay_counters (originator, target, last_counter) VALUES (?, ?, ?)
        ON CONFLICT (originator, target) DO UPDATE SET last_counter = excluded.last_counter"""


class _AdtEventsSql:
    create: Final = (
        "CREATE TABLE adt_events (user_id TEXT NOT NULL, srv TEXT NOT NULL, at TEXT NOT NULL)",
        "CREATE INDEX adt_events_window ON adt_events (user_id, srv, at)",
    )
    prune: Final = "DELETE FROM adt_events WHERE user_id = ? AND srv = ? AND at <= ?"
    count_after: Final = "SELECT count(*) FROM adt_events WHERE user_id = ? AND srv = ? AND at > ?"
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


_SCHEMA: Final = (
    *_SchemaVersionSql.create,
    *_AuditSql.create,
    *_DirectivesSql.create,
    *_ReplayCountersSql.create,
    *_AdtEventsSql.create,
    *_QuarantineSql.create,
)


# --- row <-> record ---------------------------------------------------------------------


def _counter_text(counter: int) -> str:
    return f"{counter:0{_COUNTER_DIGITS}d}"


def _audit_columns(entry: AuditEntry) -> tuple[str, ...]:
    return (
        utc_text(entry.at),
        entry.kind,
        entry.actor,
        entry.subject,
        entry.outcome,
        entry.reason,
        canonical_json(entry.detail),
    )


def _audit_entry(columns: Row) -> AuditEntry:
    at, kind, actor, subject, outcome, reason, detail = columns
    return AuditEntry(parse_utc_text(at), kind, actor, subject, outcome, reason, json.loads(detail))


def _audit_record(row: Row) -> AuditRecord:
    """Decodes a row; an undecodable one is reported as such, since only tampering makes one."""
    sequence = row[0]
    try:
        return AuditRecord(sequence, _audit_entry(row[1:8]), row[8], row[9])
    except (TypeError, ValueError) as exc:
        raise AuditRecordUnreadable(sequence, str(exc)) from exc


def _directive_columns(record: DirectiveRecord) -> tuple[Any, ...]:
    return (
        record.directive_id,
        record.actor,
        record.name,
        canonical_json(record.arguments),
        utc_text(record.decided_at),
        int(record.accepted),
        record.reason,
    )


def _directive_record(row: Row) -> DirectiveRecord:
    sequence, directive_id, actor, name, arguments, decided_at, accepted, reason = row
    return DirectiveRecord(
        sequence, directive_id, actor, name, json.loads(arguments), parse_utc_text(decided_at), bool(accepted), reason
    )


def _quarantined_request(row: Row) -> QuarantinedRequest:
    event_ref, request_id, user_id, srv, raw, quarantined_at, status = row
    return QuarantinedRequest(
        event_ref,
        request_id,
        Eui64.parse(user_id),
        srv,
        bytes(raw),
        parse_utc_text(quarantined_at),
        QuarantineStatus(status),
    )


# --- statements run inside a transaction ------------------------------------------------


@contextlib.asynccontextmanager
async def _immediate(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: committed if the body returns, rolled back if it raises.

    BEGIN sits inside the ``try``: a task cancelled while BEGIN waits for another
    writer's lock still has that BEGIN queued on the connection's thread, and it
    may succeed after the cancellation; the ROLLBACK queued behind it ends it.
    """
    try:
        await db.execute("BEGIN IMMEDIATE")
        yield db
    except BaseException:
        await _rollback(db)
        raise
    await db.execute("COMMIT")


async def _rollback(db: aiosqlite.Connection) -> None:
    # Issued unconditionally: whether the queued BEGIN succeeded is only known on the
    # connection's thread. "No transaction is active" means it did not.
    with contextlib.suppress(sqlite3.OperationalError):
        await db.execute("ROLLBACK")


async def _fetch_one(db: aiosqlite.Connection, sql: str, parameters: Sequence[Any]) -> Row | None:
    async with db.execute(sql, parameters) as cursor:
        return await cursor.fetchone()


async def _fetch_all(db: aiosqlite.Connection, sql: str, parameters: Sequence[Any]) -> list[Row]:
    async with db.execute(sql, parameters) as cursor:
        return list(await cursor.fetchall())


async def _insert(db: aiosqlite.Connection, sql: str, parameters: Sequence[Any]) -> int:
    async with db.execute(sql, parameters) as cursor:
        if cursor.lastrowid is None:
            raise RuntimeError("SQLite returned no row id for an INSERT")
        return cursor.lastrowid


async def _append_audit(db: aiosqlite.Connection, entry: AuditEntry) -> AuditRecord:
    """Chains ``entry`` onto the last stored hash; the caller's transaction makes read and write one step."""
    columns = _audit_columns(entry)
    stored_entry = _audit_entry(columns)  # what a reader will decode, so the hash matches it
    last = await _fetch_one(db, _AuditSql.last, ())
    sequence, previous_hash = (1, GENESIS_HASH) if last is None else (last[0] + 1, last[1])
    digest = chain_hash(previous_hash, stored_entry)
    await db.execute(_AuditSql.insert, (sequence, *columns, previous_hash, digest))
    return AuditRecord(sequence, stored_entry, previous_hash, digest)


async def _last_counter(db: aiosqlite.Connection, originator: Eui64, target: Eui64) -> int | None:
    row = await _fetch_one(db, _ReplayCountersSql.select, (str(originator), str(target)))
    return None if row is None else int(row[0])


async def _consume_counter(db: aiosqlite.Connection, request: AdmissionRequest) -> None:
    parameters = (str(request.originator), str(request.target), _counter_text(request.counter))
    await db.execute(_ReplayCountersSql.upsert, parameters)


async def _window_count(
    db: aiosqlite.Connection, request: AdmissionRequest, window: dt.timedelta, retention: dt.timedelta
) -> int:
    """Admissions of this user and SRV in ``(at - window, ...)``, pruning what no window can see."""
    key = (str(request.user_id), request.service_reference_variant)
    await db.execute(_AdtEventsSql.prune, (*key, utc_text(request.at - max(window, retention))))
    row = await _fetch_one(db, _AdtEventsSql.count_after, (*key, utc_text(request.at - window)))
    return 0 if row is None else int(row[0])


async def _count_in_window(db: aiosqlite.Connection, request: AdmissionRequest) -> None:
    key = (str(request.user_id), request.service_reference_variant)
    await db.execute(_AdtEventsSql.insert, (*key, utc_text(request.at)))


async def _hold(db: aiosqlite.Connection, request: AdmissionRequest) -> int:
    return await _insert(
        db,
        _QuarantineSql.insert,
        (
            request.request_id,
            str(request.user_id),
            request.service_reference_variant,
            request.raw_request,
            utc_text(request.at),
        ),
    )


def _with_event_ref(entry: AuditEntry, outcome: str, event_ref: int | None) -> AuditEntry:
    detail = dict(entry.detail) if event_ref is None else {**entry.detail, "quarantine_event_ref": event_ref}
    return dataclasses.replace(entry, outcome=outcome, detail=detail)


def _adt_limit(request: AdmissionRequest) -> tuple[dt.timedelta, int] | None:
    """(window, threshold) when a threshold applies; both or neither must be set."""
    window, threshold = request.adt_window_seconds, request.adt_threshold
    if window is None and threshold is None:
        return None
    if window is None or threshold is None:
        raise ValueError("adt_window_seconds and adt_threshold are set together or not at all")
    if window <= 0 or threshold < 0:
        raise ValueError(f"ADT window must be positive and threshold not negative ({window}, {threshold})")
    return dt.timedelta(seconds=window), threshold


def _check_counter(counter: int) -> None:
    if not 0 <= counter <= MAX_COUNTER:
        raise ValueError(f"RequestID counter out of range 0..2^64-1: {counter}")


async def _decide(db: aiosqlite.Connection, request: AdmissionRequest, retention: dt.timedelta) -> AdmissionResult:
    """The body of :meth:`SqliteStore.admit`, inside its write transaction."""
    limit = _adt_limit(request)
    last = await _last_counter(db, request.originator, request.target)
    if last is not None and request.counter <= last:
        return await _decided(db, request, Admission.REPLAY, last, None)
    await _consume_counter(db, request)
    if limit is not None:
        window, threshold = limit
        if await _window_count(db, request, window, retention) >= threshold:
            return await _decided(db, request, Admission.QUARANTINED, request.counter, await _hold(db, request))
        await _count_in_window(db, request)
    return await _decided(db, request, Admission.ACCEPTED, request.counter, None)


async def _decided(
    db: aiosqlite.Connection, request: AdmissionRequest, admission: Admission, last: int, event_ref: int | None
) -> AdmissionResult:
    entry = _with_event_ref(request.audit, _OUTCOME_CODES[admission], event_ref)
    audit = await _append_audit(db, entry)
    return AdmissionResult(admission, quarantine_event_ref=event_ref, last_counter=last, audit_sequence=audit.sequence)


async def _settle(
    db: aiosqlite.Connection, event_ref: int, user_id: Eui64, status: QuarantineStatus, audit: AuditEntry
) -> QuarantinedRequest | None:
    row = await _fetch_one(db, _QuarantineSql.held, (event_ref, str(user_id)))
    if row is None:
        return None
    await db.execute(_QuarantineSql.settle, (status.value, utc_text(audit.at), event_ref))
    await _append_audit(db, _with_event_ref(audit, audit.outcome, event_ref))
    return dataclasses.replace(_quarantined_request(row), status=status)


async def _store_directive(
    db: aiosqlite.Connection, record: DirectiveRecord, audit: AuditEntry
) -> DirectiveRecord:
    existing = await _fetch_one(db, _DirectivesSql.by_id, (record.directive_id,))
    if existing is not None:
        return _directive_record(existing)
    columns = _directive_columns(record)
    audit_record = await _append_audit(db, audit)
    sequence = await _insert(db, _DirectivesSql.insert, (*columns, audit_record.sequence))
    return _directive_record((sequence, *columns))


# --- opening ----------------------------------------------------------------------------


async def _pragma(db: aiosqlite.Connection, statement: str) -> Any:
    row = await _fetch_one(db, f"PRAGMA {statement}", ())
    return None if row is None else row[0]


async def _enable_wal(db: aiosqlite.Connection, *, in_memory: bool, timeout: float) -> None:
    """Switches the file to WAL (a persistent setting), retrying while another connection holds a lock.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database
    is locked" at once rather than calling the busy handler, so two workers creating
    one file at the same moment would otherwise fail. Some filesystems refuse WAL
    without an error, so the resulting mode is checked.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            mode = await _pragma(db, "journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(_LOCKED_RETRY_SECONDS)
    if mode != ("memory" if in_memory else "wal"):
        raise StoreSchemaError(f"SQLite refused WAL mode (journal_mode={mode!r})")


async def _configure(db: aiosqlite.Connection, *, in_memory: bool, read_only: bool, timeout: float) -> None:
    """Per-connection durability settings (synchronous and foreign_keys are not stored in the file)."""
    if not read_only:
        await _enable_wal(db, in_memory=in_memory, timeout=timeout)
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("PRAGMA foreign_keys = ON")


async def _schema_version(db: aiosqlite.Connection) -> int | None:
    exists = await _fetch_one(db, _SchemaVersionSql.exists, ())
    if exists is None or exists[0] == 0:
        return None
    row = await _fetch_one(db, _SchemaVersionSql.select, ())
    return None if row is None else int(row[0])


def _check_version(version: int | None) -> None:
    if version != SCHEMA_VERSION:
        raise StoreSchemaError(f"store schema version {version}, this build knows {SCHEMA_VERSION}")


async def _create_schema(db: aiosqlite.Connection) -> None:
    for statement in _SCHEMA:
        await db.execute(statement)
    await db.execute(_SchemaVersionSql.insert, (SCHEMA_VERSION,))


# --- the store --------------------------------------------------------------------------


class SqliteStore:
    """:class:`gateway.store.base.Store` on one SQLite file (or ``":memory:"`` for throwaway use)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        adt_retention: dt.timedelta = dt.timedelta(days=1),
        read_only: bool = False,
    ) -> None:
        """``busy_timeout``: seconds to wait for another connection's write transaction.

        ``adt_retention``: ADT rows are kept at least this long (and at least the
        request's window); set it to the largest window the deployment uses.
        ``read_only``: for ``audit verify``; no schema is created and nothing is
        written, so evidence in a tampered file is left as found.
        """
        self._path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._adt_retention = adt_retention
        self._read_only = read_only
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    @property
    def path(self) -> str:
        return self._path

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Connects, applies the durability pragmas and creates (or checks) the schema."""
        if self._db is not None:
            raise RuntimeError(f"{self!r} is already open")
        db = await aiosqlite.connect(self._location(), uri=True, isolation_level=None, timeout=self._busy_timeout)
        try:
            in_memory = self._path == ":memory:"
            await _configure(db, in_memory=in_memory, read_only=self._read_only, timeout=self._busy_timeout)
            await self._prepare_schema(db)
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        """Closes the connection (SQLite checkpoints the WAL when the last one closes); idempotent."""
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await db.close()

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
        async with self._lock:
            db = self._connection()
            return {name: await _pragma(db, name) for name in names}

    # --- directives ---------------------------------------------------------------------

    async def append_directive(self, record: DirectiveRecord, audit: AuditEntry) -> DirectiveRecord:
        """Stores the directive and its audit record together; a known directive_id returns the stored one
        and records nothing, so a retried submission is idempotent."""
        async with self._write() as db:
            return await _store_directive(db, record, audit)

    async def find_directive(self, directive_id: str) -> DirectiveRecord | None:
        rows = await self._read(_DirectivesSql.by_id, (directive_id,))
        return _directive_record(rows[0]) if rows else None

    async def directives(self) -> AsyncIterator[DirectiveRecord]:
        """Every directive in sequence order, read a page at a time."""
        async for row in self._pages(_DirectivesSql.page):
            yield _directive_record(row)

    # --- requests -----------------------------------------------------------------------

    async def admit(self, request: AdmissionRequest) -> AdmissionResult:
        """Replay check-and-set, ADT count, quarantine and audit in one write transaction.

        ``last_counter`` in the result is the counter stored after the decision: the
        earlier one for a REPLAY, this request's otherwise.
        """
        _check_counter(request.counter)
        _adt_limit(request)  # reject a malformed request before taking the write lock
        async with self._write() as db:
            return await _decide(db, request, self._adt_retention)

    async def last_counter(self, originator: Eui64, target: Eui64) -> int | None:
        rows = await self._read(_ReplayCountersSql.select, (str(originator), str(target)))
        return int(rows[0][0]) if rows else None

    async def quarantined(self, user_id: Eui64) -> list[QuarantinedRequest]:
        """Every request ever quarantined for that user, any status, in event-reference order."""
        rows = await self._read(_QuarantineSql.by_user, (str(user_id),))
        return [_quarantined_request(row) for row in rows]

    async def settle_quarantine(
        self, event_ref: int, user_id: Eui64, status: QuarantineStatus, audit: AuditEntry
    ) -> QuarantinedRequest | None:
        """Marks a HELD request of that user RELEASED or DELETED, with its audit record; None if there
        is none (another user's, already settled, unknown), and then nothing is recorded."""
        if status is QuarantineStatus.HELD:
            raise ValueError("a quarantined request is settled as RELEASED or DELETED")
        async with self._write() as db:
            return await _settle(db, event_ref, user_id, status, audit)

    # --- audit --------------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        async with self._write() as db:
            return await _append_audit(db, entry)

    async def audit_records(self) -> AsyncIterator[AuditRecord]:
        """The audit log in sequence order; raises :class:`AuditRecordUnreadable` at an undecodable row."""
        async for row in self._pages(_AuditSql.page):
            yield _audit_record(row)

    # --- plumbing -----------------------------------------------------------------------

    def _location(self) -> str:
        if self._path == ":memory:":
            return ":memory:"
        uri = Path(self._path).resolve().as_uri()
        return uri + "?mode=ro" if self._read_only else uri

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreNotOpenError(f"{self!r} is not open")
        return self._db

    async def _prepare_schema(self, db: aiosqlite.Connection) -> None:
        if self._read_only:
            _check_version(await _schema_version(db))
            return
        async with _immediate(db):  # two workers may create the file at once
            version = await _schema_version(db)
            if version is None:
                await _create_schema(db)
            else:
                _check_version(version)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction on this store's connection, one coroutine at a time."""
        async with self._lock, _immediate(self._connection()) as db:
            yield db

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Row]:
        async with self._lock:
            return await _fetch_all(self._connection(), sql, parameters)

    async def _pages(self, sql: str) -> AsyncIterator[Row]:
        """Rows of a ``WHERE sequence > ? ... LIMIT ?`` query, keyed on the first column.

        The lock is taken per page, not across ``yield``, so a caller may use the
        store while it iterates.
        """
        after = 0
        while True:
            rows = await self._read(sql, (after, _PAGE_SIZE))
            for row in rows:
                yield row
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1][0]


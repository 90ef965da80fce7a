"""The store (issue #3): round trips, restart survival, admit() semantics, concurrency.

Every behavioural test takes the ``stores`` fixture, parametrised by backend
(STYLE 9): SQLite and PostgreSQL (issue #5, the real server) run the same tests.
SQLite-only facts (pragmas, the file's schema version, its locking) are tested on
``SqliteStore``; PostgreSQL-only ones are in ``test_store_postgresql.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.eui64 import Eui64
from gateway.store.audit import verify_chain
from gateway.store.base import (
    Admission,
    AdmissionRequest,
    AdmissionResult,
    AuditEntry,
    Delivery,
    DeliveryKind,
    DirectiveRecord,
    QuarantineAlert,
    QuarantineStatus,
    Store,
)
from gateway.store.base import StoreNotOpenError, StoreSchemaError, StoreUnavailable
from gateway.store.rules import MAX_COUNTER
from gateway.store.sqlite import SqliteStore
from tests.store_backends import SqliteOpener, StoreOpener, store_opener

UTC = dt.UTC
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WINDOW = 3600
SUPPLIER = Eui64.parse("90-B3-D5-1F-30-AA-00-01")
OTHER_USER = Eui64.parse("90-B3-D5-1F-30-AA-00-02")
METER = Eui64.parse("00-DB-12-34-56-78-90-A0")
OTHER_METER = Eui64.parse("00-DB-12-34-56-78-90-A1")


# --- builders --------------------------------------------------------------------------


def audit_entry(at: dt.datetime = T0, **changes: Any) -> AuditEntry:
    entry = AuditEntry(at, "request", str(SUPPLIER), "RQ-1", "", "passed static checks", {"srv": "1.6"})
    return dataclasses.replace(entry, **changes)


def admission(
    counter: int,
    *,
    at: dt.datetime = T0,
    originator: Eui64 = SUPPLIER,
    target: Eui64 = METER,
    user: Eui64 = SUPPLIER,
    srv: str = "1.6",
    threshold: int | None = None,
    window: int = WINDOW,
) -> AdmissionRequest:
    """A request that passed the static checks; ``threshold=None``: no ADT applies."""
    return AdmissionRequest(
        originator=originator,
        target=target,
        counter=counter,
        request_id=f"{originator}:{target}:{counter}",
        user_id=user,
        service_reference_variant=srv,
        at=at,
        adt_window_seconds=None if threshold is None else window,
        adt_threshold=threshold,
        raw_request=f"<Request>{counter}</Request>".encode() + b"\x00\xff",
        audit=audit_entry(at, subject=f"RQ-{counter}"),
    )


def directive(directive_id: str, *, accepted: bool = True) -> DirectiveRecord:
    return DirectiveRecord(
        sequence=0,
        directive_id=directive_id,
        actor="ofgem",
        name="appoint-solr",
        arguments={"mpids": ["AAAA", "BBBB"], "solr": "Supplier B", "effective": "2026-06-01T00:00:00.000000Z"},
        decided_at=T0,
        accepted=accepted,
        reason="" if accepted else "unknown party",
    )


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def stores(store_factory: StoreOpener) -> StoreOpener:
    """Opens stores on one fresh database of each backend, as separate workers or a restarted gateway would."""
    return store_factory


@pytest.fixture
async def sqlite_stores(tmp_path: Path) -> AsyncIterator[SqliteOpener]:
    """For the SQLite-only tests (the file itself, its pragmas and locks)."""
    opener = SqliteOpener(tmp_path / "store.db")
    yield opener
    await opener.close_all()


@pytest.fixture
async def store(stores: StoreOpener) -> Store:
    return await stores.open()


async def reopen(stores: StoreOpener, store: Store) -> Store:
    await store.close()
    return await stores.open()


async def audit_outcomes(store: Store) -> list[str]:
    return [record.entry.outcome async for record in store.audit_records()]


@contextlib.contextmanager
def raw_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """The file as anyone with access sees it (stdlib sqlite3, no store in between)."""
    connection = sqlite3.connect(path)
    try:
        yield connection
        connection.commit()
    finally:
        connection.close()


# --- opening ----------------------------------------------------------------------------


async def test_durability_pragmas_are_in_force(sqlite_stores: SqliteOpener) -> None:
    store = await sqlite_stores.open()
    pragmas = await store.pragmas()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 2  # FULL: the WAL is fsynced at every commit
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] > 0


async def test_schema_version_is_recorded(sqlite_stores: SqliteOpener) -> None:
    await (await sqlite_stores.open()).close()
    with raw_sqlite(sqlite_stores.path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


async def test_a_newer_schema_is_refused(sqlite_stores: SqliteOpener) -> None:
    await (await sqlite_stores.open()).close()
    with raw_sqlite(sqlite_stores.path) as db:
        db.execute("UPDATE schema_version SET version = 2")
    with pytest.raises(StoreSchemaError, match="version 2"):
        await sqlite_stores.open()


async def test_a_closed_store_refuses_work(store: Store) -> None:
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreNotOpenError):
        await store.last_counter(SUPPLIER, METER)


async def test_async_with_opens_and_closes(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        assert await store.last_counter(SUPPLIER, METER) is None
    with pytest.raises(StoreNotOpenError):
        await store.last_counter(SUPPLIER, METER)


async def test_two_stores_can_create_one_database_at_once(stores: StoreOpener) -> None:
    first, second = await asyncio.gather(stores.open(), stores.open())
    await first.append_audit(audit_entry())
    assert (await verify_chain(second.audit_records())).records == 1


# --- directives -------------------------------------------------------------------------


async def test_directives_round_trip_in_order_and_survive_reopen(stores: StoreOpener, store: Store) -> None:
    first = await store.append_directive(directive("D-1"), audit_entry(kind="directive", outcome="accepted"))
    second = await store.append_directive(directive("D-2", accepted=False), audit_entry(kind="directive"))
    assert (first.sequence, second.sequence) == (1, 2)
    assert first == dataclasses.replace(directive("D-1"), sequence=1)
    assert await store.find_directive("D-2") == second
    assert await store.find_directive("D-3") is None

    store = await reopen(stores, store)
    assert [d async for d in store.directives()] == [first, second]
    assert len(await audit_outcomes(store)) == 2


async def test_a_directive_id_is_stored_once(store: Store) -> None:
    stored = await store.append_directive(directive("D-1"), audit_entry(kind="directive"))
    again = await store.append_directive(dataclasses.replace(directive("D-1"), name="other"), audit_entry())
    assert again == stored
    assert len([d async for d in store.directives()]) == 1
    assert len(await audit_outcomes(store)) == 1  # a retry records nothing new


async def test_directives_stream_over_whole_pages(store: Store) -> None:
    # Appended 100 at a time (grouped commits keep this quick); the order within a batch is the
    # store's, so the stream is checked for every sequence in order and every id exactly once.
    for batch in range(10):
        appends = (store.append_directive(directive(f"D-{100 * batch + n}"), audit_entry()) for n in range(1, 101))
        await asyncio.gather(*appends)
    streamed = [d async for d in store.directives()]
    assert [d.sequence for d in streamed] == list(range(1, 1001))
    assert sorted(d.directive_id for d in streamed) == sorted(f"D-{n}" for n in range(1, 1001))
    after = [d.sequence async for d in store.directives(after_sequence=499)]
    assert after == list(range(500, 1001))  # a worker catching up reads only what it has not seen


# --- replay counters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(5, Admission.REPLAY, id="equal"),
        pytest.param(4, Admission.REPLAY, id="lower"),
        pytest.param(0, Admission.REPLAY, id="zero"),
        pytest.param(6, Admission.ACCEPTED, id="plus-one"),
    ],
)
async def test_replay_is_a_counter_not_strictly_greater(store: Store, second: int, expected: Admission) -> None:
    assert (await store.admit(admission(5))).admission is Admission.ACCEPTED
    result = await store.admit(admission(second))
    assert result.admission is expected
    assert result.last_counter == (5 if expected is Admission.REPLAY else second)


async def test_counters_survive_reopen(stores: StoreOpener, store: Store) -> None:
    assert await store.last_counter(SUPPLIER, METER) is None
    await store.admit(admission(41))
    store = await reopen(stores, store)
    assert await store.last_counter(SUPPLIER, METER) == 41
    assert (await store.admit(admission(41))).admission is Admission.REPLAY


async def test_counters_are_per_originator_and_target(store: Store) -> None:
    await store.admit(admission(9))
    assert (await store.admit(admission(1, target=OTHER_METER))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(1, originator=OTHER_USER))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(9))).admission is Admission.REPLAY


async def test_counters_cover_the_unsigned_64_bit_range(stores: StoreOpener, store: Store) -> None:
    for counter in (9, 2**63 - 1, 2**63, 2**63 + 1, MAX_COUNTER):
        assert (await store.admit(admission(counter))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(MAX_COUNTER))).admission is Admission.REPLAY
    assert (await store.admit(admission(10**19))).admission is Admission.REPLAY  # 20 digits, below the max
    store = await reopen(stores, store)
    assert await store.last_counter(SUPPLIER, METER) == MAX_COUNTER
    stored = await stores.query("SELECT last_counter FROM replay_counters")
    assert [str(row[0]) for row in stored] == ["18446744073709551615"]  # all 20 digits, not a float


@pytest.mark.parametrize("counter", [-1, MAX_COUNTER + 1], ids=["negative", "2^64"])
async def test_counters_outside_64_bits_are_refused(store: Store, counter: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        await store.admit(admission(counter))
    assert await store.last_counter(SUPPLIER, METER) is None


async def test_a_failed_admission_consumes_nothing(store: Store) -> None:
    """The counter write and the audit write are one transaction: a failing audit undoes the counter."""
    request = admission(7)
    broken = dataclasses.replace(request, audit=audit_entry(detail={"not json": object()}))
    with pytest.raises(TypeError):
        await store.admit(broken)
    assert await store.last_counter(SUPPLIER, METER) is None
    assert (await store.admit(request)).admission is Admission.ACCEPTED


# --- admit(): audit --------------------------------------------------------------------


async def test_admit_records_each_decision_with_its_code(store: Store) -> None:
    accepted = await store.admit(admission(1, threshold=1))
    replay = await store.admit(admission(1, threshold=1))
    quarantined = await store.admit(admission(2, threshold=1))
    assert [r.admission for r in (accepted, replay, quarantined)] == [
        Admission.ACCEPTED,
        Admission.REPLAY,
        Admission.QUARANTINED,
    ]
    records = [record async for record in store.audit_records()]
    assert [r.entry.outcome for r in records] == ["I99", "E40", "E43"]
    assert [r.sequence for r in records] == [accepted.audit_sequence, replay.audit_sequence, quarantined.audit_sequence]
    assert records[2].entry.detail == {"srv": "1.6", "quarantine_event_ref": quarantined.quarantine_event_ref}
    assert records[0].entry.detail == {"srv": "1.6"}


# --- admit(): ADT ----------------------------------------------------------------------


async def test_threshold_k_accepts_k_then_quarantines(store: Store) -> None:
    k = 4
    results = [await store.admit(admission(n, threshold=k, at=T0 + dt.timedelta(seconds=n))) for n in range(1, k + 3)]
    assert [r.admission for r in results] == [Admission.ACCEPTED] * k + [Admission.QUARANTINED] * 2
    first_ref = results[k].quarantine_event_ref
    assert first_ref is not None
    assert results[k + 1].quarantine_event_ref == first_ref + 1
    assert await store.last_counter(SUPPLIER, METER) == k + 2  # a quarantined request consumes its counter


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        pytest.param(-1, Admission.QUARANTINED, id="window-minus-1s"),
        pytest.param(0, Admission.ACCEPTED, id="exactly-window"),
        pytest.param(+1, Admission.ACCEPTED, id="window-plus-1s"),
    ],
)
async def test_window_edge_is_exclusive(store: Store, offset: int, expected: Admission) -> None:
    """An admission exactly ``window`` seconds old no longer counts: the window is (at - window, at]."""
    for n in (1, 2):
        assert (await store.admit(admission(n, threshold=2))).admission is Admission.ACCEPTED
    later = T0 + dt.timedelta(seconds=WINDOW + offset)
    assert (await store.admit(admission(3, threshold=2, at=later))).admission is expected


async def test_admissions_decided_together_count_their_window_as_if_one_by_one(stores: StoreOpener) -> None:
    """Admissions sent at once share one transaction; their ADT counts, as the window slides past
    earlier admissions (some leaving it exactly at its edge), are those of the same admissions
    decided one transaction each."""
    steps = [0, 100, 900, 1000, 1700, 3600, 3601, 4500, 4600, 5000, 7300, 7300, 7301, 9000, 10800, 10900]

    def requests(user: Eui64) -> list[AdmissionRequest]:  # each run its own user: its own window and counters
        return [
            admission(counter, at=T0 + dt.timedelta(seconds=step), threshold=3, user=user, originator=user,
                      target=METER if counter % 2 else OTHER_METER)
            for counter, step in enumerate(steps, start=2)
        ]

    store = await stores.open()
    at_once = await asyncio.gather(*(store.admit(request) for request in requests(SUPPLIER)))
    one_by_one = [await store.admit(request) for request in requests(OTHER_USER)]
    assert [r.admission for r in at_once] == [r.admission for r in one_by_one]
    assert {Admission.ACCEPTED, Admission.QUARANTINED} <= {r.admission for r in one_by_one}  # the window matters


async def test_window_counts_accepted_requests_only(store: Store) -> None:
    for n in (1, 2):
        await store.admit(admission(n, threshold=2))
    for n in (3, 4, 5):  # quarantined ones do not extend the window
        await store.admit(admission(n, threshold=2, at=T0 + dt.timedelta(seconds=10 * n)))
    edge = T0 + dt.timedelta(seconds=WINDOW)
    assert (await store.admit(admission(6, threshold=2, at=edge))).admission is Admission.ACCEPTED


async def test_windows_are_per_user_and_per_srv(store: Store) -> None:
    await store.admit(admission(1, threshold=1))
    assert (await store.admit(admission(2, threshold=1, srv="4.1"))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(3, threshold=1, user=OTHER_USER))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(4, threshold=1))).admission is Admission.QUARANTINED


async def test_without_a_threshold_nothing_is_counted(store: Store) -> None:
    for n in range(1, 6):
        assert (await store.admit(admission(n))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(6, threshold=1))).admission is Admission.ACCEPTED


async def test_adt_windows_survive_reopen(stores: StoreOpener, store: Store) -> None:
    await store.admit(admission(1, threshold=1))
    store = await reopen(stores, store)
    assert (await store.admit(admission(2, threshold=1))).admission is Admission.QUARANTINED


async def test_rows_no_window_can_see_are_pruned(stores: StoreOpener) -> None:
    store = await stores.open(adt_retention=dt.timedelta(seconds=WINDOW))
    for n in range(1, 4):
        await store.admit(admission(n, threshold=10, at=T0 + dt.timedelta(seconds=n)))
    later = T0 + dt.timedelta(seconds=WINDOW + 2)  # rows at T0+1 and T0+2 are out of every window
    await store.admit(admission(4, threshold=10, at=later))
    assert await stores.query("SELECT count(*) FROM adt_events") == [(2,)]


async def test_a_short_retention_never_prunes_inside_the_window(stores: StoreOpener) -> None:
    store = await stores.open(adt_retention=dt.timedelta(seconds=1))
    for n in (1, 2):
        await store.admit(admission(n, threshold=2, at=T0 + dt.timedelta(seconds=10 * n)))
    later = T0 + dt.timedelta(seconds=30)
    assert (await store.admit(admission(3, threshold=2, at=later))).admission is Admission.QUARANTINED


async def test_admissions_another_worker_made_count_in_the_window(stores: StoreOpener) -> None:
    """A store carries its ADT counts from one transaction to the next (SQLite), but not past a
    commit of another connection: the other worker's admission is counted."""
    store, other_worker = await stores.open(), await stores.open()
    for n in (1, 2):
        assert (await store.admit(admission(n, threshold=4))).admission is Admission.ACCEPTED
    assert (await other_worker.admit(admission(3, threshold=4))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(4, threshold=4))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(5, threshold=4))).admission is Admission.QUARANTINED


async def test_a_rolled_back_group_leaves_no_admission_counted(sqlite_stores: SqliteOpener) -> None:
    """A group that fails is rolled back and its calls run again one by one: the admission the
    rolled-back group counted is counted once, by the transaction that committed it."""
    store = await sqlite_stores.open()
    unserialisable = dataclasses.replace(audit_entry(), detail={"not json": object()})
    admitted, failed = await asyncio.gather(
        store.admit(admission(1, threshold=2)), store.append_audit(unserialisable), return_exceptions=True
    )
    assert isinstance(failed, TypeError) and not isinstance(admitted, BaseException)
    assert admitted.admission is Admission.ACCEPTED
    assert (await store.admit(admission(2, threshold=2))).admission is Admission.ACCEPTED
    assert (await store.admit(admission(3, threshold=2))).admission is Admission.QUARANTINED


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(dataclasses.replace(admission(1, threshold=2), adt_window_seconds=None), id="threshold-only"),
        pytest.param(dataclasses.replace(admission(1), adt_window_seconds=60), id="window-only"),
        pytest.param(admission(1, threshold=2, window=0), id="zero-window"),
        pytest.param(admission(1, threshold=-1), id="negative-threshold"),
    ],
)
async def test_inconsistent_adt_settings_are_refused(store: Store, request_: AdmissionRequest) -> None:
    with pytest.raises(ValueError):
        await store.admit(request_)


# --- quarantine -------------------------------------------------------------------------


async def quarantine_one(store: Store, counter: int = 2, user: Eui64 = SUPPLIER) -> AdmissionResult:
    await store.admit(admission(counter - 1, threshold=1, user=user))
    result = await store.admit(admission(counter, threshold=1, user=user))
    assert result.admission is Admission.QUARANTINED
    return result


async def test_quarantine_keeps_the_bytes_and_survives_reopen(stores: StoreOpener, store: Store) -> None:
    result = await quarantine_one(store)
    store = await reopen(stores, store)
    (held,) = await store.quarantined(SUPPLIER)
    assert held.event_ref == result.quarantine_event_ref
    assert held.raw_request == admission(2).raw_request
    assert (held.request_id, held.user_id, held.service_reference_variant) == (admission(2).request_id, SUPPLIER, "1.6")
    assert held.quarantined_at == T0
    assert held.status is QuarantineStatus.HELD
    assert await store.quarantined(OTHER_USER) == []


@pytest.mark.parametrize("status", [QuarantineStatus.RELEASED, QuarantineStatus.DELETED])
async def test_only_the_owner_settles_and_only_once(
    stores: StoreOpener, store: Store, status: QuarantineStatus
) -> None:
    ref = (await quarantine_one(store)).quarantine_event_ref
    assert ref is not None
    settle_audit = audit_entry(kind="quarantine-release", outcome="accepted")
    assert await store.settle_quarantine(ref, OTHER_USER, status, settle_audit) is None
    settled = await store.settle_quarantine(ref, SUPPLIER, status, settle_audit)
    assert settled is not None and settled.status is status and settled.event_ref == ref
    assert await store.settle_quarantine(ref, SUPPLIER, QuarantineStatus.RELEASED, settle_audit) is None
    assert await store.settle_quarantine(ref, SUPPLIER, QuarantineStatus.DELETED, settle_audit) is None
    assert await store.settle_quarantine(ref + 1, SUPPLIER, status, settle_audit) is None

    store = await reopen(stores, store)
    assert [q.status for q in await store.quarantined(SUPPLIER)] == [status]
    records = [r async for r in store.audit_records()]
    assert [r.entry.kind for r in records] == ["request", "request", "quarantine-release"]  # refusals record nothing
    assert records[-1].entry.detail["quarantine_event_ref"] == ref


async def test_a_quarantined_requests_alert_is_due_until_one_worker_queues_it(stores: StoreOpener, store: Store) -> None:
    """The E43 answer promises an AD1 alert: admit marks it due in the quarantining transaction, the
    mark survives a restart, and clearing it queues the alert exactly once, whichever worker asks."""
    ref = (await quarantine_one(store)).quarantine_event_ref
    assert ref is not None
    store = await reopen(stores, store)  # as if the gateway died right after answering E43
    other_worker = await stores.open()
    (due,) = await store.quarantine_alerts_due()
    assert (due.event_ref, due.request_id, due.user_id) == (ref, admission(2).request_id, SUPPLIER)
    alert = Delivery(SUPPLIER, "http://127.0.0.1:9/receive", b"<AD1/>", DeliveryKind.DCC_ALERT, "AD1-1", T0,
                     audit_entry(kind="dcc-alert", subject="AD1-1", outcome="AD1"))
    assert await store.record_quarantine_alert(ref, alert, None)
    assert not await other_worker.record_quarantine_alert(ref, alert, None)
    assert await store.quarantine_alerts_due() == [] and await other_worker.quarantine_alerts_due() == []
    queued = await store.due_deliveries(T0, 10)
    assert [(d.subject, d.kind) for d in queued] == [("AD1-1", DeliveryKind.DCC_ALERT)]
    outcomes = [r.entry.outcome async for r in store.audit_records()]
    assert outcomes.count("AD1") == 1

    # A user without a response URL gets the alert in the audit log only, also once.
    second = (await store.admit(admission(3, threshold=1))).quarantine_event_ref
    assert second is not None and [q.event_ref for q in await store.quarantine_alerts_due()] == [second]
    logged_only = audit_entry(kind="dcc-alert", subject="AD1-2", outcome="AD1")
    assert await other_worker.record_quarantine_alert(second, None, logged_only)
    assert not await store.record_quarantine_alert(second, None, logged_only)
    assert await store.quarantine_alerts_due() == []
    assert [r.entry.subject async for r in store.audit_records()].count("AD1-2") == 1
    assert len(await store.due_deliveries(T0, 10)) == 1


async def test_due_alerts_are_queued_as_a_batch_in_one_transaction(stores: StoreOpener, store: Store) -> None:
    """A batch of AD1 alerts: every mark cleared and every alert queued (or, without a URL, audited)
    together; an alert another worker queued meanwhile is skipped and not counted."""
    refs = [(await store.admit(admission(counter, threshold=0))).quarantine_event_ref for counter in (2, 3, 4)]
    assert None not in refs and [q.event_ref for q in await store.quarantine_alerts_due()] == refs
    other_worker = await stores.open()

    def alert(ref: int, *, url: bool = True) -> QuarantineAlert:
        audit = audit_entry(kind="dcc-alert", subject=f"AD1-{ref}", outcome="AD1")
        if not url:
            return QuarantineAlert(ref, None, audit)
        return QuarantineAlert(ref, Delivery(SUPPLIER, "http://127.0.0.1:9/receive", b"<AD1/>",
                                             DeliveryKind.DCC_ALERT, f"AD1-{ref}", T0, audit), None)

    assert await other_worker.record_quarantine_alert(refs[1], None, alert(refs[1], url=False).audit)
    assert await store.record_quarantine_alerts([alert(refs[0]), alert(refs[1]), alert(refs[2], url=False)]) == 2
    assert await store.record_quarantine_alerts([]) == 0
    assert await store.quarantine_alerts_due() == []
    assert [d.subject for d in await store.due_deliveries(T0, 10)] == [f"AD1-{refs[0]}"]
    subjects = [r.entry.subject async for r in store.audit_records() if r.entry.outcome == "AD1"]
    assert sorted(subjects) == sorted(f"AD1-{ref}" for ref in refs)  # each once
    assert (await verify_chain(store.audit_records())).ok


async def test_settling_as_held_is_refused(store: Store) -> None:
    ref = (await quarantine_one(store)).quarantine_event_ref
    assert ref is not None
    with pytest.raises(ValueError):
        await store.settle_quarantine(ref, SUPPLIER, QuarantineStatus.HELD, audit_entry())


# --- audit round trip -------------------------------------------------------------------


async def test_audit_round_trips_and_chains_across_reopen(stores: StoreOpener, store: Store) -> None:
    entry = audit_entry(
        at=dt.datetime(2026, 6, 1, 13, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        detail={"srv": "1.6", "user": SUPPLIER, "when": T0, "text": "Grüße ✓", "counter": MAX_COUNTER},
    )
    first = await store.append_audit(entry)
    assert first.entry.at == entry.at and first.entry.at.tzinfo == UTC
    assert first.entry.detail == {
        "srv": "1.6",
        "user": str(SUPPLIER),
        "when": "2026-06-01T12:00:00.000000Z",
        "text": "Grüße ✓",
        "counter": MAX_COUNTER,
    }
    store = await reopen(stores, store)
    second = await store.append_audit(audit_entry())
    assert second.previous_hash == first.hash
    assert [r async for r in store.audit_records()] == [first, second]
    report = await verify_chain(store.audit_records())
    assert (report.ok, report.records) == (True, 2)


async def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.append_audit(audit_entry(at=dt.datetime(2026, 1, 1)))


# --- concurrency: two workers on one file ----------------------------------------------


async def test_one_counter_is_accepted_once_across_workers(stores: StoreOpener) -> None:
    first, second = await stores.open(), await stores.open()
    tasks = [worker.admit(admission(7)) for _ in range(6) for worker in (first, second)]
    results = await asyncio.gather(*tasks)
    assert sorted(r.admission.value for r in results) == ["accepted"] + ["replay"] * 11
    assert (await verify_chain(first.audit_records())).records == 12


async def test_adt_threshold_holds_across_workers(stores: StoreOpener) -> None:
    k = 5
    first, second = await stores.open(), await stores.open()
    workers = (first, second)
    tasks = [workers[n % 2].admit(admission(n, threshold=k, target=Eui64(n))) for n in range(3 * k)]
    results = await asyncio.gather(*tasks)
    decisions = [r.admission for r in results]
    assert decisions.count(Admission.ACCEPTED) == k
    assert decisions.count(Admission.QUARANTINED) == 2 * k
    refs = [r.quarantine_event_ref for r in results if r.quarantine_event_ref is not None]
    assert len(set(refs)) == 2 * k
    report = await verify_chain(second.audit_records())
    assert (report.ok, report.records) == (True, 3 * k)


_WORKER_SCRIPT = """
import asyncio, json, sys, time
from pathlib import Path
from gateway.eui64 import Eui64
from gateway.store.factory import open_store
from tests.test_store import admission

async def main(url, start_at, worker):
    async with open_store(url, world_dir=Path(".")) as store:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        results = []
        for n in range(30):
            same = await store.admit(admission(1, target=Eui64(1000 + n)))
            adt = await store.admit(admission(1, threshold=10, target=Eui64(worker * 100 + n)))
            results.append([same.admission.value, adt.admission.value])
    print(json.dumps(results))

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""


async def run_worker(url: str, start_at: float, worker: int) -> list[list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WORKER_SCRIPT,
        url,
        str(start_at),
        str(worker),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    results: list[list[str]] = json.loads(stdout)
    return results


async def test_two_processes_share_counters_and_windows(stores: StoreOpener) -> None:
    await (await stores.open()).close()  # create the schema once, so both workers start on equal terms
    start_at = time.time() + 1.5
    one, two = await asyncio.gather(run_worker(stores.url, start_at, 1), run_worker(stores.url, start_at, 2))
    same = [pair[0] for pair in one + two]
    adt = [pair[1] for pair in one + two]
    assert same.count("accepted") == 30  # each of the 30 targets accepts counter 1 exactly once
    assert adt.count("accepted") == 10  # threshold 10 for one user and SRV, whichever process asks
    store = await stores.open(read_only=True)
    report = await verify_chain(store.audit_records())
    assert (report.ok, report.records) == (True, 120)


async def test_a_cancelled_admission_is_recorded_once_and_leaves_the_store_usable(
    sqlite_stores: SqliteOpener,
) -> None:
    """aiohttp cancels a handler whose client went away. A call already handed to the writer is not
    undone by that (its group commits for the callers that wait): it counts once, and nothing leaks.
    (The PostgreSQL twin holds the advisory write lock instead: test_store_postgresql.py.)"""
    store = await sqlite_stores.open()
    with contextlib.closing(sqlite3.connect(sqlite_stores.path, isolation_level=None)) as other_worker:
        other_worker.execute("BEGIN IMMEDIATE")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.admit(admission(1)), timeout=0.1)
        other_worker.execute("ROLLBACK")  # the other worker finishes after the cancellation
    assert (await store.admit(admission(1))).admission is Admission.REPLAY
    assert (await store.admit(admission(2))).admission is Admission.ACCEPTED
    assert [r.outcome for r in [r.entry async for r in store.audit_records()]] == ["I99", "E40", "I99"]
    assert (await verify_chain(store.audit_records())).ok


async def test_a_database_that_cannot_take_the_write_is_store_unavailable(sqlite_stores: SqliteOpener) -> None:
    """Another writer holding the database past the busy timeout is not a bug in the call: the caller
    gets StoreUnavailable (the gateway answers 503 to retry), nothing is stored, and the same call
    succeeds once the database is free. A wrong statement stays what it is."""
    store = await sqlite_stores.open(busy_timeout=0.2)
    with contextlib.closing(sqlite3.connect(sqlite_stores.path, isolation_level=None)) as other_worker:
        other_worker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="cannot write now") as raised:
            await store.admit(admission(1))
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        other_worker.execute("ROLLBACK")
    assert await store.last_counter(SUPPLIER, METER) is None
    assert (await store.admit(admission(1))).admission is Admission.ACCEPTED
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await store._write(lambda db: db.execute("SELECT * FROM no_such_table"))

# --- the store against a model ----------------------------------------------------------


Step = tuple[int, int, int, int, str, int, bool]
MODEL_WINDOW = 60
PRUNE_HARD = dt.timedelta(seconds=MODEL_WINDOW)
USERS = (SUPPLIER, OTHER_USER)
DEVICES = (METER, OTHER_METER)

steps_strategy = st.lists(
    st.tuples(
        st.integers(0, 1),  # originator
        st.integers(0, 1),  # target
        st.integers(0, 6),  # counter
        st.integers(0, 1),  # user
        st.sampled_from(["1.6", "4.1"]),  # SRV
        st.sampled_from([0, 1, 29, 30, 59, 60, 61]),  # seconds after the previous step: near the edges
        st.booleans(),  # a threshold applies
    ),
    max_size=25,
)


def model_decisions(steps: list[Step], threshold: int) -> list[Admission]:
    """Replay and ADT as the Store docstring states them, with dicts and lists."""
    last: dict[tuple[int, int], int] = {}
    accepted_at: dict[tuple[int, str], list[dt.datetime]] = {}
    decisions, at = [], T0
    for originator, target, counter, user, srv, gap, limited in steps:
        at += dt.timedelta(seconds=gap)
        if (originator, target) in last and counter <= last[(originator, target)]:
            decisions.append(Admission.REPLAY)
            continue
        last[(originator, target)] = counter
        window = accepted_at.setdefault((user, srv), [])
        if limited and sum(t > at - dt.timedelta(seconds=MODEL_WINDOW) for t in window) >= threshold:
            decisions.append(Admission.QUARANTINED)
            continue
        if limited:
            window.append(at)
        decisions.append(Admission.ACCEPTED)
    return decisions


def step_request(step: Step, at: dt.datetime, threshold: int) -> AdmissionRequest:
    originator, target, counter, user, srv, _, limited = step
    return admission(
        counter,
        at=at,
        originator=USERS[originator],
        target=DEVICES[target],
        user=USERS[user],
        srv=srv,
        threshold=threshold if limited else None,
        window=MODEL_WINDOW,
    )


async def store_decisions(
    backend: str, steps: list[Step], threshold: int, reopen_after: int | None, retention: dt.timedelta
) -> list[Admission]:
    """Runs the steps on a fresh database, closing and reopening the store after step ``reopen_after``."""
    decisions, at = [], T0
    with tempfile.TemporaryDirectory() as directory:
        async with store_opener(backend, Path(directory)) as opener:
            store = await opener.open(adt_retention=retention)
            for index, step in enumerate(steps):
                at += dt.timedelta(seconds=step[5])
                decisions.append((await store.admit(step_request(step, at, threshold))).admission)
                if index == reopen_after:
                    await store.close()
                    store = await opener.open(adt_retention=retention)
            assert (await verify_chain(store.audit_records())).ok
    return decisions


async def check_against_the_model(backend: str, steps: list[Step], threshold: int, reopen_at: int) -> None:
    expected = model_decisions(steps, threshold)
    straight = await store_decisions(backend, steps, threshold, None, dt.timedelta(days=1))
    # pruning as hard as the convention allows must not change a decision either
    restarted = await store_decisions(backend, steps, threshold, reopen_at, PRUNE_HARD)
    assert straight == expected
    assert restarted == expected


# Hypothesis runs many examples in one test call, so each example opens its own fresh database
# rather than sharing the function-scoped store_factory fixture. A fresh PostgreSQL schema costs
# a few hundred milliseconds of DDL, so that backend gets fewer examples of the same strategy.


@settings(max_examples=50, deadline=None)
@given(steps=steps_strategy, threshold=st.integers(1, 3), reopen_at=st.integers(0, 25))
async def test_decisions_match_the_model_with_and_without_a_restart_on_sqlite(
    steps: list[Step], threshold: int, reopen_at: int
) -> None:
    await check_against_the_model("sqlite", steps, threshold, reopen_at)


@settings(max_examples=12, deadline=None)
@given(steps=steps_strategy, threshold=st.integers(1, 3), reopen_at=st.integers(0, 25))
async def test_decisions_match_the_model_with_and_without_a_restart_on_postgresql(
    steps: list[Step], threshold: int, reopen_at: int
) -> None:
    await check_against_the_model("postgresql", steps, threshold, reopen_at)


# --- reading back for the console --------------------------------------------------------------


async def test_the_audit_tail_is_the_last_records_newest_first(stores: StoreOpener, store: Store) -> None:
    assert await store.audit_tail(5) == []
    for n in range(1, 8):
        await store.append_audit(audit_entry(subject=f"RQ-{n}"))
    store = await reopen(stores, store)
    every = [record async for record in store.audit_records()]
    tail = await store.audit_tail(3)
    assert tail == list(reversed(every))[:3]
    assert [record.entry.subject for record in tail] == ["RQ-7", "RQ-6", "RQ-5"]
    assert await store.audit_tail(100) == list(reversed(every))
    with pytest.raises(ValueError):
        await store.audit_tail(0)


async def test_recent_deliveries_are_any_status_newest_first_and_each_can_be_read_by_id(store: Store) -> None:
    url = "http://127.0.0.1:1/receive"
    ids = [await store.enqueue_delivery(Delivery(SUPPLIER, url, f"<d>{n}</d>".encode(), DeliveryKind.RESPONSE,
                                                  f"RQ-{n}", T0 + dt.timedelta(seconds=n))) for n in range(1, 5)]
    assert await store.record_attempt(ids[0], T0, True, None, None) is not None  # delivered
    assert await store.record_attempt(ids[1], T0, False, "refused", None) is not None  # failed
    recent = await store.recent_deliveries(3)
    assert [d.delivery_id for d in recent] == list(reversed(ids))[:3]
    assert {d.status.value for d in await store.recent_deliveries(10)} == {"delivered", "failed", "pending"}
    one = await store.delivery(ids[2])
    assert one is not None and one.body == b"<d>3</d>" and one.subject == "RQ-3"
    assert await store.delivery(max(ids) + 1) is None
    with pytest.raises(ValueError):
        await store.recent_deliveries(-1)


async def test_adt_admissions_count_what_the_window_counts(store: Store) -> None:
    for n in (1, 2, 3):
        await store.admit(admission(n, threshold=10, at=T0 + dt.timedelta(seconds=10 * n)))
    await store.admit(admission(4, threshold=10, srv="4.1", at=T0))
    await store.admit(admission(5, threshold=10, user=OTHER_USER, at=T0))
    assert await store.adt_admissions(SUPPLIER, "1.6", T0) == 3
    assert await store.adt_admissions(SUPPLIER, "1.6", T0 + dt.timedelta(seconds=10)) == 2  # (since, …]: exclusive
    assert await store.adt_admissions(SUPPLIER, "1.6", T0 + dt.timedelta(seconds=30)) == 0
    assert await store.adt_admissions(SUPPLIER, "4.1", T0 - dt.timedelta(seconds=1)) == 1
    assert await store.adt_admissions(OTHER_USER, "1.6", T0 - dt.timedelta(seconds=1)) == 1

"""PostgreSQL without a global write lock (issue #14 item 2): decisions about different keys do not
wait for each other, and the audit log is one hash chain per worker (a *lane*) whose heads are
anchored into one anchor chain, which ``audit verify`` checks with every lane.

Every test uses the real server, each in a fresh schema (skipped locally, failing under CI, when
it is down).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.eui64 import Eui64
from gateway.store.audit import ChainReport, chain_hash, verify_chain
from gateway.store.base import GENESIS_HASH, Admission, AuditEntry, AuditRecord, Delivery, DeliveryKind
from gateway.store.factory import verify_audit
from gateway.store.postgresql import MIGRATIONS, PostgresLocation, PostgresStore
from tests.store_backends import PostgresOpener, store_opener
from tests.test_store import T0, admission, audit_entry, directive

OTHER_SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-99")


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[PostgresOpener]:
    async with store_opener("postgresql", tmp_path) as opener:
        assert isinstance(opener, PostgresOpener)
        yield opener


async def records_of(store: PostgresStore) -> list[AuditRecord]:
    return [record async for record in store.audit_records()]


async def verify(pg: PostgresOpener, store: PostgresStore) -> ChainReport:
    """What ``audit verify`` says of the schema: every lane and the anchor chain."""
    return await verify_chain(store.audit_records(), lane_anchors=[a async for a in store.lane_anchors()])


async def tamper(pg: PostgresOpener, *statements: str) -> None:
    """Runs statements with the append-only triggers off, as someone who owns the database could."""
    await pg.query(
        "DO $$ BEGIN "
        "ALTER TABLE audit DISABLE TRIGGER USER; ALTER TABLE audit_anchors DISABLE TRIGGER USER; "
        + " ".join(f"{statement};" for statement in statements)
        + " ALTER TABLE audit ENABLE TRIGGER USER; ALTER TABLE audit_anchors ENABLE TRIGGER USER; END $$"
    )


# --- no global write lock --------------------------------------------------------------------------


async def test_a_decision_waiting_on_one_originator_does_not_hold_up_another_originator(pg: PostgresOpener) -> None:
    """Another session locks the replay counter row of one originator; a worker deciding for that
    originator waits, and meanwhile a second worker decides for another originator. With one write
    lock for the schema, the second decision would wait behind the first."""
    one, two = await pg.open(), await pg.open()
    assert (await one.admit(admission(1))).admission is Admission.ACCEPTED
    holder = await asyncpg.connect(PostgresLocation.parse(pg.server_url).dsn)
    try:
        await holder.execute(f'SET search_path TO "{pg.schema}"')
        async with holder.transaction():
            await holder.execute("SELECT * FROM replay_counters FOR UPDATE")
            blocked = asyncio.create_task(one.admit(admission(2)))
            other = await two.admit(admission(1, originator=OTHER_SUPPLIER, user=OTHER_SUPPLIER))
            assert other.admission is Admission.ACCEPTED
            assert not blocked.done()
        assert (await blocked).admission is Admission.ACCEPTED
    finally:
        await holder.close()
    assert (await verify(pg, one)).ok


async def test_while_a_directive_holds_the_registry_only_decisions_wait(pg: PostgresOpener) -> None:
    """The registry's lock (``write_lock_key``) is the one global order left, and only admissions
    share it: another worker writes audit records and Pre-Commands meanwhile. (Within one worker,
    groups run one after another on its writer connection, so its own later writes queue behind.)"""
    deciding, writing = await pg.open(), await pg.open()
    holder = await asyncpg.connect(PostgresLocation.parse(pg.server_url).dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", deciding.write_lock_key)
        decision = asyncio.create_task(deciding.admit(admission(1)))
        await writing.append_audit(audit_entry(subject="RQ-2"))
        await writing.remember_precommand(
            "RQ-3", OTHER_SUPPLIER, OTHER_SUPPLIER, b"\x01", T0, T0 + dt.timedelta(seconds=60), audit_entry(subject="RQ-3")
        )
        assert not decision.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", deciding.write_lock_key)
        assert (await decision).admission is Admission.ACCEPTED
    finally:
        await holder.close()


# --- one lane per worker, anchored -------------------------------------------------------------------


async def test_each_worker_chains_its_own_lane_and_the_whole_log_verifies(pg: PostgresOpener) -> None:
    one, two = await pg.open(), await pg.open()
    assert one.lane is not None and two.lane is not None and one.lane != two.lane
    written = await asyncio.gather(*(store.append_audit(audit_entry(subject=f"RQ-{n}"))
                                     for n in range(1, 21) for store in (one, two)))
    assert len({record.sequence for record in written}) == 40  # unique across workers
    for store in (one, two):
        positions = [record.position for record in written if record.lane == store.lane]
        assert sorted(positions) == list(range(1, 21))  # each lane numbers its records without a gap
    await one.close()
    await two.close()  # each anchors its lane's head as it closes
    reader = await pg.open(read_only=True)
    anchors = [anchor async for anchor in reader.lane_anchors()]
    assert {anchor.lane for anchor in anchors} == {one.lane, two.lane}
    report = await verify(pg, reader)
    assert (report.ok, report.records) == (True, 40), report.reason
    assert (await verify_audit(Path("."), pg.url)).ok


async def test_a_worker_started_again_continues_its_lane(pg: PostgresOpener) -> None:
    first = await pg.open()
    before = await first.append_audit(audit_entry())
    lane = first.lane
    await first.close()
    again = await pg.open()
    after = await again.append_audit(audit_entry(subject="RQ-2"))
    assert (again.lane, after.position, after.previous_hash) == (lane, 2, before.hash)


async def test_a_record_deleted_from_a_lane_is_found(pg: PostgresOpener) -> None:
    store = await pg.open()
    for n in range(1, 6):
        await store.append_audit(audit_entry(subject=f"RQ-{n}"))
    third = (await records_of(store))[2]
    await tamper(pg, f"DELETE FROM audit WHERE sequence = {third.sequence}")
    report = await verify(pg, store)
    assert (report.ok, report.first_broken) == (False, third.sequence), report.reason


async def test_a_lane_cut_back_behind_its_anchor_is_found(pg: PostgresOpener) -> None:
    """Deleting a lane's last records and nothing else leaves an intact chain; the anchor its worker
    wrote names the head that is gone."""
    store = await pg.open()
    for n in range(1, 6):
        await store.append_audit(audit_entry(subject=f"RQ-{n}"))
    await store.close()  # anchors position 5
    reader = await pg.open(read_only=True)
    records = await records_of(reader)
    assert (await verify(pg, reader)).ok
    await tamper(pg, f"DELETE FROM audit WHERE sequence >= {records[3].sequence}")
    report = await verify(pg, reader)
    assert not report.ok and "tail was cut" in report.reason, report.reason
    assert (await verify_chain(reader.audit_records())).ok  # the lane alone cannot tell


async def test_a_rewritten_anchor_is_found(pg: PostgresOpener) -> None:
    store = await pg.open()
    await store.append_audit(audit_entry())
    await store.close()
    await tamper(pg, "UPDATE audit_anchors SET lane_position = lane_position + 1")
    reader = await pg.open(read_only=True)
    report = await verify(pg, reader)
    assert not report.ok and "anchor" in report.reason, report.reason


async def test_a_store_from_before_lanes_is_read_and_then_migrated(pg: PostgresOpener) -> None:
    """A schema at migration 5 with a chained log: audit verify reads it as it is; a worker opening
    it migrates it, anchors its old head, and writes on in a lane of its own."""
    connection = await asyncpg.connect(PostgresLocation.parse(pg.server_url).dsn)
    try:
        await connection.execute(f'CREATE SCHEMA "{pg.schema}"; SET search_path TO "{pg.schema}"')
        await connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in MIGRATIONS[:5]:
            await connection.execute(";\n".join(migration.statements))
            await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", migration.version)
        previous = GENESIS_HASH
        for n in range(1, 4):
            entry = AuditEntry(T0, "request", "old", f"RQ-{n}", "I99", "before lanes", {})
            digest = chain_hash(previous, entry)
            await connection.execute(
                "INSERT INTO audit VALUES ($1, $2, $3, $4, $5, $6, $7, '{}', $8, $9)",
                n, T0, entry.kind, entry.actor, entry.subject, entry.outcome, entry.reason, previous, digest,
            )
            previous = digest
    finally:
        await connection.close()
    old = await pg.open(read_only=True)
    report = await verify_chain(old.audit_records(), lane_anchors=[a async for a in old.lane_anchors()])
    assert (report.ok, report.records) == (True, 3), report.reason
    await old.close()
    store = await pg.open()
    appended = await store.append_audit(audit_entry(subject="RQ-4"))
    assert appended.sequence == 4 and appended.lane == store.lane and appended.position == 1
    anchors = [anchor async for anchor in store.lane_anchors()]
    assert [(a.lane, a.position, a.lane_hash) for a in anchors][:1] == [(0, 3, previous)]
    report = await verify(pg, store)
    assert (report.ok, report.records) == (True, 4), report.reason
    await tamper(pg, "DELETE FROM audit WHERE sequence = 3")
    report = await verify(pg, store)
    assert not report.ok and "tail was cut" in report.reason, report.reason


async def test_directives_keep_one_order_across_workers(pg: PostgresOpener) -> None:
    one, two = await pg.open(), await pg.open()
    stored = await asyncio.gather(*((one, two)[n % 2].append_directive(directive(f"D-{n}"), audit_entry())
                                    for n in range(10)))
    assert sorted(record.sequence for record in stored) == list(range(1, 11))
    assert dataclasses.replace(stored[0], sequence=0) == directive("D-0")


# --- the outbox without a global lock: row locks decide -------------------------------------------


def delivery(n: int) -> Delivery:
    return Delivery(OTHER_SUPPLIER, "http://127.0.0.1:9/results", f"<Response>{n}</Response>".encode(),
                    DeliveryKind.RESPONSE, f"RQ-{n}", T0)


async def test_two_workers_leasing_due_deliveries_never_get_the_same_one(pg: PostgresOpener) -> None:
    one, two = await pg.open(), await pg.open()
    for n in range(40):
        await one.enqueue_delivery(delivery(n))
    now = T0 + dt.timedelta(seconds=1)
    leases = await asyncio.gather(*(store.due_deliveries(now, 7, lease=dt.timedelta(seconds=30))
                                    for _ in range(4) for store in (one, two)))
    leased = [item.delivery_id for lease in leases for item in lease]
    assert len(leased) == len(set(leased)) == 40


async def test_two_workers_failing_overdue_deliveries_fail_each_one_once(pg: PostgresOpener) -> None:
    one, two = await pg.open(), await pg.open()
    for n in range(30):
        await one.enqueue_delivery(delivery(n))
    later = T0 + dt.timedelta(seconds=600)
    counts = await asyncio.gather(one.fail_overdue(later), two.fail_overdue(later), one.fail_overdue(later))
    assert sum(counts) == 30
    failed = [r for r in await records_of(one) if r.entry.kind == "delivery" and r.entry.outcome == "failed"]
    assert sorted(r.entry.detail["delivery_id"] for r in failed) == sorted({r.entry.detail["delivery_id"] for r in failed})
    assert len(failed) == 30

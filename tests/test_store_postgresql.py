"""PostgreSQL-only facts of the store (issue #5): migrations, the URL, and several workers on one database.

The Store contract itself runs on both backends in test_store.py and its siblings; this file
covers what only PostgreSQL has: schema migrations under an advisory lock, read-only opening,
and the point of the backend, several ``PostgresStore`` objects (workers) writing one schema at
once through grouped transactions. Every test uses the real server, each in a fresh schema.
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
from gateway.store.audit import verify_chain
from gateway.store.base import (
    Admission,
    AdmissionRequest,
    AuditEntry,
    CommandCompletion,
    CommandForm,
    CommandStatus,
    DeviceCommand,
    QuarantineStatus,
)
from gateway.store.factory import verify_audit
from gateway.store.postgresql import (
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresLocation,
    PostgresStore,
    PostgresStoreMissing,
    StoreReadOnlyError,
    StoreWriteFailed,
)
from gateway.store.base import StoreSchemaError, StoreUnavailable
from tests.store_backends import PostgresOpener, fresh_schema_name, store_opener, with_schema
from tests.test_store import METER, SUPPLIER, T0, admission, audit_entry, directive

LEASE = dt.timedelta(seconds=30)


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[PostgresOpener]:
    """Stores on one fresh schema of the test server (skips locally, fails under CI, when it is down)."""
    async with store_opener("postgresql", tmp_path) as opener:
        assert isinstance(opener, PostgresOpener)
        yield opener


async def open_workers(pg: PostgresOpener, count: int) -> list[PostgresStore]:
    """``count`` store objects on one schema, as ``count`` gateway workers would have."""
    return [await pg.open() for _ in range(count)]


def command(n: int, *, device: Eui64 = METER) -> DeviceCommand:
    return DeviceCommand(
        request_id=f"{SUPPLIER}:{device}:{n}",
        originator=SUPPLIER,
        device_id=device,
        service_reference="1.6",
        service_reference_variant="1.6",
        form=CommandForm.SR_BODY,
        payload=f"<Body>{n}</Body>".encode(),
        queued_at=T0,
    )


def command_audit(n: int) -> AuditEntry:
    return audit_entry(kind="request", subject=f"RQ-{n}", outcome="I99")


# --- migrations ---------------------------------------------------------------------------


async def test_a_fresh_schema_gets_every_migration_in_order(pg: PostgresOpener) -> None:
    store = await open_workers(pg, 1)
    assert await store[0].schema_version() == SCHEMA_VERSION
    applied = await pg.query("SELECT version FROM schema_migrations ORDER BY applied_at, version")
    assert [row[0] for row in applied] == [migration.version for migration in MIGRATIONS]
    tables = await pg.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name", pg.schema
    )
    expected = {"audit", "directives", "replay_counters", "adt_events", "quarantine", "precommands",
                "deliveries", "commands", "meters", "meters_meta", "quarantine_alerts_due", "schema_migrations",
                "audit_lanes", "audit_anchors"}
    assert {row[0] for row in tables} == expected  # all of them in the URL's schema, none elsewhere


async def test_reopening_migrates_nothing(pg: PostgresOpener) -> None:
    first = (await open_workers(pg, 1))[0]
    await first.append_audit(audit_entry())
    before = await pg.query("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    await first.close()
    again = (await open_workers(pg, 1))[0]
    assert await pg.query("SELECT version, applied_at FROM schema_migrations ORDER BY version") == before
    assert (await verify_chain(again.audit_records())).records == 1


async def test_workers_opening_a_fresh_schema_at_once_apply_each_migration_once(pg: PostgresOpener) -> None:
    stores = await asyncio.gather(*(pg.open() for _ in range(4)))
    counts = await pg.query("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version")
    assert counts == [(migration.version, 1) for migration in MIGRATIONS]
    await stores[0].append_audit(audit_entry())
    assert (await verify_chain(stores[3].audit_records())).ok


async def test_a_newer_schema_is_refused(pg: PostgresOpener) -> None:
    await (await pg.open()).close()
    await pg.query("INSERT INTO schema_migrations (version) VALUES ($1)", SCHEMA_VERSION + 1)
    with pytest.raises(StoreSchemaError, match=f"version {SCHEMA_VERSION + 1}"):
        await pg.open()
    with pytest.raises(StoreSchemaError, match=f"version {SCHEMA_VERSION + 1}"):
        await pg.open(read_only=True)


async def test_read_only_creates_nothing_where_there_is_no_store(pg: PostgresOpener, tmp_path: Path) -> None:
    with pytest.raises(PostgresStoreMissing, match="no gateway store"):
        await pg.open(read_only=True)
    with pytest.raises(FileNotFoundError):
        await verify_audit(tmp_path, pg.url)
    assert await pg.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", pg.schema) == []


async def test_a_read_only_store_reads_and_refuses_to_write(pg: PostgresOpener) -> None:
    writer = await pg.open()
    await writer.admit(admission(1))
    reader = await pg.open(read_only=True)
    assert await reader.last_counter(SUPPLIER, METER) == 1
    assert (await verify_chain(reader.audit_records())).records == 1
    with pytest.raises(StoreReadOnlyError):
        await reader.admit(admission(2))
    assert await reader.last_counter(SUPPLIER, METER) == 1


async def test_a_closed_store_answers_what_was_queued_before_it_closed(pg: PostgresOpener) -> None:
    store = (await open_workers(pg, 1))[0]
    pending = [asyncio.ensure_future(store.admit(admission(n, target=Eui64(n)))) for n in range(1, 21)]
    await asyncio.sleep(0)  # every call is queued
    await store.close()
    results = await asyncio.gather(*pending)
    assert [r.admission for r in results] == [Admission.ACCEPTED] * 20
    reader = await pg.open(read_only=True)
    assert (await verify_chain(reader.audit_records())).records == 20


# --- the URL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h/db?schema=bad-name",
        "postgresql://u@h/db?schema=x;drop",
        "postgresql://u@h/db?schema=",
        "postgresql://u@h/db?schema=a&schema=b",
        "mysql://u@h/db",
    ],
)
def test_bad_store_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        PostgresStore(url)


def test_the_password_stays_out_of_messages() -> None:
    store = PostgresStore("postgresql://gateway:s3cret@db.example:5432/dcc?schema=one")
    assert "s3cret" not in repr(store) and "one" in repr(store)


async def test_other_query_parameters_reach_the_server(pg: PostgresOpener) -> None:
    url = with_schema(pg.server_url + "?application_name=dcc-test-worker", pg.schema)
    store = PostgresStore(url)
    await store.open()
    try:
        await store.append_audit(audit_entry())
        names = await pg.query("SELECT application_name FROM pg_stat_activity WHERE application_name = $1",
                               "dcc-test-worker")
        assert names  # the writer (and the pool) connected under that name
    finally:
        await store.close()


# --- several workers on one schema -----------------------------------------------------------


async def test_one_counter_is_accepted_exactly_once_across_three_workers(pg: PostgresOpener) -> None:
    workers = await open_workers(pg, 3)
    results = await asyncio.gather(*(workers[n % 3].admit(admission(7)) for n in range(30)))
    decisions = [r.admission for r in results]
    assert decisions.count(Admission.ACCEPTED) == 1
    assert decisions.count(Admission.REPLAY) == 29
    assert await workers[2].last_counter(SUPPLIER, METER) == 7
    assert (await verify_chain(workers[0].audit_records())).records == 30


async def test_adt_threshold_k_accepts_exactly_k_across_two_workers(pg: PostgresOpener) -> None:
    k = 7
    one, two = await open_workers(pg, 2)
    requests = [admission(n, threshold=k, target=Eui64(n)) for n in range(1, 4 * k + 1)]
    results = await asyncio.gather(*((one, two)[n % 2].admit(request) for n, request in enumerate(requests)))
    decisions = [r.admission for r in results]
    assert decisions.count(Admission.ACCEPTED) == k
    assert decisions.count(Admission.QUARANTINED) == 3 * k
    held = await one.quarantined(SUPPLIER)
    assert len(held) == 3 * k and {q.status for q in held} == {QuarantineStatus.HELD}


async def test_a_quarantined_request_is_settled_by_one_worker_only(pg: PostgresOpener) -> None:
    one, two = await open_workers(pg, 2)
    await one.admit(admission(1, threshold=1))
    ref = (await one.admit(admission(2, threshold=1))).quarantine_event_ref
    assert ref is not None
    settle = audit_entry(kind="quarantine-release", outcome="accepted")
    results = await asyncio.gather(
        *(worker.settle_quarantine(ref, SUPPLIER, QuarantineStatus.RELEASED, settle, command(2))
          for worker in (one, two, one, two))
    )
    assert sum(result is not None for result in results) == 1
    assert await two.command_status(command(2).request_id) is CommandStatus.QUEUED
    assert await two.queued_commands() == 1


async def test_a_pending_precommand_is_taken_once_by_racing_workers(pg: PostgresOpener) -> None:
    workers = await open_workers(pg, 3)
    request_ids = [f"RQ-{n}" for n in range(15)]
    for request_id in request_ids:
        await workers[0].remember_precommand(
            request_id, SUPPLIER, METER, b"\x01\x02", T0, T0 + LEASE, audit_entry(subject=request_id)
        )
    takes = [worker.take_precommand(rid, SUPPLIER, T0) for rid in request_ids for worker in workers * 2]
    taken = [p.request_id for p in await asyncio.gather(*takes) if p is not None]
    assert sorted(taken) == sorted(request_ids)


async def test_command_claims_are_exclusive_across_workers(pg: PostgresOpener) -> None:
    workers = await open_workers(pg, 3)
    for n in range(1, 31):
        await workers[n % 3].queue_command(command(n, device=Eui64(n)), command_audit(n))
    claims = await asyncio.gather(*(worker.claim_commands(T0, 4, LEASE) for worker in workers * 4))
    claimed = [c for batch in claims for c in batch]
    assert sorted(c.command_id for c in claimed) == sorted({c.command_id for c in claimed})  # none twice
    assert len(claimed) == 30 and {c.claims for c in claimed} == {1}
    assert await workers[0].claim_commands(T0 + LEASE - dt.timedelta(seconds=1), 50, LEASE) == []


async def test_a_command_is_completed_once_even_when_its_lease_ran_out(pg: PostgresOpener) -> None:
    one, two = await open_workers(pg, 2)
    await one.queue_command(command(1), command_audit(1))
    [first] = await one.claim_commands(T0, 10, LEASE)
    [second] = await two.claim_commands(T0 + LEASE, 10, LEASE)  # the first executor's lease ended
    assert second.command_id == first.command_id and second.claims == 2
    assert second.claim_token != first.claim_token
    done = CommandCompletion(at=T0 + LEASE, outcome="I0", meters={str(METER): '{"supply": "on"}'})
    outcomes = await asyncio.gather(one.complete_command(first, done), two.complete_command(second, done))
    assert outcomes == [False, True]  # only the live claim counts
    assert await one.command_status(command(1).request_id) is CommandStatus.EXECUTED
    assert await one.load_meter(str(METER)) == '{"supply": "on"}'
    assert await one.queued_commands() == 0


async def test_an_admission_decided_on_an_old_registry_is_refused_and_changes_nothing(pg: PostgresOpener) -> None:
    one, two = await open_workers(pg, 2)
    version = await two.registry_version()
    await one.append_directive(directive("D-1"), audit_entry(kind="directive", outcome="accepted"))
    stale = dataclasses.replace(admission(1), registry_version=version, command=command(1))
    assert (await two.admit(stale)).admission is Admission.STALE_REGISTRY
    assert await two.last_counter(SUPPLIER, METER) is None
    assert await two.command_status(command(1).request_id) is None
    assert (await verify_chain(two.audit_records())).records == 1  # the directive's record only
    fresh = dataclasses.replace(stale, registry_version=await two.registry_version())
    assert (await two.admit(fresh)).admission is Admission.ACCEPTED
    assert await one.command_status(command(1).request_id) is CommandStatus.QUEUED


async def test_the_meter_epoch_is_the_first_proposal_of_any_worker(pg: PostgresOpener) -> None:
    one, two = await open_workers(pg, 2)
    proposals = [T0 + dt.timedelta(seconds=n) for n in range(6)]
    epochs = await asyncio.gather(*((one, two)[n % 2].meter_epoch(p) for n, p in enumerate(proposals)))
    assert len(set(epochs)) == 1 and epochs[0] in proposals


async def test_the_audit_chain_verifies_after_concurrent_writes_of_every_kind(pg: PostgresOpener) -> None:
    one, two = await open_workers(pg, 2)
    writes = []
    for n in range(1, 21):
        worker = (one, two)[n % 2]
        writes += [
            worker.admit(admission(n, threshold=5, target=Eui64(n))),
            worker.append_directive(directive(f"D-{n}"), audit_entry(kind="directive")),
            worker.queue_command(command(n, device=Eui64(1000 + n)), command_audit(n)),
            worker.append_audit(audit_entry(subject=f"note-{n}")),
        ]
    await asyncio.gather(*writes)
    report = await verify_chain(two.audit_records())
    assert (report.ok, report.records) == (True, 80)
    assert [d.sequence async for d in one.directives()] == list(range(1, 21))  # no gaps either
    assert await one.registry_version() == 20


async def test_a_cancelled_admission_is_recorded_once_and_leaves_the_store_usable(pg: PostgresOpener) -> None:
    """The twin of the SQLite test: another worker holds the write lock while the caller gives up."""
    store = (await open_workers(pg, 1))[0]
    await store.append_audit(audit_entry())  # schema made; the write lock key is the store's
    other_worker = await asyncpg.connect(pg.server_url, timeout=5)
    try:
        async with other_worker.transaction():
            await other_worker.execute("SELECT pg_advisory_xact_lock($1)", store.write_lock_key)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(store.admit(admission(1)), timeout=0.2)
    finally:
        await other_worker.close()
    assert (await store.admit(admission(1))).admission is Admission.REPLAY
    assert (await store.admit(admission(2))).admission is Admission.ACCEPTED
    outcomes = [r.entry.outcome async for r in store.audit_records()]
    assert outcomes == ["", "I99", "E40", "I99"]


# --- group commit ------------------------------------------------------------------------------


async def test_concurrent_writes_share_transactions(pg: PostgresOpener) -> None:
    store = await pg.open(group_limit=64)
    before = store.groups_committed, store.calls_committed
    results = await asyncio.gather(*(store.admit(admission(1, target=Eui64(n))) for n in range(200)))
    assert [r.admission for r in results] == [Admission.ACCEPTED] * 200
    groups = store.groups_committed - before[0]
    assert store.calls_committed - before[1] == 200
    assert 200 // 64 < groups <= 20  # capped at 64 calls a group, and far fewer commits than calls
    assert (await verify_chain(store.audit_records())).records == 200


async def test_an_audit_row_the_server_refuses_fails_its_own_call_alone(pg: PostgresOpener) -> None:
    """A group's audit rows are inserted together just before COMMIT; when the server refuses one
    (here a NUL character, which PostgreSQL text cannot hold), the group runs again with a savepoint
    per call, and only the call that appended that row fails."""
    store = (await open_workers(pg, 1))[0]
    before = store.groups_committed
    entries = [audit_entry(subject=f"RQ-{n}", reason="refused\x00" if n == 2 else "fine") for n in range(5)]
    results = await asyncio.gather(*(store.append_audit(entry) for entry in entries), return_exceptions=True)
    assert isinstance(results[2], asyncpg.PostgresError)
    assert store.groups_committed - before == 1  # they did share one group
    stored = [record.entry.subject async for record in store.audit_records()]
    assert stored == ["RQ-0", "RQ-1", "RQ-3", "RQ-4"]
    report = await verify_chain(store.audit_records())
    assert report.ok and report.records == 4


async def test_a_failing_call_rolls_back_alone_in_its_group(pg: PostgresOpener) -> None:
    store = (await open_workers(pg, 1))[0]
    broken = dataclasses.replace(admission(5, target=Eui64(5)), audit=audit_entry(detail={"x": object()}))
    requests: list[AdmissionRequest] = [admission(1, target=Eui64(n)) for n in range(10)]
    requests.insert(5, broken)
    results = await asyncio.gather(*(store.admit(r) for r in requests), return_exceptions=True)
    assert isinstance(results[5], TypeError)
    assert [r.admission for r in results if not isinstance(r, BaseException)] == [Admission.ACCEPTED] * 10
    assert await store.last_counter(SUPPLIER, Eui64(5)) == 1  # the broken one's counter 5 was not stored
    report = await verify_chain(store.audit_records())
    assert (report.ok, report.records) == (True, 10)


# --- the log against an intruder -------------------------------------------------------------


async def test_the_store_refuses_to_rewrite_its_log(pg: PostgresOpener) -> None:
    store = (await open_workers(pg, 1))[0]
    await store.append_audit(audit_entry())
    for statement in ("UPDATE audit SET reason = 'edited'", "DELETE FROM audit", "TRUNCATE audit CASCADE"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pg.query(statement)


@pytest.mark.parametrize(
    ("tamper", "first_broken"),
    [
        pytest.param("UPDATE audit SET reason = 'nothing to see' WHERE sequence = 3", 3, id="edited"),
        pytest.param("DELETE FROM audit WHERE sequence = 2", 2, id="deleted"),
        pytest.param("UPDATE audit SET detail = '{' WHERE sequence = 4", 4, id="unreadable-detail"),
    ],
)
async def test_verify_names_the_first_broken_record(
    pg: PostgresOpener, tmp_path: Path, tamper: str, first_broken: int
) -> None:
    store = (await open_workers(pg, 1))[0]
    for n in range(1, 6):
        await store.append_audit(audit_entry(subject=f"RQ-{n}"))
    await store.close()
    # The intruder owns the database, so the append-only triggers do not stop them; the chain does.
    await pg.query("ALTER TABLE audit DISABLE TRIGGER USER")
    await pg.query(tamper)
    report = await verify_audit(tmp_path, pg.url)
    assert (report.ok, report.first_broken) == (False, first_broken)


def test_fresh_schema_names_are_unique_identifiers() -> None:
    names = {fresh_schema_name() for _ in range(100)}
    assert len(names) == 100 and all(name.isidentifier() and name.islower() for name in names)


async def test_a_read_cut_off_by_the_server_is_store_unavailable_and_the_next_one_works(pg: PostgresOpener) -> None:
    """A read whose connection the server terminates mid-query (here while it waits behind another
    session's table lock) fails as StoreUnavailable, the gateway's 503, not as a raw driver error;
    the pool then serves the next read on a new connection."""
    name = f"dcc-read-{pg.schema}"
    store = PostgresStore(with_schema(f"{pg.server_url}?application_name={name}", pg.schema), pool_size=1)
    await store.open()
    holder = await asyncpg.connect(PostgresLocation.parse(pg.server_url).dsn)
    try:
        assert (await store.admit(admission(1))).admission is Admission.ACCEPTED
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(f'LOCK TABLE "{pg.schema}".replay_counters IN ACCESS EXCLUSIVE MODE')
        read = asyncio.create_task(store.last_counter(SUPPLIER, METER))
        waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'"
        for _ in range(200):
            blocked = await holder.fetch(waiting, name)
            if blocked:
                break
            await asyncio.sleep(0.01)
        assert blocked, "the read never waited for the lock"
        await holder.execute("SELECT pg_terminate_backend($1)", blocked[0][0])
        with pytest.raises(StoreUnavailable, match="reading"):
            await read
        await transaction.rollback()
        assert await store.last_counter(SUPPLIER, METER) == 1
    finally:
        await holder.close()
        await store.close()


async def test_the_writer_reconnects_after_the_server_dropped_it(pg: PostgresOpener) -> None:
    """A restarted or failed-over server drops connections: the group in flight then fails (its
    callers get the error, nothing of it is stored) and the next one runs on a new connection."""
    name = f"dcc-{pg.schema}"
    store = PostgresStore(with_schema(f"{pg.server_url}?application_name={name}", pg.schema))
    await store.open()
    try:
        assert (await store.admit(admission(1))).admission is Admission.ACCEPTED
        dropped = await pg.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", name
        )
        assert dropped and all(row[0] for row in dropped)
        outcomes = []
        for counter in (2, 3):
            try:
                outcomes.append((await store.admit(admission(counter))).admission)
            except StoreWriteFailed:
                outcomes.append(None)  # the connection was found dead during this call
        assert outcomes[-1] is Admission.ACCEPTED
        assert outcomes[0] in (None, Admission.ACCEPTED)
        assert await store.last_counter(SUPPLIER, METER) == 3
        report = await verify_chain(store.audit_records())
        assert report.ok and report.records == 1 + outcomes.count(Admission.ACCEPTED)
    finally:
        await store.close()

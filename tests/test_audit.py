"""The audit hash chain (issue #3): its definition, and what ``audit verify`` catches in a tampered file.

Tampering is done the way an intruder would: with the stdlib ``sqlite3`` module on
the closed store file, dropping the append-only triggers first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import write_default_config
from gateway.eui64 import Eui64
from gateway.store.audit import (
    ChainAnchor,
    ChainReport,
    canonical_json,
    chain_hash,
    chain_hash_of_stored,
    parse_utc_text,
    utc_text,
    verify_chain,
)
from gateway.store.base import GENESIS_HASH, AuditEntry, AuditRecord
from gateway.store.factory import (
    default_store_url,
    open_store,
    sqlite_path,
    verify_audit,
)
from gateway.store.postgresql import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.store_backends import StoreOpener

UTC = dt.UTC
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SUPPLIER = Eui64.parse("90-B3-D5-1F-30-AA-00-01")
RECORDS = 5


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        at=T0 + dt.timedelta(seconds=n, microseconds=n),
        kind="request",
        actor=str(SUPPLIER),
        subject=f"RQ-{n}",
        outcome="I99",
        reason="accepted",
        detail={"srv": "1.6", "n": n},
    )


# --- definition -------------------------------------------------------------------------


def test_chain_hash_matches_an_independent_computation() -> None:
    """The vector is written out by hand, not produced by the code under test."""
    sample = AuditEntry(
        at=dt.datetime(2026, 6, 1, 13, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        kind="request",
        actor="90-B3-D5-1F-30-AA-00-01",
        subject="RQ-1",
        outcome="E43",
        reason="Grüße",
        detail={"z": 1, "a": [True, None], "when": dt.datetime(2026, 1, 1, tzinfo=UTC)},
    )
    document = (
        '{"actor":"90-B3-D5-1F-30-AA-00-01","at":"2026-06-01T12:00:00.000005Z",'
        '"detail":{"a":[true,null],"when":"2026-01-01T00:00:00.000000Z","z":1},'
        '"kind":"request","outcome":"E43","reason":"Grüße","subject":"RQ-1"}'
    )
    expected = hashlib.sha256(("0" * 64 + document).encode("utf-8")).hexdigest()
    assert chain_hash(GENESIS_HASH, sample) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param({"x": float("nan")}, ValueError, id="nan"),
        pytest.param({"x": dt.datetime(2026, 1, 1)}, ValueError, id="naive-datetime"),
        pytest.param({"x": object()}, TypeError, id="unknown-type"),
    ],
)
def test_canonical_json_refuses_ambiguous_values(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        canonical_json(value)


def test_canonical_json_is_stable_through_a_round_trip() -> None:
    value = {"b": [1, 2.5, "✓"], "a": {"y": SUPPLIER, "x": T0}}
    text = canonical_json(value)
    assert text == '{"a":{"x":"2026-06-01T12:00:00.000000Z","y":"90-B3-D5-1F-30-AA-00-01"},"b":[1,2.5,"✓"]}'
    assert canonical_json(json.loads(text)) == text


@pytest.mark.parametrize(
    "when",
    [
        pytest.param(T0, id="utc"),
        pytest.param(dt.datetime(2026, 6, 1, 14, 0, 0, 999999, tzinfo=dt.timezone(dt.timedelta(hours=2))), id="offset"),
        pytest.param(dt.datetime(999, 1, 1, tzinfo=UTC), id="three-digit-year"),
    ],
)
def test_utc_text_round_trips_at_fixed_width(when: dt.datetime) -> None:
    text = utc_text(when)
    assert len(text) == len("2026-06-01T12:00:00.000000Z") and text.endswith("Z")
    assert parse_utc_text(text) == when


@pytest.mark.parametrize("text", ["2026-06-01T12:00:00Z", "2026-06-01T12:00:00.000000+00:00", "yesterday"])
def test_parse_utc_text_accepts_only_the_stored_form(text: str) -> None:
    with pytest.raises(ValueError):
        parse_utc_text(text)


# --- verify_chain on records in memory ---------------------------------------------------


def chained(count: int) -> list[AuditRecord]:
    records, previous = [], GENESIS_HASH
    for n in range(1, count + 1):
        digest = chain_hash(previous, entry(n))
        records.append(AuditRecord(n, entry(n), previous, digest))
        previous = digest
    return records


async def test_an_intact_chain_verifies() -> None:
    records = chained(RECORDS)
    head = ChainAnchor(RECORDS, records[-1].hash)
    assert await verify_chain(records) == ChainReport(True, RECORDS, None, "5 records, chain intact", head)
    assert await verify_chain(records, [head, ChainAnchor(2, records[1].hash)]) == await verify_chain(records)
    assert (await verify_chain([])).ok and (await verify_chain([])).head is None


@pytest.mark.parametrize(
    ("anchor", "first_broken", "reason"),
    [
        pytest.param(lambda records: ChainAnchor(7, records[-1].hash), 6, "tail was cut", id="beyond-the-end"),
        pytest.param(lambda records: ChainAnchor(3, records[3].hash), 3, "not the one anchored", id="other-hash"),
    ],
)
async def test_an_anchor_the_log_does_not_hold_breaks_it(anchor, first_broken: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    records = chained(RECORDS)
    report = await verify_chain(records, [anchor(records)])
    assert (report.ok, report.first_broken) == (False, first_broken) and reason in report.reason
    assert not (await verify_chain([], [anchor(records)])).ok  # an emptied log too


@pytest.mark.parametrize("text", ["", "5", "0:" + "a" * 64, "-1:" + "a" * 64, "5:" + "a" * 63, "5:" + "g" * 64, "x:" + "a" * 64])
def test_an_anchor_is_a_sequence_and_a_sha256(text: str) -> None:
    with pytest.raises(ValueError, match="SEQUENCE:HASH"):
        ChainAnchor.parse(text)
    assert str(ChainAnchor.parse("5:" + "AB" * 32)) == "5:" + "ab" * 32


@pytest.mark.parametrize(
    ("order", "first_broken"),
    [
        pytest.param([1, 2, 4, 3, 5], 3, id="reordered"),
        pytest.param([1, 2, 2, 3, 4, 5], 3, id="duplicated"),
        pytest.param([2, 3, 4, 5], 1, id="first-missing"),
    ],
)
async def test_verify_chain_names_the_first_position_out_of_place(order: list[int], first_broken: int) -> None:
    records = chained(RECORDS)
    report = await verify_chain(records[n - 1] for n in order)
    assert (report.ok, report.first_broken, report.records) == (False, first_broken, len(order))


async def test_verify_chain_reads_an_async_iterator(store_factory: StoreOpener) -> None:
    store = await store_factory.open()
    for n in range(1, RECORDS + 1):
        record = await store.append_audit(entry(n))
    assert record.sequence == RECORDS
    assert (await verify_chain(store.audit_records())).ok


async def test_a_chain_written_by_several_stores_at_once_verifies(store_factory: StoreOpener) -> None:
    """Two workers appending concurrently still make one chain: every record links to the one before."""
    one, two = await store_factory.open(), await store_factory.open()
    written = await asyncio.gather(*(store.append_audit(entry(n)) for n in range(1, 41) for store in (one, two)))
    assert sorted(record.sequence for record in written) == list(range(1, 81))
    report = await verify_chain(one.audit_records())
    assert (report.ok, report.records) == (True, 80)


async def test_a_group_rolled_back_after_an_append_chains_from_what_was_stored(tmp_path: Path) -> None:
    """SQLite remembers the chain head inside one transaction only. A group whose third call
    fails after appending is rolled back and each call is run again alone: no record may link
    to the rolled-back one, and the failed call leaves nothing."""
    from gateway.store.sqlite import _append_audit  # the store's own append, inside a unit

    def append_then_fail(db: sqlite3.Connection) -> None:
        _append_audit(db, entry(99))  # type: ignore[arg-type]
        raise RuntimeError("the call fails after its append")

    async with SqliteStore(str(tmp_path / "store.sqlite")) as store:
        await store.append_audit(entry(1))
        calls = [store.append_audit(entry(2)), store._write(append_then_fail), store.append_audit(entry(3))]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(outcomes[1], RuntimeError)
        await store.append_audit(entry(4))
        records = [record async for record in store.audit_records()]
    assert [record.entry.subject for record in records] == ["RQ-1", "RQ-2", "RQ-3", "RQ-4"]
    report = await verify_chain(records)
    assert (report.ok, report.records) == (True, 4)


def test_utc_text_is_the_same_for_every_way_of_saying_utc() -> None:
    """The fast path for dt.UTC and the general conversion give one text for one instant."""
    instant = dt.datetime(2026, 6, 1, 12, 0, 0, 7, tzinfo=UTC)
    plus_one = instant.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert utc_text(instant) == utc_text(plus_one) == "2026-06-01T12:00:00.000007Z"
    assert utc_text(dt.datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000000Z"
    with pytest.raises(ValueError):
        utc_text(dt.datetime(2026, 6, 1))


# --- tampering with the file -------------------------------------------------------------


@contextlib.contextmanager
def intruder(path: Path) -> Iterator[sqlite3.Connection]:
    """The store file opened directly, with the append-only triggers dropped."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("DROP TRIGGER audit_no_update")
        connection.execute("DROP TRIGGER audit_no_delete")
        yield connection
        connection.commit()
    finally:
        connection.close()


def stored_record(db: sqlite3.Connection, sequence: int) -> tuple[AuditEntry, str]:
    row = db.execute(
        "SELECT at, kind, actor, subject, outcome, reason, detail, previous_hash FROM audit WHERE sequence = ?",
        (sequence,),
    ).fetchone()
    at, kind, actor, subject, outcome, reason, detail, previous_hash = row
    return AuditEntry(parse_utc_text(at), kind, actor, subject, outcome, reason, json.loads(detail)), previous_hash


def rewrite_and_rehash(db: sqlite3.Connection) -> None:
    """Edits record 3 and recomputes its own hash, but cannot fix record 4's link."""
    changed, previous_hash = stored_record(db, 3)
    changed = dataclasses.replace(changed, outcome="E43")
    db.execute(
        "UPDATE audit SET outcome = ?, hash = ? WHERE sequence = 3", ("E43", chain_hash(previous_hash, changed))
    )


def insert_forged_record(db: sqlite3.Connection) -> None:
    """Moves records 3.. up by one and inserts a correctly linked forgery at 3."""
    db.execute("UPDATE audit SET sequence = sequence + 1000 WHERE sequence >= 3")
    db.execute("UPDATE audit SET sequence = sequence - 999 WHERE sequence > 1000")
    (previous_hash,) = db.execute("SELECT hash FROM audit WHERE sequence = 2").fetchone()
    forged = dataclasses.replace(entry(3), subject="RQ-forged")
    db.execute(
        "INSERT INTO audit VALUES (3, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (utc_text(forged.at), forged.kind, forged.actor, forged.subject, forged.outcome, forged.reason,
         canonical_json(forged.detail), previous_hash, chain_hash(previous_hash, forged)),
    )  # fmt: skip


def swap_rows(db: sqlite3.Connection) -> None:
    """Exchanges everything but the sequence numbers of records 2 and 3."""
    columns = "at, kind, actor, subject, outcome, reason, detail, previous_hash, hash"
    two = db.execute(f"SELECT {columns} FROM audit WHERE sequence = 2").fetchone()
    three = db.execute(f"SELECT {columns} FROM audit WHERE sequence = 3").fetchone()
    db.execute("UPDATE audit SET hash = printf('%064d', sequence) WHERE sequence IN (2, 3)")  # free UNIQUE
    assignments = ", ".join(f"{name.strip()} = ?" for name in columns.split(","))
    db.execute(f"UPDATE audit SET {assignments} WHERE sequence = 2", three)
    db.execute(f"UPDATE audit SET {assignments} WHERE sequence = 3", two)


def sql(*statements: str) -> Callable[[sqlite3.Connection], None]:
    def tamper(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return tamper


TAMPERINGS = [
    pytest.param(sql("UPDATE audit SET reason = 'refused' WHERE sequence = 3"), 3, id="modified-reason"),
    pytest.param(
        sql("""UPDATE audit SET detail = '{"n":3,"srv":"9.9"}' WHERE sequence = 3"""), 3, id="modified-detail"
    ),
    pytest.param(sql("UPDATE audit SET at = '2026-06-01T12:00:03.000004Z' WHERE sequence = 3"), 3, id="modified-time"),
    pytest.param(sql("UPDATE audit SET outcome = 'E40' WHERE sequence = 5"), 5, id="modified-last"),
    pytest.param(sql("UPDATE audit SET actor = 'someone' WHERE sequence = 1"), 1, id="modified-first"),
    pytest.param(sql("DELETE FROM audit WHERE sequence = 3"), 3, id="deleted-middle"),
    pytest.param(sql("DELETE FROM audit WHERE sequence = 1"), 1, id="deleted-first"),
    pytest.param(sql("DELETE FROM audit WHERE sequence IN (2, 3)"), 2, id="deleted-two"),
    pytest.param(swap_rows, 2, id="swapped"),
    pytest.param(rewrite_and_rehash, 4, id="rehashed-but-unlinked"),
    pytest.param(insert_forged_record, 4, id="inserted"),
    pytest.param(sql("UPDATE audit SET previous_hash = hash WHERE sequence = 1"), 1, id="no-genesis"),
    pytest.param(sql("UPDATE audit SET at = 'yesterday' WHERE sequence = 2"), 2, id="unreadable-time"),
    pytest.param(sql("UPDATE audit SET detail = '{' WHERE sequence = 2"), 2, id="unreadable-detail"),
]


@pytest.fixture
async def world(tmp_path: Path) -> Path:
    """A world directory whose default store holds RECORDS intact audit records."""
    async with SqliteStore(tmp_path / "store.db") as store:
        for n in range(1, RECORDS + 1):
            await store.append_audit(entry(n))
    return tmp_path


async def test_the_untouched_log_verifies(world: Path) -> None:
    report = await verify_audit(world)
    assert (report.ok, report.records, report.first_broken) == (True, RECORDS, None)


@pytest.mark.parametrize(("tamper", "first_broken"), TAMPERINGS)
async def test_verify_names_the_first_broken_record(
    world: Path, tamper: Callable[[sqlite3.Connection], None], first_broken: int
) -> None:
    with intruder(world / "store.db") as db:
        tamper(db)
    report = await verify_audit(world)
    assert not report.ok
    assert report.first_broken == first_broken, report.reason
    assert str(first_broken) in report.reason


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(sql("DELETE FROM audit WHERE sequence = 5"), id="truncated-tail"),
        pytest.param(rewrite_and_rehash, id="rehashed-tail"),
    ],
)
async def test_what_the_chain_alone_cannot_see(world: Path, tamper: Callable[[sqlite3.Connection], None]) -> None:
    """Documents the limit: a rewritten or cut *tail* verifies; catching it needs the head hash kept elsewhere."""
    with intruder(world / "store.db") as db:
        tamper(db)
        if tamper is rewrite_and_rehash:  # ...and every later record, which an intruder with the file can do
            for sequence in (4, 5):
                changed, _ = stored_record(db, sequence)
                (previous,) = db.execute("SELECT hash FROM audit WHERE sequence = ?", (sequence - 1,)).fetchone()
                db.execute(
                    "UPDATE audit SET previous_hash = ?, hash = ? WHERE sequence = ?",
                    (previous, chain_hash(previous, changed), sequence),
                )
    assert (await verify_audit(world)).ok


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(sql("DELETE FROM audit WHERE sequence = 5"), id="truncated-tail"),
        pytest.param(sql("DELETE FROM audit"), id="emptied"),
        pytest.param(sql("DELETE FROM audit WHERE sequence = 5", "UPDATE audit SET reason = 'x' WHERE sequence = 4"),
                     id="cut-and-rewritten"),
    ],
)
async def test_a_head_kept_elsewhere_catches_a_cut_tail(world: Path, tamper: Callable[[sqlite3.Connection], None]) -> None:
    """What the chain alone cannot see, the head printed by an earlier verify can: ``--anchor``."""
    head = (await verify_audit(world)).head
    assert head is not None and head.sequence == RECORDS
    with intruder(world / "store.db") as db:
        tamper(db)
    report = await verify_audit(world, anchors=[head])
    assert not report.ok and report.first_broken is not None and report.first_broken <= RECORDS, report.reason


def test_audit_verify_prints_the_head_and_takes_it_back_as_an_anchor(world: Path) -> None:
    """The CLI end to end: verify prints the head; after the tail is cut, --anchor with it exits 1."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "gateway.cli", "audit", "verify", str(world)]
    intact = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    (head,) = [line.split()[1] for line in intact.splitlines() if line.startswith("head ")]
    with intruder(world / "store.db") as db:
        db.execute("DELETE FROM audit WHERE sequence = 5")
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0  # the chain alone: intact
    cut = subprocess.run([*command, "--anchor", head], capture_output=True, text=True)
    assert cut.returncode == 1 and "tail was cut" in cut.stdout
    assert subprocess.run([*command, "--anchor", "nonsense"], capture_output=True, text=True).returncode == 2


async def test_the_store_refuses_to_rewrite_its_log(world: Path) -> None:
    with contextlib.closing(sqlite3.connect(world / "store.db")) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE audit SET reason = 'x' WHERE sequence = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit WHERE sequence = 1")


async def test_verifying_leaves_the_evidence_alone(world: Path) -> None:
    with intruder(world / "store.db") as db:
        db.execute("DELETE FROM audit WHERE sequence = 3")
    before = (world / "store.db").read_bytes()
    await verify_audit(world)
    assert (world / "store.db").read_bytes() == before
    with contextlib.closing(sqlite3.connect(world / "store.db")) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (0,)


async def test_appending_after_tampering_keeps_the_break_visible(world: Path) -> None:
    with intruder(world / "store.db") as db:
        db.execute("UPDATE audit SET reason = 'refused' WHERE sequence = 2")
    async with SqliteStore(world / "store.db") as store:
        await store.append_audit(entry(6))
    report = await verify_audit(world)
    assert (report.first_broken, report.records) == (2, RECORDS + 1)


# --- verify_audit and the factory --------------------------------------------------------


async def test_verify_audit_uses_the_configured_store(tmp_path: Path) -> None:
    write_default_config(tmp_path, store={"url": "sqlite:///state/gateway.db"})
    (tmp_path / "state").mkdir()
    async with SqliteStore(tmp_path / "state" / "gateway.db") as store:
        await store.append_audit(entry(1))
    assert (await verify_audit(tmp_path)).records == 1


async def test_verify_audit_takes_an_explicit_url(world: Path, tmp_path: Path) -> None:
    assert (await verify_audit(tmp_path / "elsewhere", f"sqlite:///{world / 'store.db'}")).records == RECORDS


async def test_verify_audit_without_a_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no store"):
        await verify_audit(tmp_path)
    assert not (tmp_path / "store.db").exists()


async def test_verify_audit_takes_the_url_of_either_backend(store_factory: StoreOpener, tmp_path: Path) -> None:
    store = await store_factory.open()
    for n in range(1, RECORDS + 1):
        await store.append_audit(entry(n))
    await store.close()
    report = await verify_audit(tmp_path / "elsewhere", store_factory.url)
    assert (report.ok, report.records) == (True, RECORDS)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_names_a_postgresql_store_not_yet_opened(tmp_path: Path, scheme: str) -> None:
    store = open_store(f"{scheme}://gateway@localhost:5432/dcc?schema=tenant_1", world_dir=tmp_path)
    assert isinstance(store, PostgresStore) and store.schema == "tenant_1"
    default = open_store(f"{scheme}://gateway@localhost/dcc", world_dir=tmp_path)
    assert isinstance(default, PostgresStore) and default.schema == "dcc_gateway"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///store.db", "WORLD/store.db", id="relative"),
        pytest.param("sqlite:///state/store.db", "WORLD/state/store.db", id="relative-subdir"),
        pytest.param("sqlite:////var/lib/dcc/store.db", "/var/lib/dcc/store.db", id="absolute"),
        pytest.param("store.db", "WORLD/store.db", id="plain-relative"),
        pytest.param("/var/lib/dcc/store.db", "/var/lib/dcc/store.db", id="plain-absolute"),
        pytest.param("sqlite:///:memory:", None, id="memory"),
    ],
)
def test_sqlite_urls(tmp_path: Path, url: str, expected: str | None) -> None:
    resolved = None if expected is None else Path(expected.replace("WORLD", str(tmp_path)))
    assert sqlite_path(url, world_dir=tmp_path) == resolved


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://host/x.db", "sqlite:///"])
def test_other_urls_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url, world_dir=tmp_path)


async def test_the_default_url_opens_a_store_in_the_world(tmp_path: Path) -> None:
    assert default_store_url() == "sqlite:///store.db"
    store = open_store(default_store_url(), world_dir=tmp_path)
    await store.open()
    try:
        await store.append_audit(entry(1))
    finally:
        await store.close()
    assert (tmp_path / "store.db").is_file()


async def test_an_in_memory_store_works_for_throwaway_use(tmp_path: Path) -> None:
    store = open_store("sqlite:///:memory:", world_dir=tmp_path)
    await store.open()
    try:
        assert (await store.append_audit(entry(1))).sequence == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    "entry",
    [
        AuditEntry(dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC), "request", "90-B3-D5-1F-30-01-00-00", "a:b:1", "I99", "", {}),
        AuditEntry(
            dt.datetime(2026, 6, 1, 13, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "dcc-alert", 'quote " and \\ back', "subject\nline", "AD1", "raison d’être ✓ \u2028",
            {"z": [1, 2.5, None, True], "a": {"nested": "é", "when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
             "eui": Eui64.parse("00-DB-12-34-56-78-90-A0"), "big": 2**63 + 1},
        ),
    ],
    ids=["plain", "escapes-nesting-and-types"],
)
def test_hashing_the_stored_texts_gives_the_hash_of_the_decoded_entry(entry: AuditEntry) -> None:
    """The store hashes the texts it writes; a verifier hashes the entry it decodes: the same digest."""
    at, detail = utc_text(entry.at), canonical_json(entry.detail)
    decoded = dataclasses.replace(entry, at=parse_utc_text(at), detail=json.loads(detail))
    stored = chain_hash_of_stored(GENESIS_HASH, at, entry.kind, entry.actor, entry.subject, entry.outcome, entry.reason, detail)
    assert stored == chain_hash(GENESIS_HASH, decoded)

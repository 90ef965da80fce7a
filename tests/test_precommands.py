"""Pending Pre-Commands (the critical flow, CV4 -> CV5): remembered once, taken at most once.

A Pre-Command issued on CV4 is kept per RequestID; CV5 under the same RequestID
takes it for the E42 comparison. "At most once" must hold across connections and
processes, since several gateway workers may share one database. Every test of
that contract runs on each store backend (``store_factory``: SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.eui64 import Eui64
from gateway.gbcs.payment_mode import build_update_payment_mode_precommand
from gateway.store.audit import verify_chain
from gateway.store.base import (
    Admission,
    AdmissionRequest,
    AuditEntry,
    IssuedPreCommand,
    PendingPreCommand,
    PreCommandConflict,
    Store,
)
from gateway.store.sqlite import SqliteStore
from tests.store_backends import StoreOpener

UTC = dt.UTC
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIFETIME = dt.timedelta(hours=24)
SECOND = dt.timedelta(seconds=1)
SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
OTHER_USER = Eui64.parse("90-B3-D5-1F-30-AA-00-02")
ESME = Eui64.parse("00-DB-12-34-56-78-90-A0")
REQUEST_ID = f"{SUPPLIER}:{ESME}:1002"

APDU = build_update_payment_mode_precommand(
    counter=1002, originator=SUPPLIER, recipient=ESME, device_type="ESME", to_credit=True
).encode()
"""A real unsigned GBCS general-signing APDU (ECS02, Set ESME to Credit)."""


def issued_audit(request_id: str = REQUEST_ID) -> AuditEntry:
    return AuditEntry(T0, "request", str(SUPPLIER), request_id, "I0", "Pre-Command issued", {"apdu": APDU.hex()})


async def remember(
    store: Store, request_id: str = REQUEST_ID, *, apdu: bytes = APDU, user: Eui64 = SUPPLIER
) -> None:
    await store.remember_precommand(request_id, user, ESME, apdu, T0, T0 + LIFETIME, issued_audit(request_id))


async def audit_outcomes(store: Store) -> list[tuple[str, str]]:
    return [(r.entry.subject, r.entry.outcome) async for r in store.audit_records()]


@pytest.fixture
async def path(tmp_path: Path) -> Path:
    """For the SQLite-only tests (the file's schema history)."""
    return tmp_path / "store.db"


@pytest.fixture
async def store(store_factory: StoreOpener) -> Store:
    return await store_factory.open()


@contextlib.contextmanager
def raw_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path)
    try:
        yield connection
        connection.commit()
    finally:
        connection.close()


# --- remember / take --------------------------------------------------------------------


async def test_the_issued_precommand_is_taken_once(store: Store) -> None:
    await remember(store)
    taken = await store.take_precommand(REQUEST_ID, SUPPLIER, T0 + SECOND)
    assert taken == PendingPreCommand(REQUEST_ID, SUPPLIER, ESME, APDU, T0, T0 + LIFETIME)
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0 + 2 * SECOND) is None


async def test_an_unknown_request_id_takes_nothing(store: Store) -> None:
    await remember(store)
    assert await store.take_precommand(f"{SUPPLIER}:{ESME}:1003", SUPPLIER, T0) is None


async def test_another_user_cannot_take_it_and_the_owner_still_can(store: Store) -> None:
    await remember(store)
    assert await store.take_precommand(REQUEST_ID, OTHER_USER, T0) is None
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0) is not None


@pytest.mark.parametrize(
    ("offset", "taken"),
    [
        pytest.param(-SECOND, True, id="1s-before-expiry"),
        pytest.param(dt.timedelta(0), False, id="at-expiry"),
        pytest.param(SECOND, False, id="1s-after-expiry"),
    ],
)
async def test_expiry_is_exclusive(store: Store, offset: dt.timedelta, taken: bool) -> None:
    await remember(store)
    result = await store.take_precommand(REQUEST_ID, SUPPLIER, T0 + LIFETIME + offset)
    assert (result is not None) is taken


async def test_an_expired_take_consumes_nothing_and_an_expiry_before_issue_is_refused(store: Store) -> None:
    await remember(store)
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0 + LIFETIME + SECOND) is None
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0 + LIFETIME - SECOND) is not None  # the clock went back
    with pytest.raises(ValueError, match="expires after"):
        await store.remember_precommand("RQ-2", SUPPLIER, ESME, APDU, T0, T0, issued_audit("RQ-2"))


# --- remembering twice ------------------------------------------------------------------


async def test_remembering_the_same_precommand_again_is_a_no_op(store: Store) -> None:
    await remember(store)
    await remember(store)
    assert await audit_outcomes(store) == [(REQUEST_ID, "I0")]  # recorded once


async def test_a_different_precommand_under_a_known_request_id_is_refused(store: Store) -> None:
    await remember(store)
    with pytest.raises(PreCommandConflict, match="already remembered"):
        await remember(store, apdu=APDU + b"\x00")
    with pytest.raises(PreCommandConflict):
        await remember(store, user=OTHER_USER)
    taken = await store.take_precommand(REQUEST_ID, SUPPLIER, T0)
    assert taken is not None and taken.apdu == APDU  # nothing was replaced
    assert await audit_outcomes(store) == [(REQUEST_ID, "I0")]


async def test_remembering_a_taken_precommand_does_not_rearm_it(store: Store) -> None:
    await remember(store)
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0) is not None
    await remember(store)
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0) is None


async def test_remember_is_audited_in_its_transaction_and_the_chain_verifies(store: Store) -> None:
    await remember(store)
    await store.take_precommand(REQUEST_ID, SUPPLIER, T0)
    records = [r async for r in store.audit_records()]
    assert [(r.entry.kind, r.entry.outcome, r.entry.detail["apdu"]) for r in records] == [("request", "I0", APDU.hex())]
    assert (await verify_chain(store.audit_records())).ok


# --- restarts and several workers -------------------------------------------------------


async def test_a_precommand_survives_reopen_and_so_does_its_consumption(store_factory: StoreOpener) -> None:
    store = await store_factory.open()
    await remember(store)
    await store.close()
    store = await store_factory.open()
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0) is not None
    await store.close()
    store = await store_factory.open()
    assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0) is None


async def test_two_connections_take_it_exactly_once(store_factory: StoreOpener) -> None:
    one, two = await store_factory.open(), await store_factory.open()
    ids = [f"{SUPPLIER}:{ESME}:{n}" for n in range(20)]
    for request_id in ids:
        await remember(one, request_id)
    takes = [store.take_precommand(rid, SUPPLIER, T0) for rid in ids for store in (one, two, one, two)]
    results = await asyncio.gather(*takes)
    taken = [r.request_id for r in results if r is not None]
    assert sorted(taken) == sorted(ids)  # each one exactly once


_TAKER_SCRIPT = """
import asyncio, datetime as dt, json, sys, time
from pathlib import Path
from gateway.store.factory import open_store
from tests.test_precommands import SUPPLIER, ESME, T0

async def main(url, start_at, count):
    async with open_store(url, world_dir=Path(".")) as store:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        taken = []
        for n in range(count):
            if await store.take_precommand(f"{SUPPLIER}:{ESME}:{n}", SUPPLIER, T0) is not None:
                taken.append(n)
    print(json.dumps(taken))

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""


async def run_taker(url: str, start_at: float, count: int) -> list[int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _TAKER_SCRIPT,
        url,
        str(start_at),
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    taken: list[int] = json.loads(stdout)
    return taken


async def test_two_processes_take_each_precommand_exactly_once(store_factory: StoreOpener) -> None:
    count = 60
    store = await store_factory.open()
    for n in range(count):
        await remember(store, f"{SUPPLIER}:{ESME}:{n}")
    await store.close()
    start_at = time.time() + 1.5
    url = store_factory.url
    one, two = await asyncio.gather(run_taker(url, start_at, count), run_taker(url, start_at, count))
    assert sorted(one + two) == list(range(count))


# --- the schema -------------------------------------------------------------------------


async def test_a_version_1_file_from_before_gets_the_new_tables_on_open(path: Path) -> None:
    async with SqliteStore(path) as store:
        await store.append_audit(dataclasses.replace(issued_audit(), kind="directive"))
    with raw_sqlite(path) as db:
        db.execute("DROP TABLE precommands")
        db.execute("DROP TABLE deliveries")
    async with SqliteStore(path) as store:
        await remember(store)
        assert await store.take_precommand(REQUEST_ID, SUPPLIER, T0) is not None
        assert (await verify_chain(store.audit_records())).ok
    with raw_sqlite(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


def cv4_admission(counter: int, *, expires_at: dt.datetime = T0 + LIFETIME) -> AdmissionRequest:
    """A CV4 admission (no command to queue) carrying the Pre-Command it issues."""
    request_id = f"{SUPPLIER}:{ESME}:{counter}"
    return AdmissionRequest(
        originator=SUPPLIER, target=ESME, counter=counter, request_id=request_id, user_id=SUPPLIER,
        service_reference_variant="1.6", at=T0, adt_window_seconds=None, adt_threshold=None, raw_request=b"<x/>",
        audit=AuditEntry(T0, "request", str(SUPPLIER), request_id, "I99", ""),
        precommand=IssuedPreCommand(ESME, APDU, expires_at, issued_audit(request_id)),
    )


async def test_an_admitted_cv4_remembers_its_pre_command_in_the_same_transaction(store: Store) -> None:
    first = await store.admit(cv4_admission(1002))
    replayed = await store.admit(cv4_admission(1002))
    assert (first.admission, replayed.admission) == (Admission.ACCEPTED, Admission.REPLAY)
    taken = await store.take_precommand(REQUEST_ID, SUPPLIER, T0 + SECOND)
    assert taken is not None and (taken.apdu, taken.device_id, taken.expires_at) == (APDU, ESME, T0 + LIFETIME)
    # the admission's record, then the Pre-Command's, then the replay's; nothing remembered for the replay
    assert await audit_outcomes(store) == [(REQUEST_ID, "I99"), (REQUEST_ID, "I0"), (REQUEST_ID, "E40")]
    assert (await verify_chain(store.audit_records())).ok


async def test_a_pre_command_that_expires_before_its_admission_is_refused_before_anything_is_stored(store: Store) -> None:
    with pytest.raises(ValueError, match="expires after it is issued"):
        await store.admit(cv4_admission(1002, expires_at=T0))
    assert await audit_outcomes(store) == []
    assert await store.last_counter(SUPPLIER, ESME) is None

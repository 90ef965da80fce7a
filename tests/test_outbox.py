"""The durable outbox: async results and alerts POSTed to users' response_url.

Receivers are real aiohttp servers on 127.0.0.1; a receiver that is "down" is a
free port with nothing listening (connection refused). Decisions follow the
FixedClock, advanced by hand to one second either side of every limit:
backoff steps, the 300 s round, the 2-day failed queue. The outbox's store
contract runs on each backend (``store_factory``: SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web

from gateway.clock import FixedClock
from gateway.deliver import DEFAULT_BACKOFF, DeliveryWorker, retry_delay
from gateway.eui64 import Eui64
from gateway.store.audit import verify_chain
from gateway.store.base import (
    AuditEntry,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    PendingDelivery,
    Store,
)
from gateway.store.sqlite import SqliteStore
from tests.store_backends import StoreOpener

UTC = dt.UTC
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
ROUND = dt.timedelta(seconds=300)
KEEP = dt.timedelta(days=2)
SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
OTHER_USER = Eui64.parse("90-B3-D5-1F-30-AA-00-02")
BODY = b'<?xml version="1.0"?><sr:Response xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway">I0</sr:Response>'


# --- receivers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Receiver:
    """A user's Receive Response Service: answers with ``statuses`` in turn, then 200."""

    def __init__(self, port: int, clock: FixedClock, statuses: Sequence[int] = (), delay: float = 0.0) -> None:
        self.port = port
        self.clock = clock
        self.statuses = list(statuses)
        self.delay = delay
        self.received: list[tuple[dt.datetime, bytes, str, int]] = []
        """(clock time, body, Content-Type, status answered)"""
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/receive"

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body, _, status in self.received if 200 <= status < 300]

    @property
    def times(self) -> list[dt.timedelta]:
        return [at - T0 for at, _, _, _ in self.received]

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            if self.delay < 0:  # hang until released (a receiver that never answers)
                await self.release.wait()
            elif self.delay:
                await asyncio.sleep(self.delay)
            status = self.statuses.pop(0) if self.statuses else 200
            self.received.append((self.clock.now(), body, request.headers.get("Content-Type", ""), status))
            headers = {"Location": "http://127.0.0.1:1/elsewhere"} if 300 <= status < 400 else None
            return web.Response(status=status, headers=headers)
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/receive", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """For the tests of the worker against a SQLite store subclass (not of the Store contract)."""
    return tmp_path / "store.db"


@pytest.fixture
async def store(store_factory: StoreOpener) -> Store:
    """A store of each backend (SQLite and PostgreSQL): the outbox contract holds on both."""
    return await store_factory.open()


@pytest.fixture
async def receivers(clock: FixedClock) -> AsyncIterator[list[Receiver]]:
    """Receivers made by a test; all stopped at the end."""
    made: list[Receiver] = []
    yield made
    for receiver in made:
        await receiver.stop()


@pytest.fixture
async def workers() -> AsyncIterator[list[DeliveryWorker]]:
    made: list[DeliveryWorker] = []
    yield made
    for worker in made:
        await worker.stop()


async def receiver_on(receivers: list[Receiver], clock: FixedClock, *, port: int | None = None,
                      statuses: Sequence[int] = (), delay: float = 0.0, start: bool = True) -> Receiver:
    receiver = Receiver(port or free_port(), clock, statuses, delay)
    receivers.append(receiver)
    if start:
        await receiver.start()
    return receiver


def worker_for(
    workers: list[DeliveryWorker], store: Store, clock: FixedClock, **options: object
) -> DeliveryWorker:
    settings: dict[str, object] = {"attempt_timeout": 2.0, "poll_interval": 0.05, **options}
    worker = DeliveryWorker(store, clock, **settings)  # type: ignore[arg-type]
    workers.append(worker)
    return worker


def delivery(url: str, *, user: Eui64 = SUPPLIER, subject: str = "RQ-1", body: bytes = BODY,
             at: dt.datetime = T0, audit: AuditEntry | None = None) -> Delivery:
    return Delivery(user, url, body, DeliveryKind.RESPONSE, subject, at, audit)


async def statuses(database: StoreOpener) -> dict[int, str]:
    """Every delivery's status as stored, read from the database itself."""
    return {int(delivery_id): status for delivery_id, status in await database.query(
        "SELECT delivery_id, status FROM deliveries"
    )}


async def delivery_log(store: Store) -> list[str]:
    return [r.entry.outcome async for r in store.audit_records() if r.entry.kind == "delivery"]


async def chain_ok(store: Store) -> bool:
    return (await verify_chain(store.audit_records())).ok


async def eventually(condition: object, timeout: float = 5.0) -> None:
    """Waits (real time) until ``condition()`` holds: for the run() loop tests only."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def run_until(worker: DeliveryWorker, clock: FixedClock, until: dt.datetime, step: dt.timedelta = SECOND) -> None:
    """One pass at every ``step`` of the clock up to and including ``until``."""
    while True:
        await worker.run_once()
        if clock.now() >= until:
            return
        clock.advance(step)


# --- one attempt ------------------------------------------------------------------------


async def test_a_delivery_is_posted_as_signed_xml_and_audited(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker], store_factory: StoreOpener
) -> None:
    receiver = await receiver_on(receivers, clock)
    decision = AuditEntry(T0, "request", str(SUPPLIER), "RQ-1", "I0", "device answered", {"srv": "1.6"})
    delivery_id = await store.enqueue_delivery(delivery(receiver.url, audit=decision))
    assert await worker_for(workers, store, clock).run_once() == 1
    assert [(body, ctype) for _, body, ctype, _ in receiver.received] == [(BODY, "application/xml")]
    assert await statuses(store_factory) == {delivery_id: "delivered"}
    records = [r.entry async for r in store.audit_records()]
    expected = [("request", "I0"), ("delivery", "enqueued"), ("delivery", "delivered")]
    assert [(e.kind, e.outcome) for e in records] == expected
    assert records[0].detail["delivery_id"] == delivery_id  # the decision names its delivery
    assert records[1].detail["body_sha256"] and records[2].subject == "RQ-1"
    assert await chain_ok(store)


@pytest.mark.parametrize(
    ("status", "delivered"),
    [pytest.param(s, True, id=str(s)) for s in (200, 201, 202, 204)]
    + [pytest.param(s, False, id=str(s)) for s in (302, 400, 404, 429, 500, 503)],
)
async def test_only_2xx_is_delivered(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker],
    status: int, delivered: bool,
) -> None:
    receiver = await receiver_on(receivers, clock, statuses=[status])
    await store.enqueue_delivery(delivery(receiver.url))
    assert await worker_for(workers, store, clock).run_once() == int(delivered)
    assert len(receiver.received) == 1  # a redirect is not followed
    assert (await delivery_log(store))[-1] == ("delivered" if delivered else "retry-scheduled")


async def test_a_receiver_that_is_down_then_up_gets_it_on_the_retry(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker], store_factory: StoreOpener
) -> None:
    receiver = await receiver_on(receivers, clock, start=False)  # connection refused
    delivery_id = await store.enqueue_delivery(delivery(receiver.url))
    worker = worker_for(workers, store, clock)
    assert await worker.run_once() == 0
    records = [r.entry async for r in store.audit_records()]
    assert "Connect" in records[-1].detail["error"]  # connection refused
    assert records[-1].detail["next_attempt_at"] == "2026-06-01T12:00:01.000000Z"
    await receiver.start()
    assert await worker.run_once() == 0  # not due yet: the first backoff step is 1 s
    clock.advance(SECOND)
    assert await worker.run_once() == 1
    assert receiver.bodies == [BODY] and await statuses(store_factory) == {delivery_id: "delivered"}
    assert await delivery_log(store) == ["enqueued", "retry-scheduled", "delivered"]
    assert await chain_ok(store)


async def test_500_then_200(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    receiver = await receiver_on(receivers, clock, statuses=[500])
    await store.enqueue_delivery(delivery(receiver.url))
    worker = worker_for(workers, store, clock)
    await run_until(worker, clock, T0 + 5 * SECOND)
    assert [status for *_, status in receiver.received] == [500, 200]
    assert receiver.times == [dt.timedelta(0), SECOND]
    assert await delivery_log(store) == ["enqueued", "retry-scheduled", "delivered"]


async def test_a_receiver_that_never_answers_times_out_and_others_are_still_served(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    hanging = await receiver_on(receivers, clock, delay=-1)
    good = await receiver_on(receivers, clock)
    await store.enqueue_delivery(delivery(hanging.url, subject="RQ-hang"))
    await store.enqueue_delivery(delivery(good.url, subject="RQ-good"))
    assert await worker_for(workers, store, clock, attempt_timeout=0.3).run_once() == 1
    assert good.bodies == [BODY]
    retry = [r.entry async for r in store.audit_records() if r.entry.outcome == "retry-scheduled"]
    assert [(e.subject, "Timeout" in e.detail["error"]) for e in retry] == [("RQ-hang", True)]


# --- the schedule -----------------------------------------------------------------------


def test_the_default_backoff_steps() -> None:
    steps = [retry_delay(DEFAULT_BACKOFF, n).total_seconds() for n in range(1, 11)]
    assert steps == [1, 2, 4, 8, 16, 30, 60, 60, 60, 60]
    with pytest.raises(ValueError):
        retry_delay(DEFAULT_BACKOFF, 0)


async def test_backoff_schedule_then_failed_queue_at_300_s(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker], store_factory: StoreOpener
) -> None:
    """A pass every second of the round: attempts fall exactly on the schedule, none early or late."""
    receiver = await receiver_on(receivers, clock, statuses=[500] * 1000)
    delivery_id = await store.enqueue_delivery(delivery(receiver.url))
    worker = worker_for(workers, store, clock)
    await run_until(worker, clock, T0 + ROUND - SECOND)
    assert [t.total_seconds() for t in receiver.times] == [0, 1, 3, 7, 15, 31, 61, 121, 181, 241]
    assert await statuses(store_factory) == {delivery_id: "pending"} and await store.failed_deliveries(SUPPLIER) == []
    clock.advance(SECOND)  # 300 s: the round is over (the store tests cover 299/300/301 s)
    await worker.run_once()
    [failed] = await store.failed_deliveries(SUPPLIER)
    assert (failed.delivery_id, failed.status, failed.failed_at, failed.attempts) == (
        delivery_id, DeliveryStatus.FAILED, T0 + ROUND, 10
    )
    clock.advance(SECOND)
    await worker.run_once()
    assert failed.last_error == "HTTP 500"
    assert len(receiver.received) == 10  # a failed delivery is not attempted
    assert await delivery_log(store) == ["enqueued", *["retry-scheduled"] * 10, "failed"]
    assert await chain_ok(store)


async def test_a_custom_backoff_is_followed(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    receiver = await receiver_on(receivers, clock, statuses=[503] * 100)
    await store.enqueue_delivery(delivery(receiver.url))
    await run_until(worker_for(workers, store, clock, backoff=(5, 50)), clock, T0 + 120 * SECOND)
    assert [t.total_seconds() for t in receiver.times] == [0, 5, 55, 105]


@pytest.mark.parametrize(
    ("age", "failed"),
    [
        pytest.param(ROUND - SECOND, False, id="299s"),
        pytest.param(ROUND, True, id="300s"),
        pytest.param(ROUND + SECOND, True, id="301s"),
    ],
)
async def test_the_round_is_300_s(store: Store, age: dt.timedelta, failed: bool) -> None:
    await store.enqueue_delivery(delivery("http://127.0.0.1:1/receive"))
    assert await store.fail_overdue(T0 + age) == int(failed)
    assert len(await store.failed_deliveries(SUPPLIER)) == int(failed)


async def test_a_delivery_overdue_at_start_up_gets_one_attempt_first(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    """The gateway was down for the whole round: the pass attempts what is due, then fails the overdue."""
    receiver = await receiver_on(receivers, clock, statuses=[500])
    await store.enqueue_delivery(delivery(receiver.url))
    clock.set(T0 + ROUND + SECOND)
    await worker_for(workers, store, clock).run_once()
    assert len(receiver.received) == 1 and len(await store.failed_deliveries(SUPPLIER)) == 1


# --- the failed queue -------------------------------------------------------------------


async def fail_one(store: Store, url: str, *, user: Eui64 = SUPPLIER, subject: str = "RQ-1") -> int:
    delivery_id = await store.enqueue_delivery(delivery(url, user=user, subject=subject))
    assert await store.fail_overdue(T0 + ROUND) >= 1
    return delivery_id


async def test_failed_deliveries_are_purged_after_2_days(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    receiver = await receiver_on(receivers, clock, start=False)
    await fail_one(store, receiver.url)  # failed at T0 + 300 s
    worker = worker_for(workers, store, clock)
    clock.set(T0 + ROUND + KEEP - SECOND)
    await worker.run_once()
    assert len(await store.failed_deliveries(SUPPLIER)) == 1
    clock.advance(2 * SECOND)
    await worker.run_once()
    assert await store.failed_deliveries(SUPPLIER) == []
    assert await delivery_log(store) == ["enqueued", "failed", "purged"]
    assert await chain_ok(store)


async def test_delivered_rows_go_after_2_days_oldest_first_with_one_audit_record(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker], store_factory: StoreOpener
) -> None:
    """Delivered rows (and their bodies) would otherwise pile up for good: each is deleted once it
    was delivered 2 days ago, in bounded batches, oldest first. The audit log keeps its own
    "delivered" record and gains one record per batch naming the rows deleted."""
    receiver = await receiver_on(receivers, clock)
    worker = worker_for(workers, store, clock)
    delivered = []
    for n in range(3):  # delivered at T0, T0 + 1 h, T0 + 2 h
        delivered.append(await store.enqueue_delivery(delivery(receiver.url, subject=f"RQ-{n}", at=clock.now())))
        assert await worker.run_once() == 1
        clock.advance(HOUR)
    failed = await fail_one(store, "http://127.0.0.1:1/receive", subject="RQ-failed")
    assert await store.purge_delivered(T0 + KEEP - SECOND) == 0
    assert await store.purge_delivered(T0 + 2 * HOUR + KEEP, limit=2) == 2
    assert await statuses(store_factory) == {delivered[2]: "delivered", failed: "failed"}
    last = [r.entry async for r in store.audit_records()][-1]
    assert (last.kind, last.subject, last.outcome) == ("delivery", "delivered", "purged")
    assert last.detail["delivery_ids"] == delivered[:2]
    clock.set(T0 + 2 * HOUR + KEEP)
    await worker.run_once()  # every pass purges too
    assert await statuses(store_factory) == {}  # the failed one has been failed for longer than 2 days too
    outcomes = await delivery_log(store)
    assert outcomes.count("delivered") == 3 and outcomes.count("purged") == 3
    assert await chain_ok(store)


@pytest.mark.parametrize(("offset", "purged"), [(-SECOND, 0), (dt.timedelta(0), 1), (SECOND, 1)])
async def test_purge_boundary(store: Store, offset: dt.timedelta, purged: int) -> None:
    await fail_one(store, "http://127.0.0.1:1/receive")
    assert await store.purge_failed(T0 + ROUND + KEEP + offset) == purged


async def test_redeliver_failed_starts_a_new_round_for_that_user_only(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker], store_factory: StoreOpener
) -> None:
    receiver = await receiver_on(receivers, clock, start=False)
    mine = await fail_one(store, receiver.url, subject="RQ-mine")
    theirs = await fail_one(store, receiver.url, user=OTHER_USER, subject="RQ-theirs")
    redelivered_at = T0 + dt.timedelta(hours=5)
    clock.set(redelivered_at)
    assert await store.redeliver_failed(SUPPLIER, redelivered_at) == 1
    assert [d.delivery_id for d in await store.failed_deliveries(OTHER_USER)] == [theirs]
    assert await store.failed_deliveries(SUPPLIER) == []
    worker = worker_for(workers, store, clock)
    await run_until(worker, clock, redelivered_at + ROUND - SECOND)  # the receiver is still down
    assert (await statuses(store_factory))[mine] == "pending"  # a new round of 300 s from the redelivery
    await receiver.start()
    clock.advance(dt.timedelta(seconds=60))
    assert await worker.run_once() == 1
    assert receiver.bodies == [BODY] and await statuses(store_factory) == {mine: "delivered", theirs: "failed"}
    mine_log = [r.entry.outcome async for r in store.audit_records() if r.entry.subject == "RQ-mine"]
    assert mine_log == ["enqueued", "failed", "redelivery", *["retry-scheduled"] * 10, "delivered"]
    assert await chain_ok(store)


async def test_an_attempt_in_flight_when_the_round_ended_still_counts(store: Store, store_factory: StoreOpener) -> None:
    [claimed] = [await store.enqueue_delivery(delivery("http://127.0.0.1:1/receive"))]
    assert len(await store.due_deliveries(T0 + ROUND - SECOND, 10, lease=dt.timedelta(seconds=20))) == 1
    assert await store.fail_overdue(T0 + ROUND) == 1
    assert await store.record_attempt(claimed, T0 + ROUND + SECOND, False, "HTTP 500", None) is DeliveryStatus.FAILED
    assert await store.record_attempt(claimed, T0 + ROUND + SECOND, True, None, None) is DeliveryStatus.DELIVERED
    assert await statuses(store_factory) == {claimed: "delivered"}
    assert await store.record_attempt(9999, T0, True, None, None) is None


async def test_a_failed_attempt_without_a_next_time_goes_to_the_failed_queue(store: Store) -> None:
    delivery_id = await store.enqueue_delivery(delivery("http://127.0.0.1:1/receive"))
    assert await store.record_attempt(delivery_id, T0, False, "gone", None) is DeliveryStatus.FAILED
    [failed] = await store.failed_deliveries(SUPPLIER)
    assert (failed.failed_at, failed.last_error) == (T0, "gone")


# --- restarts, leases and several workers -----------------------------------------------


async def test_the_outbox_survives_reopen(
    store_factory: StoreOpener, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    receiver = await receiver_on(receivers, clock)
    store = await store_factory.open()
    delivery_id = await store.enqueue_delivery(delivery(receiver.url))
    await store.close()
    store = await store_factory.open()
    assert await worker_for(workers, store, clock).run_once() == 1
    assert await delivery_log(store) == ["enqueued", "delivered"]
    assert await chain_ok(store)
    assert receiver.bodies == [BODY] and await statuses(store_factory) == {delivery_id: "delivered"}


async def test_an_unrecorded_attempt_is_made_again_after_the_lease(
    store_factory: StoreOpener, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    """At least once: a worker claimed it and died before recording; another delivers it after the lease."""
    receiver = await receiver_on(receivers, clock)
    lease = dt.timedelta(seconds=20)
    crashed = await store_factory.open()
    await crashed.enqueue_delivery(delivery(receiver.url))
    assert len(await crashed.due_deliveries(T0, 10, lease=lease)) == 1
    await crashed.close()
    worker = worker_for(workers, await store_factory.open(), clock, lease=lease)
    clock.set(T0 + lease - SECOND)
    assert await worker.run_once() == 0  # still claimed
    clock.advance(SECOND)
    assert await worker.run_once() == 1
    assert receiver.bodies == [BODY]


async def test_two_workers_on_one_database_post_each_delivery_once(
    store_factory: StoreOpener, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    receiver = await receiver_on(receivers, clock, delay=0.01)
    one, two = await store_factory.open(), await store_factory.open()
    for n in range(40):
        await one.enqueue_delivery(delivery(receiver.url, subject=f"RQ-{n}", body=BODY + str(n).encode()))
    delivered = await asyncio.gather(
        worker_for(workers, one, clock, max_in_flight=4).run_once(),
        worker_for(workers, two, clock, max_in_flight=4).run_once(),
    )
    assert sum(delivered) == 40
    assert await chain_ok(one)
    assert sorted(receiver.bodies) == sorted(BODY + str(n).encode() for n in range(40))


async def test_run_once_keeps_at_most_max_in_flight(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker]
) -> None:
    receiver = await receiver_on(receivers, clock, delay=0.02)
    for n in range(20):
        await store.enqueue_delivery(delivery(receiver.url, subject=f"RQ-{n}"))
    assert await worker_for(workers, store, clock, max_in_flight=4).run_once() == 20
    assert receiver.max_in_flight == 4


# --- the service loop -------------------------------------------------------------------


async def test_run_wakes_on_notify_and_stop_finishes_the_attempt_in_flight(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker], store_factory: StoreOpener
) -> None:
    receiver = await receiver_on(receivers, clock, delay=0.3)
    worker = worker_for(workers, store, clock, poll_interval=60.0)  # only notify() can wake it in time
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)  # the first pass found nothing; the loop sleeps
    delivery_id = await worker.submit(delivery(receiver.url))
    await eventually(lambda: receiver.in_flight == 1, timeout=1.0)
    await worker.stop()  # while the receiver is still answering
    assert task.done() and task.exception() is None
    assert receiver.bodies == [BODY] and await statuses(store_factory) == {delivery_id: "delivered"}
    assert await delivery_log(store) == ["enqueued", "delivered"]


async def test_run_sweeps_expiry_once_an_interval_not_on_every_wake(
    store: Store, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker],
    store_factory: StoreOpener, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load every submitted and finished delivery wakes the loop; the expiry sweep (three
    writes) runs on the first pass and then once a poll interval, however many wakes came."""
    receiver = await receiver_on(receivers, clock)
    worker = worker_for(workers, store, clock, poll_interval=2.0)
    sweeps: list[dt.datetime] = []
    purge_delivered = store.purge_delivered

    async def counted(now: dt.datetime, *args: object, **kwargs: object) -> int:
        sweeps.append(now)
        return await purge_delivered(now, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "purge_delivered", counted)
    task = asyncio.create_task(worker.run())
    await eventually(lambda: len(sweeps) == 1, timeout=1.0)  # the first pass sweeps
    submitted = [await worker.submit(delivery(receiver.url, subject=f"RQ-{n}")) for n in range(10)]
    await eventually(lambda: len(receiver.bodies) == 10, timeout=1.5)
    assert len(sweeps) == 1  # ten submits and ten finished attempts woke it: no sweep before the interval
    await eventually(lambda: len(sweeps) == 2, timeout=5.0)  # and one once the interval is over
    await worker.stop()
    assert task.done() and task.exception() is None
    assert await statuses(store_factory) == {delivery_id: "delivered" for delivery_id in submitted}


async def test_run_stops_on_its_stop_event(
    store: Store, clock: FixedClock, workers: list[DeliveryWorker]
) -> None:
    stop_event = asyncio.Event()
    task = asyncio.create_task(worker_for(workers, store, clock, poll_interval=60.0).run(stop_event))
    await asyncio.sleep(0.05)
    assert not task.done()  # it runs until told to stop, not just once
    stop_event.set()
    assert await asyncio.wait_for(task, timeout=1.0) is None  # well before the 60 s poll interval
    assert task.exception() is None


async def test_run_keeps_max_in_flight_and_survives_a_failing_store(
    path: Path, clock: FixedClock, receivers: list[Receiver], workers: list[DeliveryWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FlakyStore(SqliteStore):
        """The first claim fails as a locked database would."""

        calls = 0

        async def due_deliveries(
            self, now: dt.datetime, limit: int, *, lease: dt.timedelta | None = None
        ) -> list[PendingDelivery]:
            self.calls += 1
            if self.calls == 1:
                raise sqlite3.OperationalError("database is locked")
            return await super().due_deliveries(now, limit, lease=lease)

    receiver = await receiver_on(receivers, clock, delay=0.02)
    async with FlakyStore(path) as store:
        for n in range(30):
            await store.enqueue_delivery(delivery(receiver.url, subject=f"RQ-{n}"))
        worker = worker_for(workers, store, clock, max_in_flight=4, poll_interval=0.05)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: len(receiver.bodies) == 30)
        await worker.stop()
        assert task.done() and task.exception() is None
        assert await delivery_log(store) == ["enqueued"] * 30 + ["delivered"] * 30
    assert receiver.max_in_flight == 4
    assert "claiming due deliveries failed" in caplog.text


# --- what is refused --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        pytest.param("file:///etc/passwd", "response", id="file-url"),
        pytest.param("127.0.0.1:8089/receive", "response", id="no-scheme"),
        pytest.param("http://127.0.0.1:8089/receive", "alert", id="unknown-kind"),
    ],
)
def test_a_bad_delivery_is_refused_before_it_is_stored(url: str, kind: str) -> None:
    with pytest.raises(ValueError):
        Delivery(SUPPLIER, url, BODY, kind, "RQ-1", T0)  # type: ignore[arg-type]


def test_a_kind_may_be_given_as_its_text() -> None:
    alert = Delivery(SUPPLIER, "https://x/", BODY, "device-alert", "E1", T0)  # type: ignore[arg-type]
    assert alert.kind is DeliveryKind.DEVICE_ALERT

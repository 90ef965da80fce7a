"""The outbox worker: POSTs signed results and alerts until they are delivered or the round is over.

The path of one document::

    service signs it -> submit(): store.enqueue_delivery + notify()
    worker: due_deliveries (claimed with a lease) -> POST -> record_attempt
            -> DELIVERED, or due again after the next backoff step
    once a poll interval: fail_overdue (a round lasts max_age: 300 s), purge_failed (kept 2 days)
                and purge_delivered (rows kept 2 days; the audit log keeps the record)

A pass attempts what is due *before* it fails the overdue, as the SEC requires
an attempt within the round: a delivery whose round ended while the gateway was
down still gets one attempt after the restart. The store holds all of it, so a
restarted gateway carries on where it stopped.
Delivery is *at least once*: an attempt whose outcome was not recorded (the
process died, the lease ran out) is made again, and a receiver dedupes by the
document's ResponseID, as DCC users do.

**A receiver that does not answer costs one attempt per backoff step, not one per
delivery.** A receiver is a (user, response_url). When an attempt to it fails for want
of an answer (no connection, a timeout, 5xx or 429), the receiver is *held*: the failed
delivery is its next try, due after a capped exponential backoff with jitter
(:class:`Backoff`: 1, 2, 4 … 60 s, each drawn from its upper half, so ten tries fall
within a 300 s round), and the rest of its backlog is moved past that try in one store
write (``reschedule_deliveries``), out of the way of other receivers' deliveries. While
held, whatever else of it is claimed is left for its lease; once its try has come and is
in flight, no other attempt to it starts. When it answers, its backlog is due at once.
A delivery still undelivered when its round ends goes to the failed queue for 2 days,
as before, whether or not it had an attempt of its own: the receiver it waited for had
one every backoff step. A refusal of one document (another 4xx) holds nothing.

Decisions use only the injected clock and random source; the real event loop is used
only to wait between passes and pace the expiry sweep (``poll_interval``) and to bound
an HTTP attempt (``attempt_timeout``). Leases, holds and backoff are measured on the
injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Self

import aiohttp

from gateway.clock import Clock
from gateway.eui64 import Eui64
from gateway.store.base import (
    DELIVERY_MAX_AGE,
    DELIVERED_KEEP,
    FAILED_DELIVERY_KEEP,
    Delivery,
    PendingDelivery,
    Store,
)

LOG = logging.getLogger("dcc_gateway.delivery")

@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: after the n-th failure in a row the wait is drawn
    uniformly from ``[(1 - jitter) * d, d]``, ``d = min(cap, first * 2 ** (n - 1))``.

    Jitter spreads the tries of many receivers (and of several workers) that failed together,
    so that a receiver coming back is not met by all of them at once; drawing from the upper
    part keeps the waits growing. The defaults give tries at most 1, 3, 7, 15, 31, 63, 123,
    183, 243 s after the first attempt: at least ten attempts within the 300 s round.
    """

    first: float = 1.0
    cap: float = 60.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.cap) or not 0 <= self.jitter < 1:
            raise ValueError(f"backoff needs 0 < first <= cap and 0 <= jitter < 1: {self!r}")

    def delay(self, failures: int, draw: float) -> dt.timedelta:
        """The wait after ``failures`` failures in a row (from 1); ``draw`` in [0, 1) from the random source."""
        if failures < 1:
            raise ValueError(f"failures count from 1: {failures}")
        if not 0 <= draw < 1:
            raise ValueError(f"a draw is in [0, 1): {draw}")
        ceiling = min(self.cap, self.first * 2.0 ** min(failures - 1, 64))
        return dt.timedelta(seconds=ceiling * (1 - self.jitter * draw))


DEFAULT_BACKOFF: Final = Backoff()

_HEADERS: Final = {"Content-Type": "application/xml"}
_MAX_ERROR_TEXT: Final = 200
_MAX_ANSWER_BYTES: Final = 64 * 1024
"""A receiver's answer is read up to this much and ignored (what matters is its status)."""
_RECEIVER_TROUBLE: Final = frozenset({429}) | frozenset(range(500, 600))
"""Statuses that say the receiver cannot take deliveries now (any document), not that it refused this one."""

SessionFactory = Callable[[], aiohttp.ClientSession]
RandomSource = Callable[[], float]
"""Returns a float in [0, 1) (``random.Random().random``), for the jitter."""
ReceiverKey = tuple[Eui64, str]


@dataclass(slots=True)
class _Receiver:
    """What this worker knows of one receiver: held until when, after how many failures in a row."""

    failures: int = 0
    held_until: dt.datetime | None = None
    in_flight: int = 0

    def may_start(self, now: dt.datetime) -> bool:
        if self.failures == 0:
            return True
        return self.held_until is not None and self.held_until <= now and self.in_flight == 0


@dataclass(frozen=True, slots=True)
class _Outcome:
    error: str | None
    """None: delivered (2xx)."""
    receiver_trouble: bool = False
    """The receiver could not take it (no answer, 5xx, 429): hold the receiver, not just this one."""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:_MAX_ERROR_TEXT]


class DeliveryWorker:
    """Delivers the store's outbox; one per process (several on one database share it through leases)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        session_factory: SessionFactory | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        random_source: RandomSource | None = None,
        max_age: dt.timedelta = DELIVERY_MAX_AGE,
        keep_failed: dt.timedelta = FAILED_DELIVERY_KEEP,
        keep_delivered: dt.timedelta = DELIVERED_KEEP,
        poll_interval: float = 1.0,
        attempt_timeout: float = 5.0,
        max_in_flight: int = 16,
        lease: dt.timedelta | None = None,
    ) -> None:
        """``session_factory``: makes the worker's one client session (default: a pooled
        :class:`aiohttp.ClientSession` without cookies). ``random_source``: the jitter's draws
        (default: a generator of this worker's own). ``lease``: how long a claimed delivery is
        hidden from other workers (default: twice the attempt timeout plus 10 s).
        """
        if poll_interval <= 0 or attempt_timeout <= 0 or max_in_flight < 1:
            raise ValueError("poll_interval and attempt_timeout are positive, max_in_flight at least 1")
        if dt.timedelta(seconds=backoff.first) >= max_age:
            raise ValueError("the first backoff step must fall within the round: a retry within max_age")
        self._store = store
        self._clock = clock
        self._session_factory = session_factory or self._default_session
        self._backoff = backoff
        self._random = random_source or random.Random().random
        self._receivers: dict[ReceiverKey, _Receiver] = {}
        """Receivers that failed and have not answered since (healthy ones are not kept)."""
        self._trying: dict[int, _Receiver] = {}
        """Attempts in flight to a held receiver (its try), by delivery id."""
        self._try_window = dt.timedelta(seconds=attempt_timeout + poll_interval)
        """How long after a held receiver's try its backlog is due: the try's outcome is in by then."""
        self._max_age = max_age
        self._keep_failed = keep_failed
        self._keep_delivered = keep_delivered
        self._poll_interval = poll_interval
        self._timeout = aiohttp.ClientTimeout(total=attempt_timeout)
        self._max_in_flight = max_in_flight
        self._lease = lease or dt.timedelta(seconds=2 * attempt_timeout + 10)
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False

    # --- what the service calls ---------------------------------------------------------

    async def submit(self, delivery: Delivery) -> int:
        """Enqueues durably, then wakes the worker; returns the delivery id."""
        delivery_id = await self._store.enqueue_delivery(delivery)
        self.notify()
        return delivery_id

    def notify(self) -> None:
        """Something was enqueued: a sleeping :meth:`run` starts its next pass now."""
        self._wake.set()

    # --- one pass (tests, and the CLI) --------------------------------------------------

    async def run_once(self) -> int:
        """Attempts everything due now (``max_in_flight`` at a time), then fails overdue and purges
        old failed deliveries. Returns how many were delivered."""
        delivered = 0
        while True:
            due = await self._claim(self._max_in_flight)
            startable = self._startable(due, set())
            results = await asyncio.gather(*(self._deliver(delivery) for delivery in startable))
            delivered += sum(results)
            if len(due) < self._max_in_flight:
                break
        await self._expire()
        return delivered

    # --- the service loop ---------------------------------------------------------------

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Delivers until ``stop_event`` is set or :meth:`stop` is called; then lets the attempts in
        flight finish and be recorded, closes the session and returns. A failing pass is logged and
        the loop goes on.

        Every pass starts what is due; the expiry sweep (three writes) runs on the first pass and
        then at most once a poll interval, not on every wake: under load every submitted and every
        finished delivery wakes the loop. A delivery is then failed, or a row purged, at most one
        interval after its time, as an idle loop already allowed.
        """
        if self._running:
            raise RuntimeError("this DeliveryWorker is already running")
        self._running = True
        watcher = None if stop_event is None else asyncio.create_task(self._stop_on(stop_event))
        in_flight: dict[int, asyncio.Task[bool]] = {}
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                await self._logged(self._start_due(in_flight), "claiming due deliveries")
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self._poll_interval
                    await self._logged(self._expire(), "expiring deliveries")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight.values(), return_exceptions=True)
            if watcher is not None:
                watcher.cancel()
            await self.aclose()
            self._finished.set()

    async def stop(self) -> None:
        """Asks :meth:`run` to stop and waits until the attempts in flight are recorded. Final."""
        self._stopping.set()
        self._wake.set()
        if self._running:
            await self._finished.wait()
        else:
            await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP session (made again on the next attempt)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- steps --------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[PendingDelivery]:
        return await self._store.due_deliveries(self._clock.now(), limit, lease=self._lease)

    async def _start_due(self, in_flight: dict[int, asyncio.Task[bool]]) -> None:
        """Fills the free slots with due deliveries; a slot that frees up wakes the loop.

        A delivery already in flight here is not started twice, even if its lease ran
        out (a clock running faster than the attempt, a lease set too short).
        """
        free = self._max_in_flight - len(in_flight)
        if free <= 0:
            return
        for delivery in self._startable(await self._claim(free), set(in_flight)):
            delivery_id = delivery.delivery_id
            task = asyncio.create_task(self._deliver(delivery), name=f"delivery-{delivery_id}")
            in_flight[delivery_id] = task
            task.add_done_callback(functools.partial(self._finished_one, in_flight, delivery_id))

    def _startable(self, due: list[PendingDelivery], in_flight: set[int]) -> list[PendingDelivery]:
        """The claimed deliveries to attempt now: not already in flight here, and not to a held
        receiver (but for its one try, once due). The others stay claimed until their lease ends."""
        now = self._clock.now()
        startable = []
        for delivery in due:
            if delivery.delivery_id in in_flight:
                continue
            receiver = self._receivers.get((delivery.user_id, delivery.url))
            if receiver is not None:
                if not receiver.may_start(now):
                    continue
                receiver.in_flight += 1
                self._trying[delivery.delivery_id] = receiver
            startable.append(delivery)
        return startable

    def _finished_one(self, in_flight: dict[int, asyncio.Task[bool]], delivery_id: int, _: object) -> None:
        del in_flight[delivery_id]
        self._wake.set()

    async def _expire(self) -> None:
        now = self._clock.now()
        failed = await self._store.fail_overdue(now, self._max_age)
        purged = await self._store.purge_failed(now, self._keep_failed)
        cleared = await self._store.purge_delivered(now, self._keep_delivered)
        if failed or purged or cleared:
            LOG.info("outbox: %d moved to the failed queue, %d failed and %d delivered purged", failed, purged, cleared)

    async def _deliver(self, delivery: PendingDelivery) -> bool:
        """One attempt, recorded (and the receiver held or released). Never raises (but for
        cancellation): one bad delivery stops nothing."""
        try:
            outcome = await self._post(delivery)
        except Exception as exc:  # a bug must cost one attempt, not the worker
            LOG.exception("outbox: delivery %d failed unexpectedly", delivery.delivery_id)
            outcome = _Outcome(f"internal error: {_describe(exc)}")
        finally:
            trying = self._trying.pop(delivery.delivery_id, None)
            if trying is not None:
                trying.in_flight -= 1
        at = self._clock.now()
        try:
            next_at = await self._after(delivery, outcome, at)
            await self._store.record_attempt(delivery.delivery_id, at, outcome.error is None, outcome.error, next_at)
        except Exception:  # the lease runs out and the attempt is made again: at least once
            LOG.exception("outbox: could not record the attempt on delivery %d", delivery.delivery_id)
            return False
        return outcome.error is None

    async def _after(self, delivery: PendingDelivery, outcome: _Outcome, at: dt.datetime) -> dt.datetime | None:
        """Holds or releases the receiver; returns when the delivery is due again (None: delivered)."""
        key = (delivery.user_id, delivery.url)
        receiver = self._receivers.get(key)
        if outcome.error is None:
            if receiver is not None and receiver.failures:
                del self._receivers[key]
                await self._store.reschedule_deliveries(
                    delivery.user_id, delivery.url, at, at=at,
                    reason="the receiver answered again: its deliveries are due now",
                )
            return None
        own = self._backoff.delay(delivery.attempts + 1, self._random())
        if not outcome.receiver_trouble:
            return at + own
        if receiver is None:
            receiver = self._receivers[key] = _Receiver()
        if receiver.held_until is not None and receiver.held_until > at:
            return receiver.held_until + self._try_window  # failed beside the try already set: wait with the rest
        receiver.failures += 1
        wait = max(own, self._backoff.delay(receiver.failures, self._random()))
        receiver.held_until = at + wait
        await self._store.reschedule_deliveries(
            delivery.user_id, delivery.url, receiver.held_until + self._try_window, at=at,
            reason=f"the receiver did not take delivery {delivery.delivery_id} ({outcome.error}): "
                   f"held until its next try at {receiver.held_until.isoformat()}",
            except_delivery=delivery.delivery_id,
        )
        return receiver.held_until

    async def _post(self, delivery: PendingDelivery) -> _Outcome:
        """Whether the receiver took it (2xx), and if not why. Redirects are not followed."""
        try:
            async with self._client().post(
                delivery.url, data=delivery.body, headers=_HEADERS, timeout=self._timeout, allow_redirects=False
            ) as response:
                # Reading the (small) answer lets the connection go back to the pool: an unread
                # body makes aiohttp close it, and every delivery would pay a new connection.
                await response.content.read(_MAX_ANSWER_BYTES)
                if 200 <= response.status < 300:
                    return _Outcome(None)
                return _Outcome(f"HTTP {response.status}", response.status in _RECEIVER_TROUBLE)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Outcome(_describe(exc), receiver_trouble=True)

    # --- plumbing -----------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session

    def _default_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_in_flight)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def _stop_on(self, stop_event: asyncio.Event) -> None:
        await stop_event.wait()
        self._stopping.set()
        self._wake.set()

    @staticmethod
    async def _logged(step: Awaitable[None], what: str) -> None:
        try:
            await step
        except Exception:  # the loop outlives a failing store call; the next pass tries again
            LOG.exception("outbox: %s failed; trying again on the next pass", what)

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

Decisions use only the injected clock; the real event loop is used only to wait
between passes and pace the expiry sweep (``poll_interval``) and to bound an HTTP
attempt (``attempt_timeout``).
Leases and backoff are measured on the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Self

import aiohttp

from gateway.clock import Clock
from gateway.store.base import (
    DELIVERY_MAX_AGE,
    DELIVERED_KEEP,
    FAILED_DELIVERY_KEEP,
    Delivery,
    PendingDelivery,
    Store,
)

LOG = logging.getLogger("dcc_gateway.delivery")

DEFAULT_BACKOFF: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)
"""Seconds to wait after the 1st, 2nd… failed attempt of a round; the last step repeats.

Attempts then fall at 0, 1, 3, 7, 15, 31, 61, 121, 181, 241 s: ten within the 300 s round."""

_HEADERS: Final = {"Content-Type": "application/xml"}
_MAX_ERROR_TEXT: Final = 200
_MAX_ANSWER_BYTES: Final = 64 * 1024
"""A receiver's answer is read up to this much and ignored (what matters is its status)."""

SessionFactory = Callable[[], aiohttp.ClientSession]


def retry_delay(backoff: Sequence[float], failed_attempts: int) -> dt.timedelta:
    """How long after the ``failed_attempts``-th failure of a round (1-based) the next attempt is due."""
    if failed_attempts < 1:
        raise ValueError(f"failed_attempts counts from 1: {failed_attempts}")
    return dt.timedelta(seconds=backoff[min(failed_attempts, len(backoff)) - 1])


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
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        max_age: dt.timedelta = DELIVERY_MAX_AGE,
        keep_failed: dt.timedelta = FAILED_DELIVERY_KEEP,
        keep_delivered: dt.timedelta = DELIVERED_KEEP,
        poll_interval: float = 1.0,
        attempt_timeout: float = 5.0,
        max_in_flight: int = 16,
        lease: dt.timedelta | None = None,
    ) -> None:
        """``session_factory``: makes the worker's one client session (default: a pooled
        :class:`aiohttp.ClientSession` without cookies). ``lease``: how long a claimed
        delivery is hidden from other workers (default: twice the attempt timeout plus 10 s).
        """
        if not backoff or min(backoff) <= 0:
            raise ValueError(f"backoff needs at least one positive step: {backoff!r}")
        if poll_interval <= 0 or attempt_timeout <= 0 or max_in_flight < 1:
            raise ValueError("poll_interval and attempt_timeout are positive, max_in_flight at least 1")
        self._store = store
        self._clock = clock
        self._session_factory = session_factory or self._default_session
        self._backoff = tuple(float(step) for step in backoff)
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
            results = await asyncio.gather(*(self._deliver(delivery) for delivery in due))
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
        for delivery in await self._claim(free):
            delivery_id = delivery.delivery_id
            if delivery_id in in_flight:
                continue
            task = asyncio.create_task(self._deliver(delivery), name=f"delivery-{delivery_id}")
            in_flight[delivery_id] = task
            task.add_done_callback(functools.partial(self._finished_one, in_flight, delivery_id))

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
        """One attempt, recorded. Never raises (but for cancellation): one bad delivery stops nothing."""
        try:
            error = await self._post(delivery)
        except Exception as exc:  # a bug must cost one attempt, not the worker
            LOG.exception("outbox: delivery %d failed unexpectedly", delivery.delivery_id)
            error = f"internal error: {_describe(exc)}"
        at = self._clock.now()
        next_at = None if error is None else at + retry_delay(self._backoff, delivery.attempts + 1)
        try:
            await self._store.record_attempt(delivery.delivery_id, at, error is None, error, next_at)
        except Exception:  # the lease runs out and the attempt is made again: at least once
            LOG.exception("outbox: could not record the attempt on delivery %d", delivery.delivery_id)
            return False
        return error is None

    async def _post(self, delivery: PendingDelivery) -> str | None:
        """None when the receiver took it (2xx); otherwise why not. Redirects are not followed."""
        try:
            async with self._client().post(
                delivery.url, data=delivery.body, headers=_HEADERS, timeout=self._timeout, allow_redirects=False
            ) as response:
                # Reading the (small) answer lets the connection go back to the pool: an unread
                # body makes aiohttp close it, and every delivery would pay a new connection.
                await response.content.read(_MAX_ANSWER_BYTES)
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _describe(exc)

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

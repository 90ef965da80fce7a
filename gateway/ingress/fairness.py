"""Shares of the verifier and of the decision stage, so that one flood cannot take them all.

Two gates on the request path (``gateway.service``):

* before the verifier, keyed by **peer address** (the TCP peer, which the sender cannot
  choose): a few verifications at once (a turn is held across one pass of the event loop,
  so the requests read in that pass find the turns taken); the rest wait, and a freed turn
  goes to the waiting peers in rotation, not in arrival order. A peer with
  64 requests waiting gets one turn in two beside a peer with one, not 64 in 65. The
  sender is not authenticated yet, so nothing it *claims* (its User ID) picks its queue:
  a forged claim would let anyone fill someone else's.
* after authentication, keyed by **originator** (the verified User ID): at most
  ``originator_in_flight`` of its requests are decided (store transaction, signed answer)
  at once, the rest wait their turn in order.

Waiting costs no CPU (a future), and a waiting request holds its connection, so a client
that waits for its answers, as HTTP clients do, slows down to its share by itself. What
cannot wait (its peer's or originator's queue is full, or the verifier's whole queue) is
refused at once with :class:`Busy`, which the service answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass
from types import TracebackType

from gateway.config import IngressConfig


class Busy(Exception):
    """A request that may not wait for a turn: its key's queue, or the whole queue, is full."""

    def __init__(self, key: Hashable, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


class FairGate:
    """Turns for keyed work: ``slots`` at once in all (None: no overall bound), at most
    ``per_key`` of them for one key; waiting at most ``queue_per_key`` for one key and
    ``queue`` in all. A freed turn goes to the keys with waiters in rotation, and within
    a key in arrival order.

    Use ``async with gate.turn(key):``; entering raises :class:`Busy` at once when the
    request can neither start nor wait. A waiter that is cancelled (its client left)
    leaves the queue; one cancelled just after its turn came hands the turn on.
    """

    def __init__(self, *, slots: int | None, per_key: int, queue_per_key: int, queue: int) -> None:
        if (slots is not None and slots < 1) or per_key < 1 or queue_per_key < 0 or queue < 0:
            raise ValueError("slots and per_key are at least 1, the queues at least 0")
        self._slots = slots
        self._per_key = per_key
        self._queue_per_key = queue_per_key
        self._queue = queue
        self._holding: Counter[Hashable] = Counter()
        self._held = 0
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}
        """Keys with waiters, in the order their next turn comes (a key served goes to the end)."""
        self._waiters = 0

    @property
    def holding(self) -> int:
        """Turns taken now."""
        return self._held

    @property
    def waiting(self) -> int:
        """Requests waiting for a turn now."""
        return self._waiters

    def turn(self, key: Hashable) -> _Turn:
        return _Turn(self, key)

    # --- taking and giving back -------------------------------------------------------

    async def _enter(self, key: Hashable) -> None:
        if key not in self._waiting and self._may_start(key):
            self._take(key)
            return
        if len(self._waiting.get(key, ())) >= self._queue_per_key:
            raise Busy(key, f"{self._queue_per_key} already waiting for this one")
        if self._waiters >= self._queue:
            raise Busy(key, f"{self._queue} already waiting in all")
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(granted)
        self._waiters += 1
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._leave(key)  # the turn came as the client left: the next one takes it
            else:
                self._forget(key, granted)
            raise

    def _leave(self, key: Hashable) -> None:
        self._holding[key] -= 1
        if not self._holding[key]:
            del self._holding[key]
        self._held -= 1
        self._hand_on()

    def _may_start(self, key: Hashable) -> bool:
        return (self._slots is None or self._held < self._slots) and self._holding[key] < self._per_key

    def _take(self, key: Hashable) -> None:
        self._holding[key] += 1
        self._held += 1

    def _hand_on(self) -> None:
        """Gives free turns to the waiting keys in rotation."""
        while self._waiting and (self._slots is None or self._held < self._slots):
            key = next((k for k in self._waiting if self._holding[k] < self._per_key), None)
            if key is None:
                return  # every waiting key already holds its most
            queued = self._waiting.pop(key)
            granted = queued.popleft()
            self._waiters -= 1
            if queued:
                self._waiting[key] = queued  # to the end of the rotation
            if granted.cancelled():
                continue  # its waiter is leaving; nothing was taken
            self._take(key)
            granted.set_result(None)

    def _forget(self, key: Hashable, granted: asyncio.Future[None]) -> None:
        queued = self._waiting.get(key)
        if queued is None or granted not in queued:
            return  # already taken out by _hand_on
        queued.remove(granted)
        self._waiters -= 1
        if not queued:
            del self._waiting[key]


@dataclass(frozen=True, slots=True)
class _Turn:
    gate: FairGate
    key: Hashable

    async def __aenter__(self) -> None:
        await self.gate._enter(self.key)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.gate._leave(self.key)


class Admission:
    """The two gates of the request path, sized from ``[ingress]`` in gateway.toml."""

    def __init__(self, settings: IngressConfig, *, verify_slots: int) -> None:
        """``verify_slots``: verifications at once (turns held; more would be served in arrival
        order again, by the loop or the thread pool)."""
        self.retry_after_seconds = settings.retry_after_seconds
        self.verifier = FairGate(
            slots=verify_slots,
            per_key=verify_slots,
            queue_per_key=settings.verify_queue_per_peer,
            queue=settings.verify_queue,
        )
        self.originators = FairGate(
            slots=None,
            per_key=settings.originator_in_flight,
            queue_per_key=settings.originator_queue,
            queue=settings.max_connections,
        )

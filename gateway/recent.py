"""The last requests and directives this worker answered, kept in memory for people to look at.

The store keeps every decision in the audit log, but not the documents: the
signed request and the signed answer of a synchronous exchange are not stored
anywhere. The console (:mod:`gateway.console`) shows the last few, each openable
as the XML that crossed the wire. So the service hands each exchange to a
:class:`RecentExchanges`, a bounded ring owned by the running gateway (one per
worker process, emptied by a restart, never persisted).

Only what authenticated is kept with its documents: a request whose signature or
certificate was not accepted is kept with the failed check and its detail (what
its sender was told), not with its bytes, which nobody vouches for.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_CAPACITY: Final = 50
"""Exchanges kept; with the default 256 KiB body limit this bounds the ring to about 13 MiB."""

ExchangeKind = Literal["request", "directive"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One answered POST: what came in, what went out, and the decision."""

    sequence: int
    """Increasing within this worker's run (1, 2, …): the console's handle on it."""
    at: dt.datetime
    """The gateway clock when the answer was made."""
    kind: ExchangeKind
    path: str
    """``serviceS``, ``serviceT``, ``serviceD`` or ``admin``."""
    outcome: str
    """The DUIS response code, "accepted"/"refused" for a directive, or the failed check's id."""
    reason: str
    """The DUIS-Reason header, the directive's reason, or the problem's detail."""
    subject: str | None = None
    """The RequestID or DirectiveID, when the document authenticated."""
    originator: str | None = None
    """Who signed it (EUI-64 text), when it authenticated."""
    target: str | None = None
    service_reference_variant: str | None = None
    command_variant: int | None = None
    directive: str | None = None
    """The directive's command name (``enable-contingency``, …)."""
    request_xml: bytes | None = None
    """The signed document as received; None when it did not authenticate."""
    response_xml: bytes | None = None
    """The gateway's signed ``sr:Response``; None when the answer was JSON or a problem."""


class RecentExchanges:
    """A ring of the last ``capacity`` exchanges (the oldest drops out)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive: {capacity}")
        self._ring: deque[Exchange] = deque(maxlen=capacity)
        self._sequence = itertools.count(1)

    def next_sequence(self) -> int:
        return next(self._sequence)

    def add(self, exchange: Exchange) -> None:
        self._ring.append(exchange)

    def newest_first(self) -> Iterator[Exchange]:
        return reversed(self._ring)

    def get(self, sequence: int) -> Exchange | None:
        for exchange in self._ring:
            if exchange.sequence == sequence:
                return exchange
        return None

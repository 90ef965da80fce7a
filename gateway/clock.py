"""The injected clock: no module reads the wall clock directly."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


@dataclass
class FixedClock:
    """A clock that only moves when told to (tests, demos, vectors)."""

    current: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))

    def __post_init__(self) -> None:
        if self.current.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")

    def now(self) -> dt.datetime:
        return self.current

    def set(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self.current = when

    def advance(self, delta: dt.timedelta) -> None:
        self.current = self.current + delta


@dataclass
class AcceleratedClock:
    """Simulated time running ``rate`` times faster than real time from ``start`` (demos).

    ``real`` is the underlying clock (SystemClock in service; a FixedClock in tests).
    """

    start: dt.datetime
    rate: float
    real: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.rate <= 0:
            raise ValueError("AcceleratedClock needs an aware start and a positive rate")
        self._origin = self.real.now()

    def now(self) -> dt.datetime:
        return self.start + (self.real.now() - self._origin) * self.rate

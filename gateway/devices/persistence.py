"""Where meter states survive a restart: a small protocol, kept in the gateway's store.

Only meters whose state has changed since installation are stored (one row each);
every other meter is re-derived from ``manifest.json`` and the fleet's *epoch*,
the instant the simulation first started, which is stored once. A million-meter
world therefore costs nothing to persist until its meters start doing things.

The states live in the gateway's own store (:class:`StoreMeterPersistence`),
so that a command's effect on its meter is stored in the very transaction
that marks the command executed (see :mod:`gateway.forward`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Protocol

from gateway.devices.meter import MeterState, state_from_json, state_to_json
from gateway.eui64 import Eui64
from gateway.store.base import Store


class MeterPersistence(Protocol):
    """What the fleet needs from a store of meter states."""

    async def save(self, states: Sequence[MeterState]) -> None:
        """Stores these states (replacing earlier ones of the same meters) atomically and durably."""
        ...

    async def load(self) -> list[MeterState]:
        """Every stored state."""
        ...

    async def load_one(self, device_id: Eui64) -> MeterState | None: ...

    async def epoch(self, proposed: dt.datetime) -> dt.datetime:
        """The stored epoch; on first use, stores ``proposed`` and returns it."""
        ...


class MemoryMeterStore:
    """A :class:`MeterPersistence` in memory, for tests and throwaway runs."""

    def __init__(self) -> None:
        self._rows: dict[str, str] = {}
        self._epoch: dt.datetime | None = None

    async def save(self, states: Sequence[MeterState]) -> None:
        self._rows.update(meter_rows(states))

    async def load(self) -> list[MeterState]:
        return [state_from_json(json.loads(text)) for text in self._rows.values()]

    async def load_one(self, device_id: Eui64) -> MeterState | None:
        text = self._rows.get(str(device_id))
        return None if text is None else state_from_json(json.loads(text))

    async def epoch(self, proposed: dt.datetime) -> dt.datetime:
        if self._epoch is None:
            self._epoch = proposed
        return self._epoch


class StoreMeterPersistence:
    """:class:`MeterPersistence` in the gateway's :class:`~gateway.store.base.Store` (SQLite or PostgreSQL)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def save(self, states: Sequence[MeterState]) -> None:
        await self._store.save_meters(meter_rows(states))

    async def load(self) -> list[MeterState]:
        return [state_from_json(json.loads(text)) for text in (await self._store.load_meters()).values()]

    async def load_one(self, device_id: Eui64) -> MeterState | None:
        text = await self._store.load_meter(str(device_id))
        return None if text is None else state_from_json(json.loads(text))

    async def epoch(self, proposed: dt.datetime) -> dt.datetime:
        return await self._store.meter_epoch(proposed)


def meter_rows(states: Iterable[MeterState]) -> dict[str, str]:
    """device id -> JSON text, as the store keeps them; the last state of a meter wins if one is listed twice."""
    return {str(state.device_id): json.dumps(state_to_json(state), separators=(",", ":")) for state in states}

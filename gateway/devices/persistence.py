"""Where meter states survive a restart: a small protocol and its SQLite implementation.

Only meters whose state has changed since installation are stored (one row each);
every other meter is re-derived from ``manifest.json`` and the fleet's *epoch*,
the instant the simulation first started, which is stored once. A million-meter
world therefore costs nothing to persist until its meters start doing things.

The SQLite store may share the world's ``store.db`` with the gateway's store: it
uses its own connection and its own tables (``meters``, ``meters_meta``, created
with ``IF NOT EXISTS``), WAL and ``synchronous=FULL`` like the gateway's, so a
saved state is on disk when :meth:`SqliteMeterStore.save` returns.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Final, Protocol, Self

import aiosqlite

from gateway.devices.meter import MeterState, state_from_json, state_to_json

_EPOCH_KEY = "epoch"
_WAL_RETRY_SECONDS = 0.05


class MeterPersistence(Protocol):
    """What the fleet needs from a store of meter states."""

    async def save(self, states: Sequence[MeterState]) -> None:
        """Stores these states (replacing earlier ones of the same meters) atomically and durably."""
        ...

    async def load(self) -> list[MeterState]:
        """Every stored state."""
        ...

    async def epoch(self, proposed: dt.datetime) -> dt.datetime:
        """The stored epoch; on first use, stores ``proposed`` and returns it."""
        ...


class MemoryMeterStore:
    """A :class:`MeterPersistence` in memory, for tests and throwaway runs."""

    def __init__(self) -> None:
        self._rows: dict[str, str] = {}
        self._epoch: dt.datetime | None = None

    async def save(self, states: Sequence[MeterState]) -> None:
        self._rows.update(_rows(states))

    async def load(self) -> list[MeterState]:
        return [state_from_json(json.loads(text)) for text in self._rows.values()]

    async def epoch(self, proposed: dt.datetime) -> dt.datetime:
        if self._epoch is None:
            self._epoch = proposed
        return self._epoch


class _Sql:
    create: Final = (
        "CREATE TABLE IF NOT EXISTS meters (device_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS meters_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    upsert: Final = (
        "INSERT INTO meters (device_id, state) VALUES (?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET state = excluded.state"
    )
    select_all: Final = "SELECT state FROM meters"
    propose_epoch: Final = "INSERT OR IGNORE INTO meters_meta (key, value) VALUES (?, ?)"
    select_epoch: Final = "SELECT value FROM meters_meta WHERE key = ?"


class SqliteMeterStore:
    """:class:`MeterPersistence` on a SQLite file (its own connection and tables)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self._path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        """One transaction at a time on the one connection (statements of two would interleave)."""

    def __repr__(self) -> str:
        return f"SqliteMeterStore({self._path!r})"

    async def open(self) -> None:
        if self._db is not None:
            raise RuntimeError(f"{self!r} is already open")
        db = await aiosqlite.connect(self._path, isolation_level=None, timeout=self._busy_timeout)
        try:
            await self._configure(db)
            for statement in _Sql.create:
                await db.execute(statement)
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def save(self, states: Sequence[MeterState]) -> None:
        if not states:
            return
        rows = list(_rows(states).items())
        async with self._lock:
            db = self._connection()
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(_Sql.upsert, rows)
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def load(self) -> list[MeterState]:
        async with self._lock, self._connection().execute(_Sql.select_all) as cursor:
            rows = await cursor.fetchall()
        return [state_from_json(json.loads(row[0])) for row in rows]

    async def epoch(self, proposed: dt.datetime) -> dt.datetime:
        async with self._lock:
            db = self._connection()
            await db.execute(_Sql.propose_epoch, (_EPOCH_KEY, proposed.astimezone(dt.UTC).isoformat()))
            async with db.execute(_Sql.select_epoch, (_EPOCH_KEY,)) as cursor:
                row = await cursor.fetchone()
        if row is None:
            raise RuntimeError("the meter epoch vanished between insert and select")
        return dt.datetime.fromisoformat(row[0])

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._db

    async def _configure(self, db: aiosqlite.Connection) -> None:
        """WAL (retrying while the gateway's store holds the lock needed to switch) and synchronous=FULL."""
        deadline = asyncio.get_running_loop().time() + self._busy_timeout
        while True:
            try:
                async with db.execute("PRAGMA journal_mode = WAL") as cursor:
                    row = await cursor.fetchone()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(_WAL_RETRY_SECONDS)
        if row is None or row[0] not in ("wal", "memory"):
            raise RuntimeError(f"SQLite refused WAL mode for {self._path}")
        await db.execute("PRAGMA synchronous = FULL")


def _rows(states: Iterable[MeterState]) -> dict[str, str]:
    """device id -> JSON text; the last state of a meter wins if one is listed twice."""
    return {str(state.device_id): json.dumps(state_to_json(state), separators=(",", ":")) for state in states}

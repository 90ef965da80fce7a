"""Store backends for the parametrised ``store_factory`` fixture (issue #5, STYLE 9).

Every Store-contract test runs against each backend in :data:`BACKENDS` through one
opener interface: ``await opener.open(**options)`` opens a new store object on the
opener's database (a second call is a second worker, or the gateway restarted),
``opener.url`` is the store URL (for ``open_store``/``verify_audit``) and
``opener.close_all()`` closes what it opened.

SQLite lives in the test's ``tmp_path``. PostgreSQL is the real server
(``postgresql://postgres@127.0.0.1:5432/test``, or ``$DCC_TEST_POSTGRES_URL``), each
test in a fresh, uniquely named schema that is dropped afterwards. When the server
is unreachable the PostgreSQL param fails under CI (``CI`` set) and skips locally,
with the reason either way.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.store.base import Store
from gateway.store.postgresql import PostgresLocation, PostgresStore
from gateway.store.sqlite import SqliteStore

BACKENDS: Final = ("sqlite", "postgresql")
POSTGRES_URL_ENV: Final = "DCC_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
_CONNECT_TIMEOUT_SECONDS: Final = 5.0


class StoreOpener(Protocol):
    backend: str

    @property
    def url(self) -> str:
        """The store URL of this opener's database (what ``--store`` would be given)."""
        ...

    async def open(self, **options: Any) -> Store:
        """A new, opened store object on this opener's database (closed by :meth:`close_all`)."""
        ...

    async def close_all(self) -> None: ...

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Runs SQL both dialects accept on the database itself, outside any store (to inspect it)."""
        ...


class SqliteOpener:
    """Stores on one SQLite file."""

    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: list[SqliteStore] = []

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path.resolve()}"

    async def open(self, **options: Any) -> SqliteStore:
        store = SqliteStore(self.path, **options)
        await store.open()
        self._open.append(store)
        return store

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            rows = db.execute(sql).fetchall()
            db.commit()
            return [tuple(row) for row in rows]


def postgres_server_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def with_schema(url: str, schema: str) -> str:
    """``url`` with its ``schema=`` query parameter set to ``schema`` (others kept)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "schema"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("schema", schema)])))


def fresh_schema_name() -> str:
    return f"test_{uuid.uuid4().hex[:16]}"


class PostgresOpener:
    """Stores on one PostgreSQL schema of the test server."""

    backend = "postgresql"

    def __init__(self, server_url: str, schema: str) -> None:
        self.server_url = server_url
        self.schema = schema
        self._open: list[PostgresStore] = []

    @property
    def url(self) -> str:
        return with_schema(self.server_url, self.schema)

    async def open(self, **options: Any) -> PostgresStore:
        store = PostgresStore(self.url, **options)
        await store.open()
        self._open.append(store)
        return store

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Runs one statement in this opener's schema, outside any store (tests inspect or tamper with it)."""
        connection = await asyncpg.connect(_server_dsn(self.server_url), timeout=_CONNECT_TIMEOUT_SECONDS)
        try:
            await connection.execute(f'SET search_path TO "{self.schema}"')
            return [tuple(row) for row in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    async def drop_schema(self) -> None:
        connection = await asyncpg.connect(_server_dsn(self.server_url), timeout=_CONNECT_TIMEOUT_SECONDS)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await connection.close()


def _server_dsn(url: str) -> str:
    """The URL as asyncpg takes it (without the store's own ``schema=``)."""
    return PostgresLocation.parse(url).dsn


async def postgres_unreachable_reason(url: str) -> str | None:
    """Why the test server cannot be used (None: it can)."""
    try:
        connection = await asyncpg.connect(_server_dsn(url), timeout=_CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {url} is unreachable ({type(exc).__name__}: {exc})"
    await connection.close()
    return None


async def require_postgres(url: str) -> None:
    """Fails the test under CI, skips it locally, when the server cannot be used."""
    reason = await postgres_unreachable_reason(url)
    if reason is None:
        return
    hint = f"start it (scripts/run-tests does) or point {POSTGRES_URL_ENV} at one"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL store tests: {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


@contextlib.asynccontextmanager
async def store_opener(backend: str, tmp_path: Path) -> AsyncIterator[StoreOpener]:
    """An opener on a fresh, empty database of ``backend``, cleaned up afterwards."""
    if backend == "sqlite":
        sqlite_opener = SqliteOpener(tmp_path / "store.db")
        try:
            yield sqlite_opener
        finally:
            await sqlite_opener.close_all()
        return
    if backend != "postgresql":
        raise ValueError(f"unknown store backend {backend!r}")
    server = postgres_server_url()
    await require_postgres(server)
    postgres_opener = PostgresOpener(server, fresh_schema_name())
    try:
        yield postgres_opener
    finally:
        await postgres_opener.close_all()
        await postgres_opener.drop_schema()

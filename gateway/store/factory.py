"""From a store URL to a :class:`~gateway.store.base.Store`, and the ``audit verify`` entry point.

URLs: ``sqlite:///relative/path.db`` (resolved against the world directory),
``sqlite:////abs/path.db``, ``sqlite:///:memory:``, a plain file path, or
``postgresql://user@host:port/db[?schema=NAME]`` (also ``postgres://``; issue #5, see
:mod:`gateway.store.postgresql`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from gateway.config import CONFIG_FILE_NAME, load_config
from gateway.stages import StageTimers
from gateway.store.audit import ChainAnchor, ChainReport, verify_chain
from gateway.store.base import Store
from gateway.store.postgresql import POSTGRES_SCHEMES, PostgresStore
from gateway.store.sqlite import SqliteStore

SQLITE_SCHEME = "sqlite:///"
_ANY_SCHEME = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://")


def default_store_url() -> str:
    """A SQLite file next to ``gateway.toml`` in the world directory."""
    return SQLITE_SCHEME + "store.db"


def sqlite_path(url: str, *, world_dir: Path) -> Path | None:
    """The SQLite file a URL names (None for ``:memory:``); ValueError for a URL that is not SQLite."""
    if url.startswith(SQLITE_SCHEME):
        rest = url[len(SQLITE_SCHEME) :]
    elif _ANY_SCHEME.match(url):
        raise ValueError(f"not a SQLite store URL: {url!r}")
    else:
        rest = url
    if not rest:
        raise ValueError(f"store URL names no file: {url!r}")
    if rest == ":memory:":
        return None
    path = Path(rest)
    return path if path.is_absolute() else world_dir / path


def is_postgres_url(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def open_store(url: str, *, world_dir: Path, read_only: bool = False, stages: StageTimers | None = None) -> Store:
    """The store a URL names, not yet opened: the caller owns ``await store.open()`` / ``close()``.

    ``read_only`` opens an existing store without creating, migrating or changing anything.
    ``stages``: where the SQLite store counts the CPU of its transactions (PostgreSQL's run on
    the server and in the event loop, and are not split out).
    """
    if is_postgres_url(url):
        return PostgresStore(url, read_only=read_only)
    path = sqlite_path(url, world_dir=world_dir)
    return SqliteStore(":memory:" if path is None else path, read_only=read_only, stages=stages)


def _configured_url(world_dir: Path) -> str:
    config_file = world_dir / CONFIG_FILE_NAME
    return load_config(config_file).store.url if config_file.is_file() else default_store_url()


async def verify_audit(world_dir: Path, store_url: str | None = None, anchors: Iterable[ChainAnchor] = ()) -> ChainReport:
    """Checks the hash chain of a world's audit log (``dcc-gateway audit verify DIR``).

    The store is opened read-only: no schema is created and no row is written, so a
    tampered file keeps its evidence (SQLite may leave an empty ``-wal``/``-shm`` beside it;
    PostgreSQL connections are read-only). Raises FileNotFoundError when the store does not
    exist (there is nothing to vouch for, which is not the same as an intact log).
    ``anchors``: heads of earlier runs kept elsewhere, which must still be in the log.
    """
    url = store_url or _configured_url(world_dir)
    if not is_postgres_url(url):
        path = sqlite_path(url, world_dir=world_dir)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"no store to verify at {url!r} (world {world_dir})")
    store = open_store(url, world_dir=world_dir, read_only=True)
    await store.open()
    try:
        lane_anchors = [anchor async for anchor in store.lane_anchors()] if isinstance(store, PostgresStore) else []
        return await verify_chain(store.audit_records(), anchors, lane_anchors)
    finally:
        await store.close()

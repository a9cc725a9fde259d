"""Database engines: pick SQLite or PostgreSQL from a URL and bind every table to it.

Piccolo's SQLite engine opens a new connection (and a new thread) for every
query outside a transaction; `PooledSQLiteEngine` keeps a few open instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, dict_factory

SQLITE_TIMEOUT_SECONDS = 30.0
SQLITE_POOL_SIZE = 4


class PooledSQLiteEngine(SQLiteEngine):
    """SQLite engine that reuses autocommit connections for queries outside transactions."""

    __slots__ = ("_pools",)

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path=path, timeout=SQLITE_TIMEOUT_SECONDS, **kwargs)
        # One pool per event loop: aiosqlite connections belong to the loop that opened them.
        self._pools: dict[int, asyncio.Queue[aiosqlite.Connection]] = {}

    async def _connect(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(**self.connection_kwargs)
        # A daemon thread: a connection left open must not keep the process alive at exit.
        connection._thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        await connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    async def get_connection(self) -> aiosqlite.Connection:  # used by transactions
        return await self._connect()

    def _pool(self) -> asyncio.Queue[aiosqlite.Connection]:
        key = id(asyncio.get_running_loop())
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = asyncio.Queue()
        return pool

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        pool = self._pool()
        try:
            connection = pool.get_nowait()
        except asyncio.QueueEmpty:
            connection = await self._connect()
        ok = False
        try:
            async with connection.execute(query, args or []) as cursor:
                rows = await cursor.fetchall()
            ok = True
            return rows
        finally:
            if ok and pool.qsize() < SQLITE_POOL_SIZE:
                pool.put_nowait(connection)
            else:
                with contextlib.suppress(Exception):
                    await connection.close()

    async def close_pool(self) -> None:
        """Close this loop's pooled connections."""
        pool = self._pools.pop(id(asyncio.get_running_loop()), None)
        while pool is not None and not pool.empty():
            with contextlib.suppress(Exception):
                await pool.get_nowait().close()


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///path` URL (four slashes for an absolute path)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url}")
    return url[len("sqlite:///") :]


def make_engine(url: str) -> Engine:
    """An engine for `url`: `sqlite:///file` or `postgresql://user@host:port/db`."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return PooledSQLiteEngine(path=sqlite_path(url))
    if scheme in ("postgres", "postgresql"):
        return PostgresEngine(config={"dsn": url})
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r} (use sqlite or postgresql)")


def use_database(url: str) -> Engine:
    """Make `url` the database of every table (and of Piccolo's migration runner)."""
    from piccolo.apps.migrations.tables import Migration

    from portal.db import piccolo_conf
    from portal.db.tables import TABLES

    engine = make_engine(url)
    if isinstance(engine, SQLiteEngine):
        # A first run with the default `var/portal.sqlite3`: SQLite makes the file, not its folder.
        Path(engine.path).parent.mkdir(parents=True, exist_ok=True)
    piccolo_conf.DB = engine
    for table in [*TABLES, Migration]:
        table._meta.db = engine
    return engine


def current_engine() -> Engine:
    """The engine tables are bound to now."""
    from portal.db.tables import Tenant

    return Tenant._meta.db


async def start(engine: Engine) -> None:
    """Open pools / set per-file pragmas; call once per event loop before serving."""
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=1, max_size=10)
    elif isinstance(engine, SQLiteEngine):
        # WAL lets readers run while one writer writes; it is stored in the file.
        await engine._run_in_new_connection("PRAGMA journal_mode = WAL")


async def stop(engine: Engine) -> None:
    """Close pools opened by `start`."""
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_pool()
        from portal.db.fast import close_readers

        close_readers()


def transaction() -> Any:
    """A write transaction on the current engine.

    On SQLite it starts IMMEDIATE, taking the write lock up front, so a
    read-then-write transaction cannot fail half-way with "database is locked".
    """
    from piccolo.engine.sqlite import TransactionType

    engine = current_engine()
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()

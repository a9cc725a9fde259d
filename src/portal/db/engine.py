"""The database the tables are bound to: choose it, start it, stop it, write to it.

The engines themselves are made in `engines.py` (which imports no table, so
`piccolo_conf` can use it while the tables are defined); the hot read path is
`fast.py`. This module sits above both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from piccolo.apps.migrations.tables import Migration
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.table import Table

from portal.db import fast, piccolo_conf
from portal.db.engines import (
    POOL_SIZE,
    REQUEST_CONNECTION,
    SQLITE_POOL_SIZE,
    WAIT_SECONDS,
    HeldConnection,
    PooledSQLiteEngine,
    PortalPostgresEngine,
    engine_for,
    give_back_request_connection,
    keep_session,
    make_engine,
    sqlite_path,
)
from portal.db.outage import OUTAGE, DatabaseUnavailable, quiet_pool_floor_tracebacks, translated
from portal.db.tables import TABLES, Tenant, current_engine

__all__ = [
    "POOL_SIZE",
    "SQLITE_POOL_SIZE",
    "WAIT_SECONDS",
    "PooledSQLiteEngine",
    "PortalPostgresEngine",
    "current_engine",
    "engine_for",
    "give_back_request_connection",
    "make_engine",
    "one_connection_per_request",
    "sqlite_path",
    "start",
    "stop",
    "transaction",
    "use_database",
    "use_settings",
]


def use_settings(settings: Any) -> Engine[Any]:
    """Make the database of `settings` (config.Settings) the one every table uses."""
    return bind(engine_for(settings))


def use_database(
    url: str, *, pool_size: int = POOL_SIZE, wait_seconds: float = WAIT_SECONDS
) -> Engine[Any]:
    """Make `url` the database of every table (and of Piccolo's migration runner)."""
    return bind(make_engine(url, pool_size=pool_size, wait_seconds=wait_seconds))


def bind(engine: Engine[Any]) -> Engine[Any]:
    """Bind every table (and Piccolo's migration runner) to `engine`."""
    if isinstance(engine, SQLiteEngine):
        # A first run with the default `var/portal.sqlite3`: SQLite makes the file, not its folder.
        Path(engine.path).parent.mkdir(parents=True, exist_ok=True)
    piccolo_conf.DB = engine
    tables: list[type[Table]] = [*TABLES, Migration]
    for table in tables:
        table._meta.db = engine
    return engine


async def start(engine: Engine[Any]) -> None:
    """Open pools / set per-file pragmas; call once per event loop before serving.

    A database that cannot be reached yet (still starting up, say) does not stop the
    app: it answers 503 until the database answers (the outage is logged once)."""
    quiet_pool_floor_tracebacks()
    if isinstance(engine, PostgresEngine):
        size = getattr(engine, "pool_size", POOL_SIZE)
        try:
            with translated():
                await engine.start_connection_pool(min_size=1, max_size=size, reset=keep_session)
        except DatabaseUnavailable as exc:
            OUTAGE.note(exc, refused=False)
            # No connection at start: the pool connects when asked.
            await engine.start_connection_pool(min_size=0, max_size=size, reset=keep_session)
    elif isinstance(engine, SQLiteEngine):
        # WAL lets readers run while one writer writes; it is stored in the file.
        try:
            await engine.run_ddl("PRAGMA journal_mode = WAL")
        except DatabaseUnavailable as exc:
            OUTAGE.note(exc, refused=False)


async def stop(engine: Engine[Any]) -> None:
    """Close pools opened by `start`."""
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_pool()
        fast.close_readers()


@contextlib.asynccontextmanager
async def one_connection_per_request() -> AsyncIterator[None]:
    """Within this block every statement outside a transaction runs on one pooled
    connection (PostgreSQL): a page of five reads takes one connection from the pool once,
    not five times. A transaction first gives it back and takes its own, so a request
    never holds two. No-op on SQLite."""
    pool = getattr(current_engine(), "pool", None)
    if pool is None:
        yield
        return
    held = HeldConnection(pool)
    token = REQUEST_CONNECTION.set(held)
    try:
        yield
    finally:
        REQUEST_CONNECTION.reset(token)
        if held.connection is not None:
            with contextlib.suppress(Exception):
                await pool.release(held.connection)


def transaction() -> Any:
    """A write transaction on the current engine.

    On SQLite it starts IMMEDIATE, taking the write lock up front, so a
    read-then-write transaction cannot fail half-way with "database is locked".
    """
    engine = current_engine()
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


async def database_answers() -> bool:
    """One write-ready round trip: a transaction (on SQLite it takes the write lock, so a
    lasting lock keeps an outage open) with a `SELECT 1` (the outage probe's question)."""
    try:
        async with transaction():
            await Tenant.raw("SELECT 1").run()
    except Exception as exc:
        return OUTAGE.probe_failed(exc)
    return True


OUTAGE.probe = database_answers

"""Hot read paths: plain SQL straight to the driver, without Piccolo's query builder.

Every signed-in page reads the business, the session and the customer records
before its own data. Built through Piccolo each of those costs more Python than the
query itself, and on SQLite each also hops to a new aiosqlite thread. `fetch` runs
a fixed SQL string (with `{}` placeholders, as Piccolo's `raw`) directly:

- PostgreSQL: on the engine's asyncpg pool;
- SQLite: on one read-only connection kept in the event loop's own thread. The
  database is in WAL mode, where readers never wait for a writer, and these are
  indexed lookups that take microseconds — less than handing them to a thread.
  Values come back as SQLite stores them (no per-column converters: on a 25-row
  page those cost more than the query): callers turn timestamps into datetimes with
  `timestamp` (which leaves PostgreSQL's as they are) and booleans (0/1) with `bool`.

Inside a transaction (or before the engine is started) it falls back to Piccolo's
`raw`, so a read sees the transaction's own writes. Its "cannot reach the database"
errors are the engine's: `outage.DatabaseUnavailable` (a pool wait is bounded too).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, overload

from piccolo.engine.sqlite import SQLiteEngine

from portal.db.engines import WAIT_SECONDS, PortalPostgresEngine
from portal.db.outage import translated
from portal.db.tables import Tenant, current_engine

_readers: dict[tuple[str, int], sqlite3.Connection] = {}


@lru_cache(maxsize=256)
def driver_sql(sql: str, dialect: str) -> str:
    """`{}` placeholders as the driver wants them: `?` or `$1, $2, …`."""
    if dialect == "sqlite":
        return sql.replace("{}", "?")
    parts = sql.split("{}")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1))


def dialect() -> str:
    """The current engine's SQL dialect, "postgres" or "sqlite" (for the few reads whose
    best form differs: PostgreSQL has LATERAL joins, SQLite does not)."""
    return "postgres" if isinstance(current_engine(), PortalPostgresEngine) else "sqlite"


@overload
def timestamp(value: datetime | str) -> datetime: ...
@overload
def timestamp(value: None) -> None: ...
def timestamp(value: datetime | str | None) -> datetime | None:
    """A TIMESTAMPTZ column's value as an aware datetime (SQLite keeps UTC ISO text)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _reader(engine: SQLiteEngine) -> sqlite3.Connection:
    path = engine.connection_kwargs["database"]
    key = (path, threading.get_ident())
    conn = _readers.get(key)
    if conn is None:
        wait = getattr(engine, "wait_seconds", WAIT_SECONDS)
        conn = sqlite3.connect(path, isolation_level=None, timeout=wait)
        try:
            conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error:
            conn.close()
            raise
        _readers[key] = conn
    return conn


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of a read-only query written with `{}` placeholders."""
    engine = current_engine()
    if engine.current_transaction.get() is None:
        if isinstance(engine, PortalPostgresEngine) and engine.pool is not None:
            with translated():
                async with engine.connection() as connection:
                    records = await connection.fetch(driver_sql(sql, "postgres"), *args)
            return [dict(r.items()) for r in records]
        if isinstance(engine, SQLiteEngine):
            with translated():
                cursor = _reader(engine).execute(driver_sql(sql, "sqlite"), args)
                rows = cursor.fetchall()
            names = [col[0] for col in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in rows]
    result: list[dict[str, Any]] = await Tenant.raw(sql, *args).run()
    return result


def close_readers() -> None:
    """Close the SQLite read connections of this thread (at shutdown)."""
    ident = threading.get_ident()
    for key in [k for k in _readers if k[1] == ident]:
        _readers.pop(key).close()


def within(column: str, location_ids: list[int] | None) -> tuple[str, list[int]]:
    """A customer query's clause for the locations the viewer may see (issue 16.4):
    `" AND <column> IN ({}, …)"` and its arguments for a grant's locations, nothing for
    an owner (None: every location), a clause that matches nothing for no location."""
    if location_ids is None:
        return "", []
    if not location_ids:
        return " AND 1 = 0", []
    return f" AND {column} IN ({', '.join(['{}'] * len(location_ids))})", list(location_ids)

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
  page those cost more than the query): callers turn timestamps and booleans into
  Python values with `timestamp` and `boolean`, which leave PostgreSQL's as they are.

Inside a transaction (or before the engine is started) it falls back to Piccolo's
`raw`, so a read sees the transaction's own writes.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from portal.db.engine import current_engine

_readers: dict[tuple[str, int], sqlite3.Connection] = {}


class Record(dict):
    """A row: a dict whose keys also read as attributes.

    Templates write `row.name`; Jinja tries the attribute first, and for a plain dict
    that attempt fails with an exception before it looks the key up. On a page of 25
    invoices that is hundreds of exceptions per request.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@lru_cache(maxsize=256)
def driver_sql(sql: str, dialect: str) -> str:
    """`{}` placeholders as the driver wants them: `?` or `$1, $2, …`."""
    if dialect == "sqlite":
        return sql.replace("{}", "?")
    parts = sql.split("{}")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1))


def timestamp(value: datetime | str | None) -> datetime | None:
    """A TIMESTAMPTZ column's value as an aware datetime (SQLite keeps UTC ISO text)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def boolean(value: bool | int | None) -> bool:
    """A BOOLEAN column's value as a bool (SQLite keeps 0 or 1)."""
    return bool(value)


def _reader(engine: SQLiteEngine) -> sqlite3.Connection:
    path = engine.connection_kwargs["database"]
    key = (path, threading.get_ident())
    conn = _readers.get(key)
    if conn is None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA query_only = 1")
        _readers[key] = conn
    return conn


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of a read-only query written with `{}` placeholders."""
    engine = current_engine()
    if engine.current_transaction.get() is None:
        if isinstance(engine, PostgresEngine) and engine.pool is not None:
            records = await engine.pool.fetch(driver_sql(sql, "postgres"), *args)
            return [Record(r.items()) for r in records]
        if isinstance(engine, SQLiteEngine):
            cursor = _reader(engine).execute(driver_sql(sql, "sqlite"), args)
            names = [col[0] for col in cursor.description]
            return [Record(zip(names, row, strict=True)) for row in cursor.fetchall()]
    from portal.db.tables import Tenant

    return [Record(r) for r in await Tenant.raw(sql, *args).run()]


def close_readers() -> None:
    """Close the SQLite read connections of this thread (at shutdown)."""
    ident = threading.get_ident()
    for key in [k for k in _readers if k[1] == ident]:
        _readers.pop(key).close()

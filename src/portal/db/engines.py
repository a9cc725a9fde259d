"""Database engines: pick SQLite or PostgreSQL from a URL (the engine factory).

This module imports no table: `piccolo_conf` builds its engine here while the tables
are being defined, and `engine.py` binds the tables to one.

Piccolo's SQLite engine opens a new connection (and a new thread) for every
query outside a transaction; `PooledSQLiteEngine` keeps a few open instead.

Both engines raise `outage.DatabaseUnavailable` for every form of "cannot reach the
database now" (see db/outage.py) and wait at most `wait_seconds` for a connection or
a lock (a pool that stays exhausted is an outage too, never a request that hangs).
Their transactions always give their connection back — a SQLite BEGIN that meets a
lock would otherwise leave its connection and thread open — and when ROLLBACK fails on
a dead connection, the error that caused the rollback is the one reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory

from portal.db.outage import translated

# How long a query waits for a pooled connection (PostgreSQL) or a lock (SQLite's busy
# timeout) before the request is answered 503; settings can change both (config.py).
WAIT_SECONDS = 10.0
POOL_SIZE = 10
SQLITE_POOL_SIZE = 4


class PortalPostgresEngine(PostgresEngine):
    """PostgreSQL with a bounded wait for a pooled connection and outages recognised."""

    __slots__ = ("pool_size", "wait_seconds")

    def __init__(
        self,
        config: dict[str, Any],
        *,
        pool_size: int = POOL_SIZE,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        super().__init__(config=config)
        self.pool_size = pool_size
        self.wait_seconds = wait_seconds

    async def check_version(self) -> None:
        """Nothing at construction. Piccolo's own check opens a connection of its own
        (without the pool's settings) just to warn about PostgreSQL before 10: behind
        pgbouncer in transaction mode its cached `SHOW server_version` met another
        client's prepared statement ("prepared statement … already exists", a warning at
        every start), and with the database down it warned at import. The portal connects
        only through its pool, with the settings' options."""

    async def _run_in_pool(self, query: str, args: Any = None) -> Any:
        async with self.connection() as connection:
            return await connection.fetch(query, *(args or []))

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection for one statement outside a transaction: the request's own
        (see `engine.one_connection_per_request`) when there is one, else one from the pool."""
        if not self.pool:
            raise ValueError("A pool isn't currently running.")
        held = REQUEST_CONNECTION.get()
        if held is None or held.pool is not self.pool:
            async with self.pool.acquire(timeout=self.wait_seconds) as connection:
                yield connection
            return
        async with held.lock:
            if held.connection is not None and getattr(held.connection, "_con", None) is None:
                # The server dropped it between two of the request's statements (a restart,
                # an outage): asyncpg has already taken it back into the pool, and using it
                # would raise "released back to the pool" (a 500). Take a live one.
                held.connection = None
            if held.connection is None:
                held.connection = await self.pool.acquire(timeout=self.wait_seconds)
            yield held.connection

    async def run_querystring(self, querystring: Any, in_pool: bool = True) -> Any:
        with translated():
            return await super().run_querystring(querystring, in_pool)

    async def run_ddl(self, ddl: str, in_pool: bool = True) -> Any:
        with translated():
            return await super().run_ddl(ddl, in_pool)

    def transaction(self, allow_nested: bool = True) -> PostgresTransaction:
        return _PostgresTransaction(engine=self, allow_nested=allow_nested)


class HeldConnection:
    """The pooled connection a request's statements share, taken at its first statement
    and given back when the request ends (a lock keeps concurrent statements in turn)."""

    __slots__ = ("connection", "lock", "pool")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.connection: Any = None
        self.lock = asyncio.Lock()


REQUEST_CONNECTION: contextvars.ContextVar[HeldConnection | None] = contextvars.ContextVar(
    "portal_request_connection", default=None
)


async def _give_back_request_connection(pool: Any) -> None:
    """Before a transaction takes a connection, the request's idle one goes back to the
    pool: a request never holds two, so a full pool of requests that each start a
    transaction cannot wait on one another (the transaction likely gets it again)."""
    held = REQUEST_CONNECTION.get()
    if held is None or held.pool is not pool or held.connection is None:
        return
    async with held.lock:
        if held.connection is not None:
            connection, held.connection = held.connection, None
            with contextlib.suppress(Exception):
                await pool.release(connection)


async def give_back_request_connection() -> None:
    """The request's held connection goes back to the pool while the request waits for
    something that is not the database (its turn for a password hash): 80 sign-ins waiting
    in the hashing lane must not hold the pool and starve the one whose turn it is. The
    request's next statement takes a connection again."""
    held = REQUEST_CONNECTION.get()
    if held is not None:
        await _give_back_request_connection(held.pool)


async def keep_session(connection: Any) -> None:
    """The pool's reset on release: nothing. The portal keeps no session state on a
    connection (no SET, LISTEN, advisory locks or cursors outside a transaction), so
    asyncpg's default `RESET ALL; UNLISTEN *; …` would be a round trip for nothing; an
    open transaction is still rolled back by asyncpg itself."""


class _PostgresTransaction(PostgresTransaction):
    """Piccolo's transaction, with the engine's bounded wait and outages recognised; the
    connection goes back to the pool whatever fails."""

    async def get_connection(self) -> Any:
        with translated():
            if self.engine.pool:
                await _give_back_request_connection(self.engine.pool)
                return await self.engine.pool.acquire(
                    timeout=getattr(self.engine, "wait_seconds", WAIT_SECONDS)
                )
            return await self.engine.get_new_connection()

    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            with translated():
                self.transaction = self.connection.transaction()
                await self.begin()
        except BaseException:
            await self._give_back(broken=True)
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        broken = False
        try:
            if exception is not None:
                if not self._rolled_back:
                    # On a dead connection the rollback fails too: the server has rolled
                    # back already, and the original error is the one to report.
                    try:
                        await self.rollback()
                    except Exception:
                        broken = True
            elif not self._committed and not self._rolled_back:
                try:
                    with translated():
                        await self.commit()
                except BaseException:
                    broken = True
                    raise
        finally:
            await self._give_back(broken=broken)
            self.engine.current_transaction.reset(self.context)
        return exception is None

    async def _give_back(self, *, broken: bool) -> None:
        """Return the connection to the pool (closed first when it failed)."""
        if broken:
            self.connection.terminate()
        if self.engine.pool:
            with contextlib.suppress(Exception):
                await self.engine.pool.release(self.connection)
        else:
            with contextlib.suppress(Exception):
                await self.connection.close()


class PooledSQLiteEngine(SQLiteEngine):
    """SQLite engine that reuses autocommit connections for queries outside transactions."""

    __slots__ = ("_pools", "wait_seconds")

    def __init__(self, path: str, *, wait_seconds: float = WAIT_SECONDS, **kwargs: Any) -> None:
        super().__init__(path=path, timeout=wait_seconds, **kwargs)
        self.wait_seconds = wait_seconds
        # One pool per event loop: aiosqlite connections belong to the loop that opened them.
        self._pools: dict[int, asyncio.Queue[aiosqlite.Connection]] = {}

    async def run_querystring(self, querystring: Any, in_pool: bool = False) -> Any:
        with translated():
            return await super().run_querystring(querystring, in_pool)

    async def run_ddl(self, ddl: str, in_pool: bool = False) -> Any:
        with translated():
            return await super().run_ddl(ddl, in_pool)

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.deferred,
        allow_nested: bool = True,
    ) -> SQLiteTransaction:
        return _SQLiteTransaction(
            engine=self, transaction_type=transaction_type, allow_nested=allow_nested
        )

    async def _connect(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(**self.connection_kwargs)
        # A daemon thread: a connection left open must not keep the process alive at exit.
        connection._thread.daemon = True
        try:
            await connection
            connection.row_factory = dict_factory  # type: ignore[assignment]
            await connection.execute("PRAGMA foreign_keys = 1")
            await connection.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
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


class _SQLiteTransaction(SQLiteTransaction):
    """Piccolo's SQLite transaction, outages recognised; its connection (and thread) is
    closed whatever fails (a BEGIN that met a lock would otherwise leave both open)."""

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        with translated():
            self.connection = await self.get_connection()
        try:
            with translated():
                await self.begin()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.connection.close()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        try:
            if exception is not None:
                if not self._rolled_back:
                    with contextlib.suppress(Exception):  # the original error is the one
                        await self.rollback()
            elif not self._committed and not self._rolled_back:
                with translated():
                    await self.commit()
        finally:
            with contextlib.suppress(Exception):
                await self.connection.close()
            self.engine.current_transaction.reset(self.context)
        return exception is None


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///path` URL (four slashes for an absolute path)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url}")
    return url[len("sqlite:///") :]


def make_engine(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    wait_seconds: float = WAIT_SECONDS,
    command_timeout: float | None = None,
    application_name: str = "portal",
    statement_cache: bool = True,
) -> Engine[Any]:
    """An engine for `url`: `sqlite:///file` or `postgresql://user@host:port/db`, waiting
    at most `wait_seconds` for a connection (PostgreSQL, pool of `pool_size`) or a lock.

    PostgreSQL only: `command_timeout` bounds each statement (client side, so it holds
    behind pgbouncer too), `application_name` names the connections in
    pg_stat_activity, and `statement_cache=False` turns asyncpg's prepared-statement
    cache off (required behind pgbouncer in transaction mode)."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return PooledSQLiteEngine(path=sqlite_path(url), wait_seconds=wait_seconds)
    if scheme in ("postgres", "postgresql"):
        config: dict[str, Any] = {
            "dsn": url,
            "timeout": wait_seconds,
            "command_timeout": command_timeout,
            "server_settings": {"application_name": application_name},
        }
        if not statement_cache:
            config["statement_cache_size"] = 0
        return PortalPostgresEngine(config=config, pool_size=pool_size, wait_seconds=wait_seconds)
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r} (use sqlite or postgresql)")


def engine_for(settings: Any) -> Engine[Any]:
    """The engine `settings` (config.Settings) describe, not yet bound to the tables."""
    return make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        wait_seconds=settings.db_wait_seconds,
        command_timeout=settings.db_command_timeout,
        application_name=settings.db_application_name,
        statement_cache=settings.db_statement_cache,
    )

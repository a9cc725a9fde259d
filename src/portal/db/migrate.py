"""Apply the checked-in Piccolo migrations to the current database, one process at a time.

`migrate` holds a lock for the whole run: PostgreSQL's advisory lock (on a connection of
its own), or a lock file beside a SQLite database. A second `portal migrate` started at
the same moment waits, then finds nothing left to do and succeeds too. Each migration
applied prints one line. On PostgreSQL the planner's statistics are refreshed afterwards
(ANALYZE), as new tables and indexes have none.

`pending_migrations` lists what is not applied yet: `portal migrate --check` and the
"being upgraded" gate (db/schema_gate.py) read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import functools
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from portal.db.engine import current_engine

APP_NAME = "portal"
# pg_advisory_lock's key: any fixed number no other program on the database uses.
ADVISORY_LOCK_KEY = 0x706F7274  # "port"
# How long an index build waits for a table lock before giving up (it is retried by the
# next `portal migrate`), so a busy table never queues every request behind it.
INDEX_LOCK_TIMEOUT = "5s"


@functools.cache
def migration_ids() -> tuple[str, ...]:
    """Every checked-in migration's id, in order."""
    return tuple(sorted(_modules()))


def _modules() -> dict[str, Any]:
    from piccolo.apps.migrations.commands.base import BaseMigrationManager

    manager = BaseMigrationManager()
    config = manager.get_app_config(app_name=APP_NAME)
    return manager.get_migration_modules(config.resolved_migrations_folder_path)


async def applied_migrations() -> set[str]:
    """Ids recorded as applied; none when the migration table does not exist yet."""
    from piccolo.apps.migrations.tables import Migration

    if not await Migration.table_exists().run():
        return set()
    return set(await Migration.get_migrations_which_ran(app_name=APP_NAME))


async def pending_migrations() -> list[str]:
    """Migrations not applied yet, in order."""
    done = await applied_migrations()
    return [mid for mid in migration_ids() if mid not in done]


async def migrate(quiet: bool = False, say: Callable[[str], None] = print) -> list[str]:
    """Apply every pending migration, under the migration lock; returns their ids.
    Raises if one fails (the ones before it stay applied)."""
    from piccolo.apps.migrations.auto.migration_manager import MigrationManager
    from piccolo.apps.migrations.tables import Migration

    applied: list[str] = []
    async with _migration_lock():
        await Migration.create_table(if_not_exists=True).run()  # type: ignore[no-untyped-call]
        modules = _modules()
        for migration_id in await pending_migrations():
            module = modules[migration_id]
            # Piccolo prints its own progress; one line per migration is ours.
            with contextlib.redirect_stdout(io.StringIO()):
                manager = await module.forwards()
                if isinstance(manager, MigrationManager):
                    await manager.run()
            await Migration.insert(Migration(name=migration_id, app_name=APP_NAME)).run()
            applied.append(migration_id)
            if not quiet:
                say(f"applied {migration_id}: {getattr(module, 'DESCRIPTION', '')}".rstrip(": "))
        if applied:
            await analyze()
    return applied


async def analyze() -> None:
    """Fresh planner statistics (PostgreSQL): after migrations, an import or a restore;
    without them the planner guesses, and once scanned `job` 25 times per page."""
    engine = current_engine()
    if isinstance(engine, PostgresEngine):
        await engine.run_ddl("ANALYZE")


# The connection holding the advisory lock, while a run holds it: index builds use it too,
# so a run needs two connections at most (this one and the pool's), not three.
_LOCK_CONNECTION: contextvars.ContextVar[Any] = contextvars.ContextVar("lock_connection")


@contextlib.asynccontextmanager
async def _migration_lock() -> AsyncIterator[None]:
    engine = current_engine()
    if isinstance(engine, PostgresEngine):
        connection = await engine.get_new_connection()
        token = _LOCK_CONNECTION.set(connection)
        try:
            # Asked again and again rather than waited for in one statement: a statement
            # waiting that long is an open transaction, which a CREATE INDEX CONCURRENTLY
            # of the run holding the lock would wait for in turn (until its lock timeout).
            while True:
                if await connection.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY):
                    break
                await asyncio.sleep(0.2)
            yield
        finally:
            _LOCK_CONNECTION.reset(token)
            # Closing the session releases the lock, even when the unlock itself fails.
            with contextlib.suppress(Exception):
                await connection.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
            await connection.close()
        return
    if isinstance(engine, SQLiteEngine):
        lock_path = Path(engine.path).with_suffix(".migrate-lock")
        with open(lock_path, "a+") as lock_file:  # noqa: ASYNC230 - a local, empty file
            await asyncio.to_thread(fcntl.flock, lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
        return
    yield


async def create_indexes(statements: list[str]) -> None:
    """Build indexes for a migration without blocking the tables' writers.

    PostgreSQL: each `CREATE [UNIQUE] INDEX name ON …` runs as `CREATE … INDEX
    CONCURRENTLY IF NOT EXISTS` on a connection of its own (outside any transaction, as
    CONCURRENTLY requires) with a lock timeout; an invalid index a failed earlier build
    left behind is dropped first. The migration must use
    `MigrationManager(..., wrap_in_transaction=False)`. SQLite: the statements as given.
    """
    engine = current_engine()
    if not isinstance(engine, PostgresEngine):
        for statement in statements:
            await engine.run_ddl(statement)
        return
    shared = _LOCK_CONNECTION.get(
        None
    )  # the migration lock's idle session, outside any transaction
    connection = shared if shared is not None else await engine.get_new_connection()
    try:
        await connection.execute(f"SET lock_timeout = '{INDEX_LOCK_TIMEOUT}'")
        for statement in statements:
            head, name, rest = _index_parts(statement)
            invalid = await connection.fetchval(
                """SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE c.relname = $1 AND NOT i.indisvalid""",
                name,
            )
            if invalid:
                await connection.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            await connection.execute(f"{head} CONCURRENTLY IF NOT EXISTS {name} {rest}")
    finally:
        if shared is None:
            await connection.close()
        else:
            await connection.execute("RESET lock_timeout")


def _index_parts(statement: str) -> tuple[str, str, str]:
    """("CREATE UNIQUE INDEX", name, "ON table (…)") of a CREATE INDEX statement."""
    words = statement.split()
    at = words.index("INDEX")
    return " ".join(words[: at + 1]), words[at + 1], " ".join(words[at + 2 :])

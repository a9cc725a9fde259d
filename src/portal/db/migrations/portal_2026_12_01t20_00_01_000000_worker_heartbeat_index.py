"""The worker heartbeats' unique index, built the way every new index should be: on
PostgreSQL CONCURRENTLY, outside a transaction, with a lock timeout (db/migrate.py
`create_indexes`), so building it never blocks the table's writers."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-01T20:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "worker heartbeat index"

STATEMENTS = ["CREATE UNIQUE INDEX worker_heartbeat_worker ON worker_heartbeat (worker)"]


async def forwards():
    from portal.db.migrate import create_indexes

    manager = MigrationManager(
        migration_id=ID, app_name="portal", description=DESCRIPTION, wrap_in_transaction=False
    )

    async def run():
        await create_indexes(STATEMENTS)

    manager.add_raw(run)
    return manager

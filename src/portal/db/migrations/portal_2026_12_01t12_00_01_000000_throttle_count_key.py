"""One throttle count per business and key: the upsert in auth/throttle.py counts on it
(`ON CONFLICT (tenant, key)`). Plain SQL that SQLite and PostgreSQL both run."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T12:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique throttle count per business and key"

STATEMENTS = [
    "CREATE UNIQUE INDEX throttle_count_key ON throttle_count (tenant, key)",
    "CREATE INDEX throttle_count_resets ON throttle_count (resets_at)",
    "CREATE INDEX account_request_tenant ON account_request (tenant)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

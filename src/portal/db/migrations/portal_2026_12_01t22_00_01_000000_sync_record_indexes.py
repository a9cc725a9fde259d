"""One sync record per (business, kind, source id): the bulk push looks records up by
these and relies on the constraint to refuse a twin. API keys are listed per business."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T22:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "sync record and api key indexes"

STATEMENTS = [
    "CREATE UNIQUE INDEX sync_record_source ON sync_record (tenant, kind, external_id)",
    "CREATE INDEX api_key_tenant ON api_key (tenant, id)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

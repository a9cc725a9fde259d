"""Office › Emails reads a business's emails newest first, and its failed ones: an index
on (tenant, id), and a partial one of the failed emails (plain SQL, as in
`..._constraints_and_indexes.py`; both engines support partial indexes)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "outbox emails by business"

STATEMENTS = [
    "CREATE INDEX outbox_by_tenant ON outbox_email (tenant, id)",
    "CREATE INDEX outbox_failed ON outbox_email (tenant, id) WHERE status = 'failed'",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

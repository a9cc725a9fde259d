"""One pushed PDF per invoice."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T22:00:05:000000"
VERSION = "1.38.0"
DESCRIPTION = "invoice document index"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        await engine.run_ddl(
            "CREATE UNIQUE INDEX invoice_document_once ON invoice_document (invoice)"
        )

    manager.add_raw(run)
    return manager

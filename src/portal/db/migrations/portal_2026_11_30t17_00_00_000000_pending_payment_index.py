"""A partial index of the payments still waiting for the gateway, per customer: every
signed-in page asks whether its customer has one (see auth/sessions.py)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-30T17:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "pending payments per customer"

STATEMENTS = [
    "CREATE INDEX payment_pending ON payment (customer) WHERE status = 'pending'",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

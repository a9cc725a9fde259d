"""Each event is queued once per endpoint (unique), the worker finds due deliveries by
status and time, and the office lists an endpoint's deliveries newest first."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T22:00:03:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook indexes"

STATEMENTS = [
    "CREATE UNIQUE INDEX webhook_delivery_once ON webhook_delivery (endpoint, event)",
    "CREATE INDEX webhook_delivery_due ON webhook_delivery (status, next_attempt_at)",
    "CREATE INDEX webhook_delivery_tenant ON webhook_delivery (tenant, id)",
    "CREATE INDEX webhook_endpoint_tenant ON webhook_endpoint (tenant)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

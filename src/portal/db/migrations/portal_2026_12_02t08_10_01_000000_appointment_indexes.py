"""Appointments: one per (business, source id), the push looks them up by it; a customer's
upcoming ones in time order (the Scheduler tab); one by the request it answers."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T08:10:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "appointment indexes"

STATEMENTS = [
    "CREATE UNIQUE INDEX appointment_source ON appointment (tenant, external_id)",
    "CREATE INDEX appointment_customer_time ON appointment (customer, ends_at)",
    "CREATE INDEX appointment_request ON appointment (booking_request)"
    " WHERE booking_request IS NOT NULL",
    "CREATE INDEX appointment_job ON appointment (job) WHERE job IS NOT NULL",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

"""Indexes for the activity log and the events feed: each is read per business, newest
first (the Activity page) or in id order after a cursor (the feed, webhook delivery)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T16:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "activity log and events feed indexes"

STATEMENTS = [
    "CREATE INDEX activity_event_tenant ON activity_event (tenant, id)",
    "CREATE INDEX domain_event_tenant ON domain_event (tenant, id)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

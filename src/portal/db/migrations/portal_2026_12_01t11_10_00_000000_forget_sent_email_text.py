"""Emails delivered before the worker forgot their text kept it, confirmation and reset
links included: forget it now (issue 11.6). Only data changes; the schema is the same."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T11:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "forget the text of sent emails"

STATEMENTS = [
    "UPDATE outbox_email SET text_body = '', html_body = '' WHERE status = 'sent'",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

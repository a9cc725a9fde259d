"""Issue 16.4: the access grants' indexes — the live grants to an email (read with every
signed-in customer request, `auth/sessions.py`), the grants of a customer (the owner's and
the office's lists), and one row per grant and location. Partial and composite, so
written here rather than in tables.py ("grant" is quoted: a reserved word in SQL)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T04:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "access grant indexes"

STATEMENTS = [
    "CREATE INDEX access_grant_live ON access_grant (tenant, invitee_email)"
    " WHERE revoked_at IS NULL",
    "CREATE INDEX access_grant_customer ON access_grant (tenant, customer)",
    'CREATE UNIQUE INDEX access_grant_location_once ON access_grant_location ("grant", location)',
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

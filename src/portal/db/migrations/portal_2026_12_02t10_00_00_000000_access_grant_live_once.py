"""Issue 16.4 hardening: at most one live grant to an email for a record, held by the
database — a partial unique index on (tenant, customer, invitee_email) of the grants not
revoked, on both engines. Two invitations sent at once could both pass the form's check
before it; a second live grant such a race left is revoked first (the older one stays), so
the index can be built, with `revoked_by` saying why."""

from datetime import UTC, datetime

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

ID = "2026-12-02T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "access grant: one live grant per email and record"

REVOKE_SECONDS = (
    "UPDATE access_grant SET revoked_at = {}, revoked_by = {} WHERE revoked_at IS NULL"
    " AND EXISTS (SELECT 1 FROM access_grant AS earlier WHERE earlier.tenant = access_grant.tenant"
    " AND earlier.customer = access_grant.customer"
    " AND earlier.invitee_email = access_grant.invitee_email"
    " AND earlier.revoked_at IS NULL AND earlier.id < access_grant.id)"
)
INDEX = (
    "CREATE UNIQUE INDEX access_grant_live_once"
    " ON access_grant (tenant, customer, invitee_email) WHERE revoked_at IS NULL"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        await engine.run_querystring(
            QueryString(REVOKE_SECONDS, datetime.now(UTC), "upgrade: a second live grant")
        )
        await engine.run_ddl(INDEX)

    manager.add_raw(run)
    return manager

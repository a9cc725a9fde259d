"""Indexes for custom domains (unique: one business per domain) and host redirects
(looked up by the old host name), built CONCURRENTLY on PostgreSQL (db/migrate.py)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-01T20:00:03:000000"
VERSION = "1.38.0"
DESCRIPTION = "custom domain and host redirect indexes"

STATEMENTS = [
    "CREATE UNIQUE INDEX tenant_custom_domain ON tenant (custom_domain)",
    "CREATE INDEX host_redirect_old_host ON host_redirect (old_host, until)",
]


async def forwards():
    from portal.db.migrate import create_indexes

    manager = MigrationManager(
        migration_id=ID, app_name="portal", description=DESCRIPTION, wrap_in_transaction=False
    )

    async def run():
        await create_indexes(STATEMENTS)

    manager.add_raw(run)
    return manager

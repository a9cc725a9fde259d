"""Constraints and indexes of the card-update and sandbox-gateway tables (see the
first constraints migration for why they are SQL)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-25T03:53:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "card update and sandbox checkout constraints"

STATEMENTS = [
    "CREATE UNIQUE INDEX card_update_unique_key ON card_update (tenant, idempotency_key)",
    "CREATE INDEX card_update_membership ON card_update (membership, created_at)",
    "CREATE UNIQUE INDEX sandbox_checkout_unique_reference ON sandbox_checkout (account_id, merchant_reference)",
    "CREATE INDEX payment_gateway_ref ON payment (gateway_ref)",
    "CREATE INDEX card_update_gateway_ref ON card_update (gateway_ref)",
]
POSTGRES_ONLY = [
    "ALTER TABLE card_update ADD CONSTRAINT card_update_status_valid CHECK (status IN ('pending', 'succeeded', 'failed'))",
    "ALTER TABLE sandbox_checkout ADD CONSTRAINT sandbox_checkout_mode_valid CHECK (mode IN ('payment', 'setup'))",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS + (POSTGRES_ONLY if engine.engine_type == "postgres" else []):
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

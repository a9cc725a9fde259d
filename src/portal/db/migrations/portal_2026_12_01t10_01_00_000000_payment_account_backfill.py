"""Indexes of the payment-account tables, and what existing rows already tell: the
account each earlier payment and card update started on (exact from the sandbox
gateway's own records, else the business's linked account), and every account a
business has used, so callbacks signed for it are still verified."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T10:01:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "payment account indexes and backfill"

STATEMENTS = [
    "CREATE UNIQUE INDEX payment_account_unique_tenant_account ON payment_account (tenant, account_id)",
    "CREATE INDEX office_alert_unseen ON office_alert (tenant, created_at) WHERE seen_at IS NULL",
    "CREATE INDEX payment_pending_account ON payment (tenant, payment_account_id) WHERE status = 'pending'",
    "CREATE INDEX card_update_pending_account ON card_update (tenant, payment_account_id) WHERE status = 'pending'",
]
BACKFILL = (
    [
        f"""UPDATE {table} SET payment_account_id = (
        SELECT s.account_id FROM sandbox_checkout s WHERE s.public_id = {table}.gateway_ref)
    WHERE gateway_ref != '' AND EXISTS (
        SELECT 1 FROM sandbox_checkout s WHERE s.public_id = {table}.gateway_ref)"""
        for table in ("payment", "card_update")
    ]
    + [
        f"""UPDATE {table} SET payment_account_id = (
        SELECT t.payment_account_id FROM tenant t WHERE t.id = {table}.tenant)
    WHERE payment_account_id = ''{" AND source = 'portal'" if table == "payment" else ""}"""
        for table in ("payment", "card_update")
    ]
    + [
        """INSERT INTO payment_account (tenant, account_id, linked_at)
    SELECT id, payment_account_id, CURRENT_TIMESTAMP FROM tenant WHERE payment_account_id != ''""",
    ]
    + [
        f"""INSERT INTO payment_account (tenant, account_id, linked_at, unlinked_at)
    SELECT DISTINCT x.tenant, x.payment_account_id, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
    FROM {table} x WHERE x.payment_account_id != '' AND NOT EXISTS (
        SELECT 1 FROM payment_account a
        WHERE a.tenant = x.tenant AND a.account_id = x.payment_account_id)"""
        for table in ("payment", "card_update")
    ]
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS + BACKFILL:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

"""A void invoice owes nothing, checked in the database: status is issued or void, and a
void invoice's balance is 0. Every read of open invoices filters on `balance_cents > 0`
(the Invoices tab, its totals and their partial indexes `invoice_open` and
`invoice_open_totals`), so with this rule none of them can list a void invoice, and a
refund or settlement that tried to put money back on one fails instead of reopening it.
PostgreSQL takes a CHECK constraint; SQLite, which cannot add one to a table, triggers."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T08:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "a void invoice owes nothing"

CONDITION = "status IN ('issued', 'void') AND (status = 'issued' OR balance_cents = 0)"
SQLITE_WHEN = (
    "NEW.status NOT IN ('issued', 'void') OR (NEW.status = 'void' AND NEW.balance_cents <> 0)"
)

POSTGRES = [f"ALTER TABLE invoice ADD CONSTRAINT invoice_status_valid CHECK ({CONDITION})"]
SQLITE = [
    f"""CREATE TRIGGER invoice_status_valid_insert BEFORE INSERT ON invoice
       WHEN {SQLITE_WHEN}
       BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: status_valid'); END""",
    f"""CREATE TRIGGER invoice_status_valid_update BEFORE UPDATE OF status, balance_cents
       ON invoice
       WHEN {SQLITE_WHEN}
       BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: status_valid'); END""",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in SQLITE if engine.engine_type == "sqlite" else POSTGRES:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

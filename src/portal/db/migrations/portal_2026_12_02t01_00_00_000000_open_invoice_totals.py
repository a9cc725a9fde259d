"""The Invoices tab's total due, from an index alone: a partial index of a customer's
unpaid invoices that also holds the columns the count and sum read (the job, to check it
is completed, and the amounts), so a customer with 1,700 open invoices costs 1,700 index
entries rather than 1,700 table rows (issue 18)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T01:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "open invoice totals"

STATEMENTS = [
    "CREATE INDEX invoice_open_totals ON invoice (customer, tenant, job, total_cents,"
    " balance_cents) WHERE balance_cents > 0",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

"""The Invoices tab a page at a time (issue 18): its page of open invoices, oldest first,
from an index that holds the business as well as the customer. PostgreSQL's generic plan
of the prepared statement (the one a busy connection settles on) matched both equalities
of the covering `invoice_open_totals` and sorted all of the biggest customer's 1,700 open
invoices to keep 26, while `invoice_open (customer, invoice_date, id)` matched one; with
the business in the ordered index too, it reads the page in order and stops. The new
index takes the old one's place (the same rows in the same order)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "open invoices by page"

STATEMENTS = [
    "CREATE INDEX invoice_open_page ON invoice (customer, tenant, invoice_date, id)"
    " WHERE balance_cents > 0",
    "DROP INDEX invoice_open",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

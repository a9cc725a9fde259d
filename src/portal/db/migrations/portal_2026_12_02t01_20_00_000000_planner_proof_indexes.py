"""Two indexes SQLite's planner picks whatever its statistics say (issue 18.3), found on
the 1 M-invoice database after ANALYZE:

- the pending-payment flag every signed-in page reads: `payment_pending` covered only
  the customer, and with no payment pending anywhere (the usual case) ANALYZE records
  nothing for it, so the planner took `payment_customer` and read every payment of the
  customer (3,300 for a property manager) on every page. With the status in the index
  too it matches both of the query's equalities and wins;
- a booked job by its appointment request (the Scheduler tab): the unique index on
  `job.booking_request` is almost all NULLs, which SQLite's statistics count as one
  value shared by every job, so the planner read all of the customer's jobs for each
  request listed. A partial index of the jobs that have a request is small and exact.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T01:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes the planner cannot misjudge"

STATEMENTS = [
    "DROP INDEX payment_pending",
    "CREATE INDEX payment_pending ON payment (customer, status) WHERE status = 'pending'",
    "CREATE INDEX job_booked ON job (booking_request) WHERE booking_request IS NOT NULL",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

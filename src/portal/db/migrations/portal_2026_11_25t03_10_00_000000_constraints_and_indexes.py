"""Unique constraints, checks and the indexes the portal's queries use.

Written as SQL that both engines accept. CHECK constraints are added on
PostgreSQL; SQLite cannot add them to an existing table, so it gets triggers
for the one rule money depends on (an invoice balance stays within 0..total).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-25T03:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "constraints and indexes"

UNIQUE = [
    ("business_unit", "tenant, name"),
    ("staff_user", "tenant, email"),
    ("customer", "tenant, external_id"),
    ("customer_email", "customer, email"),
    ("location", "tenant, external_id"),
    ("booking_request", "tenant, idempotency_key"),
    ("job", "tenant, number"),
    ("job", "booking_request"),  # one job per booking request (NULLs are distinct)
    ("invoice", "tenant, number"),
    ("portal_account", "tenant, email"),
    ("payment", "tenant, idempotency_key"),
    ("payment_allocation", "payment, invoice"),
    ("membership", "tenant, external_id"),
    ("notification_template", "tenant, key"),
]

INDEXES = [
    ("tenant_business_unit", "business_unit (tenant)"),
    ("customer_name", "customer (tenant, name)"),
    ("customer_email_lookup", "customer_email (tenant, email)"),
    ("location_customer", "location (customer)"),
    ("booking_request_office", "booking_request (tenant, status, created_at)"),
    ("booking_request_customer", "booking_request (customer, created_at)"),
    ("job_customer", "job (customer, status)"),
    # Invoices tab: open invoices of a customer, oldest first (keyset on date, id).
    ("invoice_open", "invoice (customer, invoice_date, id) WHERE balance_cents > 0"),
    # History tab: all of a customer's invoices, per location, newest first.
    ("invoice_history", "invoice (customer, location, invoice_date, id)"),
    ("invoice_customer_date", "invoice (customer, invoice_date, id)"),
    ("invoice_job", "invoice (job)"),
    ("invoice_line_invoice", "invoice_line (invoice, position)"),
    ("payment_customer", "payment (customer, created_at)"),
    ("payment_allocation_invoice", "payment_allocation (invoice)"),
    ("membership_customer", "membership (customer, status)"),
    ("visit_membership", "visit (membership, visit_date)"),
    ("audit_event_job", "audit_event (job, created_at)"),
    ("audit_event_invoice", "audit_event (invoice, created_at)"),
    ("audit_event_membership", "audit_event (membership, created_at)"),
    ("session_account", "session (account)"),
    ("session_staff", "session (staff)"),
    ("session_expires", "session (expires_at)"),
    ("auth_token_account", "auth_token (account, purpose)"),
    ("outbox_due", "outbox_email (status, next_attempt_at)"),
    ("throttle_hit_key", "throttle_hit (key, created_at)"),
]

CHECKS = [
    ("staff_user", "role_valid", "role IN ('admin', 'office')"),
    ("customer", "kind_valid", "kind IN ('residential', 'commercial')"),
    ("booking_request", "status_valid", "status IN ('new', 'booked', 'dismissed')"),
    ("job", "status_valid", "status IN ('scheduled', 'in_progress', 'completed', 'canceled')"),
    ("invoice", "balance_valid", "balance_cents >= 0 AND balance_cents <= total_cents"),
    ("invoice_line", "amount_valid", "amount_cents >= 0"),
    ("payment", "status_valid", "status IN ('pending', 'succeeded', 'failed')"),
    ("payment", "amount_valid", "amount_cents > 0"),
    ("payment_allocation", "amount_valid", "amount_cents > 0"),
    ("membership", "status_valid", "status IN ('active', 'canceled', 'expired', 'suspended')"),
    ("visit", "status_valid", "status IN ('upcoming', 'completed', 'canceled')"),
    ("session", "kind_valid", "kind IN ('customer', 'staff')"),
    ("auth_token", "purpose_valid", "purpose IN ('confirm', 'reset')"),
    ("outbox_email", "status_valid", "status IN ('pending', 'sent', 'failed')"),
]

SQLITE_TRIGGERS = [
    """CREATE TRIGGER invoice_balance_valid_insert BEFORE INSERT ON invoice
       WHEN NEW.balance_cents < 0 OR NEW.balance_cents > NEW.total_cents
       BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: balance_valid'); END""",
    """CREATE TRIGGER invoice_balance_valid_update BEFORE UPDATE OF balance_cents, total_cents
       ON invoice
       WHEN NEW.balance_cents < 0 OR NEW.balance_cents > NEW.total_cents
       BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: balance_valid'); END""",
]


def statements(engine_type: str) -> list[str]:
    """The SQL this migration runs on `engine_type` ('sqlite' or 'postgres')."""
    sql = []
    for table, columns in UNIQUE:
        name = f"{table}_unique_{columns.replace(', ', '_')}"
        sql.append(f"CREATE UNIQUE INDEX {name} ON {table} ({columns})")
    for name, spec in INDEXES:
        sql.append(f"CREATE INDEX {name} ON {spec}")
    if engine_type == "sqlite":
        sql.extend(SQLITE_TRIGGERS)
    else:
        for table, name, condition in CHECKS:
            sql.append(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{name} CHECK ({condition})")
    return sql


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in statements(engine.engine_type):
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager

"""Generate a large data set for the scale benchmark.

    python -m bench.generate --database-url postgresql://postgres@127.0.0.1:5432/portal_large --businesses 1000
    python -m bench.generate --database-url sqlite:///var/bench-small.sqlite3 --businesses 10

Each business has 100 customers with one or two locations and 10 invoices each
(completed jobs; about a third unpaid, the others paid by a recorded payment), and a
third of its customers have a portal account. Businesses 0–9 also have a property
manager ("Big Customer") with 5,000 invoices, so deep pages exist. With 1,000
businesses that is 100,000 customers and about 1,040,000 invoices. The big
customer of business 0 signs in as `big@bench.example` / `bench-password-1`
on host `bench0`.

Rows go in with PostgreSQL COPY (asyncpg) or SQLite executemany, after the
normal migrations, so the schema and its indexes are the real ones.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from portal.auth.passwords import hash_password_sync
from portal.db import engine as db_engine
from portal.db.migrate import migrate

CUSTOMERS_PER_BUSINESS = 100
INVOICES_PER_CUSTOMER = 10
BIG_CUSTOMER_INVOICES = 5000
BIG_BUSINESSES = 10
BENCH_EMAIL = "big@bench.example"
BENCH_PASSWORD = "bench-password-1"

COLUMNS = {
    "tenant": [
        "id",
        "host",
        "name",
        "email",
        "phone",
        "time_zone",
        "currency",
        "logo_content_type",
        "logo_version",
        "legal_accepted_at",
        "legal_accepted_by",
        "portal_enabled",
        "scheduler_enabled",
        "service_types",
        "memberships_enabled",
        "membership_statuses",
        "recurring_service_message",
        "payment_account_id",
        "payments_enabled",
        "created_at",
    ],
    "business_unit": ["id", "tenant", "name", "invoices_downloadable"],
    "customer": ["id", "tenant", "external_id", "name", "kind", "phone", "created_at"],
    "customer_email": ["id", "tenant", "customer", "email"],
    "location": [
        "id",
        "tenant",
        "customer",
        "external_id",
        "name",
        "street",
        "city",
        "state",
        "zip",
    ],
    "portal_account": ["id", "tenant", "email", "password_hash", "confirmed_at", "created_at"],
    "job": [
        "id",
        "tenant",
        "customer",
        "location",
        "business_unit",
        "number",
        "summary",
        "status",
        "completed_at",
        "created_at",
    ],
    "invoice": [
        "id",
        "tenant",
        "customer",
        "job",
        "location",
        "business_unit",
        "number",
        "invoice_date",
        "due_date",
        "summary",
        "total_cents",
        "balance_cents",
        "created_at",
    ],
    "payment": [
        "id",
        "tenant",
        "customer",
        "account_email",
        "amount_cents",
        "kind",
        "status",
        "idempotency_key",
        "gateway",
        "gateway_ref",
        "card_brand",
        "card_last4",
        "failure_reason",
        "source",
        "created_at",
        "completed_at",
    ],
    "payment_allocation": ["id", "tenant", "payment", "invoice", "amount_cents"],
    "invoice_line": [
        "id",
        "tenant",
        "invoice",
        "position",
        "description",
        "quantity",
        "unit_price_cents",
        "amount_cents",
    ],
}


class Ids:
    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def __call__(self, table: str) -> int:
        value = self.next.get(table, 1)
        self.next[table] = value + 1
        return value


def business_rows(
    n: int, ids: Ids, rng: random.Random, password_hash: str, today: date
) -> dict[str, list[tuple]]:
    """All rows of business number `n`."""
    now = datetime.now(UTC)
    rows: dict[str, list[tuple]] = {k: [] for k in COLUMNS}
    tid = ids("tenant")
    rows["tenant"].append(
        (
            tid,
            f"bench{n}",
            f"Bench Services {n}",
            f"help@bench{n}.example",
            "(555) 000-0000",
            "America/Chicago",
            "USD",
            "",
            0,
            now,
            "admin@bench.example",
            True,
            True,
            '["Plumbing repair"]',
            True,
            "[]",
            "",
            "sandbox_acct_bench",
            True,
            now,
        )
    )
    units = []
    for name in ("Plumbing", "Electrical", "HVAC"):
        uid = ids("business_unit")
        units.append(uid)
        rows["business_unit"].append((uid, tid, name, name != "Electrical"))
    customers = CUSTOMERS_PER_BUSINESS + (1 if n < BIG_BUSINESSES else 0)
    for c in range(customers):
        big = c == CUSTOMERS_PER_BUSINESS
        cid = ids("customer")
        name = "Big Customer" if big else f"Customer {n}-{c}"
        rows["customer"].append(
            (cid, tid, f"C{c}", name, "commercial" if big else "residential", "", now)
        )
        email = BENCH_EMAIL if big else f"c{c}@bench{n}.example"
        rows["customer_email"].append((ids("customer_email"), tid, cid, email))
        if big or c % 3 == 0:  # a third of the customers signed up
            rows["portal_account"].append(
                (ids("portal_account"), tid, email, password_hash, now, now)
            )
        locs = []
        for k in range(20 if big else rng.choice((1, 1, 2))):
            lid = ids("location")
            locs.append(lid)
            rows["location"].append(
                (
                    lid,
                    tid,
                    cid,
                    f"L{c}-{k}",
                    "",
                    f"{rng.randint(1, 9999)} Main St",
                    "Springfield",
                    "IL",
                    "62701",
                )
            )
        count = BIG_CUSTOMER_INVOICES if big else INVOICES_PER_CUSTOMER
        for _ in range(count):
            jid = ids("job")
            iid = ids("invoice")
            day = today - timedelta(days=rng.randint(1, 1500))
            loc = rng.choice(locs)
            unit = rng.choice(units)
            total = rng.randint(5000, 90000)
            balance = total if rng.random() < 0.33 else 0
            done = datetime(day.year, day.month, day.day, 17, tzinfo=UTC)
            rows["job"].append(
                (jid, tid, cid, loc, unit, f"J{jid}", "Service call", "completed", done, done)
            )
            rows["invoice"].append(
                (
                    iid,
                    tid,
                    cid,
                    jid,
                    loc,
                    unit,
                    f"I{iid}",
                    day,
                    day + timedelta(days=30),
                    "Service call",
                    total,
                    balance,
                    done,
                )
            )
            rows["invoice_line"].append(
                (ids("invoice_line"), tid, iid, 0, "Service call", 1.0, total, total)
            )
            if balance == 0:  # paid: a payment allocated to it, as the portal records one
                pid = ids("payment")
                rows["payment"].append(
                    (
                        pid,
                        tid,
                        cid,
                        email,
                        total,
                        "full",
                        "succeeded",
                        f"gen-{pid}",
                        "sandbox",
                        f"chk_gen_{pid}",
                        "Visa",
                        "4242",
                        "",
                        "portal",
                        done,
                        done,
                    )
                )
                rows["payment_allocation"].append((ids("payment_allocation"), tid, pid, iid, total))
    return rows


async def insert(engine: Any, rows: dict[str, list[tuple]]) -> None:
    if engine.engine_type == "postgres":
        async with engine.pool.acquire() as conn:
            for table, columns in COLUMNS.items():
                if rows[table]:
                    await conn.copy_records_to_table(table, records=rows[table], columns=columns)
    else:
        from portal.db.engine import transaction

        async with transaction() as tx:
            for table, columns in COLUMNS.items():
                if rows[table]:
                    marks = ", ".join("?" for _ in columns)
                    await tx.connection.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows[table]
                    )


async def fix_sequences(engine: Any) -> None:
    if engine.engine_type == "postgres":
        async with engine.pool.acquire() as conn:
            for table in COLUMNS:
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1)) FROM {table}"
                )
                await conn.execute(f"ANALYZE {table}")
    else:
        await engine._run_in_new_connection("ANALYZE")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--businesses", type=int, default=10)
    args = parser.parse_args()
    engine = db_engine.use_database(args.database_url)
    await db_engine.start(engine)
    try:
        await migrate(quiet=True)
        rng = random.Random(7)
        ids = Ids()
        password_hash = hash_password_sync(BENCH_PASSWORD)
        today = date.today()
        started = time.monotonic()
        for n in range(args.businesses):
            await insert(engine, business_rows(n, ids, rng, password_hash, today))
            if (n + 1) % 50 == 0:
                print(
                    f"  {n + 1} businesses, {ids.next.get('invoice', 1) - 1:,} invoices, "
                    f"{time.monotonic() - started:.0f}s",
                    flush=True,
                )
        await fix_sequences(engine)
        print(
            f"Generated {args.businesses} businesses, {ids.next.get('customer', 1) - 1:,} customers, "
            f"{ids.next.get('invoice', 1) - 1:,} invoices in {time.monotonic() - started:.0f}s."
        )
    finally:
        await db_engine.stop(engine)


if __name__ == "__main__":
    asyncio.run(main())

"""Generate a large data set for the scale benchmark.

    python -m bench.generate --database-url postgresql://postgres@127.0.0.1:5432/portal_bench_large --businesses 1000
    python -m bench.generate --database-url sqlite:///var/bench-large.sqlite3 --businesses 1000

The target database is made anew (PostgreSQL: dropped and created through the
`postgres` admin database, never `test`; SQLite: the file replaced), migrated with the
normal migrations (so the schema and its indexes are the real ones), filled, and then
ANALYZEd, as `portal import` leaves a production database.

Each business has 100 customers with one or two locations and 10 invoices each
(completed jobs; about a third unpaid, the others paid by a recorded payment), half of
them a membership with four visits, and a third of its customers have a portal
account (`c<n>@bench<b>.example`, same password). Businesses 0–9 also have the
biggest customer, a property manager ("Big Customer", commercial): 5,000 invoices at
one location, exactly 1,700 of them unpaid, 20 contracts with 24 visits each and 300
appointment requests. With 1,000 businesses that is 100,010 customers and 1,050,000
invoices. The big customer of business `b` signs in on host `bench<b>` as
`big@bench.example` / `bench-password-1`.

Rows go in with PostgreSQL COPY (asyncpg) or SQLite executemany in one transaction
per business; it prints how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from portal.auth.passwords import hash_password_sync
from portal.db import engine as db_engine
from portal.db.migrate import migrate

CUSTOMERS_PER_BUSINESS = 100
INVOICES_PER_CUSTOMER = 10
BIG_CUSTOMER_INVOICES = 5000
BIG_CUSTOMER_UNPAID = 1700
BIG_CUSTOMER_CONTRACTS = 20
BIG_CUSTOMER_VISITS = 24  # per contract
BIG_CUSTOMER_REQUESTS = 300
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
    "membership": [
        "id",
        "tenant",
        "customer",
        "location",
        "external_id",
        "type_name",
        "status",
        "start_date",
        "card_brand",
        "card_last4",
        "created_at",
    ],
    "visit": ["id", "tenant", "membership", "visit_date", "description", "status"],
    "booking_request": [
        "id",
        "tenant",
        "customer",
        "location",
        "account_email",
        "service_type",
        "preferred_windows",
        "status",
        "idempotency_key",
        "created_at",
    ],
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
        for k in range(1 if big else rng.choice((1, 1, 2))):
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
        # The big customer's unpaid invoices: exactly BIG_CUSTOMER_UNPAID, spread over time.
        unpaid = set(rng.sample(range(count), BIG_CUSTOMER_UNPAID)) if big else set()
        for i in range(count):
            jid = ids("job")
            iid = ids("invoice")
            day = today - timedelta(days=rng.randint(1, 1500))
            loc = rng.choice(locs)
            unit = rng.choice(units)
            total = rng.randint(5000, 90000)
            balance = total if (i in unpaid if big else rng.random() < 0.33) else 0
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
        contracts = BIG_CUSTOMER_CONTRACTS if big else (1 if c % 2 == 0 else 0)
        visits = BIG_CUSTOMER_VISITS if big else 4
        for k in range(contracts):
            mid = ids("membership")
            start = today - timedelta(days=rng.randint(30, 700))
            rows["membership"].append(
                (
                    mid,
                    tid,
                    cid,
                    locs[0],
                    f"M{c}-{k}",
                    "Comfort Club",
                    "active",
                    start,
                    "Visa",
                    "1111",
                    now,
                )
            )
            for v in range(visits):
                day = today + timedelta(days=(v - visits // 2) * 45 + 10)
                status = "completed" if day < today else "upcoming"
                rows["visit"].append((ids("visit"), tid, mid, day, "Seasonal tune-up", status))
        for k in range(BIG_CUSTOMER_REQUESTS if big else 0):
            rid = ids("booking_request")
            day = today + timedelta(days=rng.randint(1, 50))
            windows = f'[{{"date": "{day.isoformat()}", "window": "morning"}}]'
            rows["booking_request"].append(
                (
                    rid,
                    tid,
                    cid,
                    locs[0],
                    email,
                    "Plumbing repair",
                    windows,
                    rng.choice(("new", "booked", "dismissed")),
                    f"gen-{rid}",
                    now - timedelta(days=k),
                )
            )
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
    """Sequences past the ids given, then ANALYZE: the planner's statistics, as after an
    import (without them PostgreSQL plans the tabs' joins blind). On PostgreSQL a VACUUM
    too: autovacuum does it soon after a bulk load in a deployment (docs/deploy.md has it
    on; this machine's test server runs with it off), and without the visibility map it
    sets an index-only scan reads every row's table page as well ("Heap Fetches")."""
    if engine.engine_type == "postgres":
        async with engine.pool.acquire() as conn:
            for table in COLUMNS:
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1)) FROM {table}"
                )
            await conn.execute("VACUUM ANALYZE")
    else:
        await engine._run_in_new_connection("ANALYZE")


def fresh_database(url: str) -> None:
    """Make the target database anew: a PostgreSQL database dropped and created through
    the `postgres` admin database, or a SQLite file (and its WAL) removed."""
    if url.startswith(("postgres://", "postgresql://")):
        from bench.common import recreate_postgres_database

        recreate_postgres_database(url)
    else:
        from portal.db.engine import sqlite_path

        path = Path(sqlite_path(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)


async def generate(database_url: str, businesses: int) -> None:
    engine = db_engine.use_database(database_url)
    await db_engine.start(engine)
    try:
        await migrate(quiet=True)
        rng = random.Random(7)
        ids = Ids()
        password_hash = hash_password_sync(BENCH_PASSWORD)
        today = date.today()
        started = time.monotonic()
        for n in range(businesses):
            await insert(engine, business_rows(n, ids, rng, password_hash, today))
            if engine.engine_type == "postgres" and (n + 1 in (1, 10) or (n + 1) % 100 == 0):
                # The foreign-key checks' plans are cached per connection: planned on
                # empty tables they scan `customer` and `location` whole for every row
                # (the 1 M load slowed to 2.6 s a business). ANALYZE replans them.
                async with engine.pool.acquire() as conn:
                    await conn.execute("ANALYZE")
            if (n + 1) % 50 == 0:
                print(
                    f"  {n + 1} businesses, {ids.next.get('invoice', 1) - 1:,} invoices, "
                    f"{time.monotonic() - started:.0f}s",
                    flush=True,
                )
        loaded = time.monotonic() - started
        await fix_sequences(engine)
        print(
            f"Generated {businesses} businesses, {ids.next.get('customer', 1) - 1:,} customers, "
            f"{ids.next.get('invoice', 1) - 1:,} invoices in {loaded:.0f} s "
            f"(+ {time.monotonic() - started - loaded:.0f} s for (VACUUM) ANALYZE).",
            flush=True,
        )
    finally:
        await db_engine.stop(engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--businesses", type=int, default=10)
    args = parser.parse_args()
    fresh_database(args.database_url)
    asyncio.run(generate(args.database_url, args.businesses))


if __name__ == "__main__":
    main()

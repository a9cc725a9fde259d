"""No delete takes a money record with it (issue 17.13, the books stay whole): in the
database itself, on SQLite and on PostgreSQL, deleting a customer, location, job, invoice,
payment, membership or booking request that a job, invoice, payment, payment allocation,
refund, membership or card update points at is refused (ON DELETE RESTRICT), and changes
nothing. What belongs wholly to a record still goes with it (a customer's emails and
locations, an invoice's lines), and deleting a whole business still deletes everything.
The migration that made the foreign keys RESTRICT keeps every row, index and trigger."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from piccolo.columns import ForeignKey

from portal.db import tables as t
from portal.db.engine import sqlite_path, transaction
from portal.db.fast import driver_sql
from portal.testing import engine_kind, fresh_database

RESTRICT_MIGRATION = "2026-12-02T07:00:00:000000"
# The records the books are made of: a foreign key from one of these never cascades (but
# from the business, `tenant`: deleting a whole business deletes everything).
MONEY = {
    "job",
    "invoice",
    "payment",
    "payment_allocation",
    "payment_refund",
    "membership",
    "card_update",
}
REFUSED = (sqlite3.IntegrityError, asyncpg.exceptions.ForeignKeyViolationError)
COUNTED = [
    "customer",
    "customer_email",
    "location",
    "booking_request",
    *sorted(MONEY),
    "invoice_line",
    "audit_event",
]

Run = Callable[..., Awaitable[int]]


async def make_books(run: Run, host: str) -> dict[str, int]:
    """A business with one of every money record, in plain SQL (so it also runs on a
    database migrated only up to before the RESTRICT migration); returns the ids.

    `customer` has an email, a location, a booking request booked as a job, the job's
    invoice (with a line and an audit row), a payment allocated to it and a membership
    whose card was changed; `payer` has only a payment (refunded in part); `free` has an
    email, a location and a booking request, and no money record at all."""
    ids: dict[str, int] = {}
    ids["tenant"] = await run(
        "INSERT INTO tenant (host, name) VALUES ({}, {}) RETURNING id", host, f"{host} books"
    )
    tenant = ids["tenant"]
    ids["unit"] = await run(
        "INSERT INTO business_unit (tenant, name) VALUES ({}, 'Plumbing') RETURNING id", tenant
    )
    for who in ("customer", "payer", "free"):
        ids[who] = await run(
            "INSERT INTO customer (tenant, external_id, name) VALUES ({}, {}, {}) RETURNING id",
            tenant,
            who.upper(),
            f"{who.title()} Person",
        )
    for who in ("customer", "free"):
        await run(
            "INSERT INTO customer_email (tenant, customer, email) VALUES ({}, {}, {}) RETURNING id",
            tenant,
            ids[who],
            f"{who}@{host}.example",
        )
        ids[f"{who}_location"] = await run(
            "INSERT INTO location (tenant, customer, external_id, street) "
            "VALUES ({}, {}, {}, '1 Main St') RETURNING id",
            tenant,
            ids[who],
            f"L-{who}",
        )
        ids[f"{who}_request"] = await run(
            "INSERT INTO booking_request (tenant, customer, location, service_type, "
            "idempotency_key) VALUES ({}, {}, {}, 'Repair', {}) RETURNING id",
            tenant,
            ids[who],
            ids[f"{who}_location"],
            f"key-{who}",
        )
    ids["job"] = await run(
        "INSERT INTO job (tenant, customer, location, business_unit, booking_request, number) "
        "VALUES ({}, {}, {}, {}, {}, 'J-1') RETURNING id",
        tenant,
        ids["customer"],
        ids["customer_location"],
        ids["unit"],
        ids["customer_request"],
    )
    ids["invoice"] = await run(
        "INSERT INTO invoice (tenant, customer, job, location, business_unit, number, "
        "invoice_date, total_cents, balance_cents) "
        "VALUES ({}, {}, {}, {}, {}, 'INV-1', {}, 12500, 2500) RETURNING id",
        tenant,
        ids["customer"],
        ids["job"],
        ids["customer_location"],
        ids["unit"],
        date(2026, 11, 2),
    )
    await run(
        "INSERT INTO invoice_line (tenant, invoice, description, amount_cents) "
        "VALUES ({}, {}, 'Repair', 12500) RETURNING id",
        tenant,
        ids["invoice"],
    )
    await run(
        "INSERT INTO audit_event (tenant, job, invoice, action) "
        "VALUES ({}, {}, {}, 'paid') RETURNING id",
        tenant,
        ids["job"],
        ids["invoice"],
    )
    ids["payment"] = await run(
        "INSERT INTO payment (tenant, customer, amount_cents, status, idempotency_key) "
        "VALUES ({}, {}, 10000, 'succeeded', 'pay-1') RETURNING id",
        tenant,
        ids["customer"],
    )
    await run(
        "INSERT INTO payment_allocation (tenant, payment, invoice, amount_cents) "
        "VALUES ({}, {}, {}, 10000) RETURNING id",
        tenant,
        ids["payment"],
        ids["invoice"],
    )
    ids["lone_payment"] = await run(
        "INSERT INTO payment (tenant, customer, amount_cents, status, idempotency_key) "
        "VALUES ({}, {}, 4000, 'succeeded', 'pay-2') RETURNING id",
        tenant,
        ids["payer"],
    )
    await run(
        "INSERT INTO payment_refund (tenant, payment, amount_cents, status) "
        "VALUES ({}, {}, 1000, 'succeeded') RETURNING id",
        tenant,
        ids["lone_payment"],
    )
    ids["membership"] = await run(
        "INSERT INTO membership (tenant, customer, location, external_id, type_name, "
        "start_date) VALUES ({}, {}, {}, 'M-1', 'Gold', {}) RETURNING id",
        tenant,
        ids["customer"],
        ids["customer_location"],
        date(2026, 1, 1),
    )
    await run(
        "INSERT INTO card_update (tenant, customer, membership, idempotency_key, status) "
        "VALUES ({}, {}, {}, 'card-1', 'succeeded') RETURNING id",
        tenant,
        ids["customer"],
        ids["membership"],
    )
    return ids


async def piccolo_run(sql: str, *args: Any) -> int:
    rows = await t.Tenant.raw(sql, *args).run()
    return int(rows[0]["id"]) if rows else 0


async def counts(tenant_id: int) -> dict[str, int]:
    out = {}
    for table in COUNTED:
        rows = await t.Tenant.raw(
            f"SELECT count(*) AS n FROM {table} WHERE tenant = {{}}", tenant_id
        ).run()
        out[table] = rows[0]["n"]
    return out


# What a delete would have taken with it, had it cascaded: (the row deleted, its id's key).
REFUSALS = [
    ("customer", "customer"),  # jobs, invoices, a payment, a membership, a card update
    ("customer", "payer"),  # a payment alone
    ("location", "customer_location"),  # a job, an invoice, a membership
    ("booking_request", "customer_request"),  # the job booked from it
    ("job", "job"),  # its invoice
    ("invoice", "invoice"),  # the payment's allocation
    ("payment", "payment"),  # its allocation
    ("payment", "lone_payment"),  # its refund
    ("membership", "membership"),  # the card update
]


@pytest.fixture(scope="module")
async def books(app) -> dict[str, int]:
    return await make_books(piccolo_run, "booksco")


@pytest.mark.parametrize("table,key", REFUSALS, ids=[f"{a}-{b}" for a, b in REFUSALS])
async def test_a_delete_that_would_take_money_records_is_refused(books, table, key):
    before = await counts(books["tenant"])
    with pytest.raises(REFUSED):
        await t.Tenant.raw(f"DELETE FROM {table} WHERE id = {{}}", books[key]).run()
    # In a write transaction too (the connections the sync API and the office write on).
    with pytest.raises(REFUSED):
        async with transaction():
            await t.Tenant.raw(f"DELETE FROM {table} WHERE id = {{}}", books[key]).run()
    assert await counts(books["tenant"]) == before


async def test_a_customer_without_money_records_goes_with_its_emails_and_locations(books):
    before = await counts(books["tenant"])
    await t.Customer.delete().where(t.Customer.id == books["free"]).run()
    after = await counts(books["tenant"])
    gone = {table: before[table] - after[table] for table in COUNTED}
    assert gone == {
        **dict.fromkeys(COUNTED, 0),
        "customer": 1,
        "customer_email": 1,
        "location": 1,
        "booking_request": 1,
    }


async def test_deleting_a_whole_business_still_deletes_everything(app):
    ids = await make_books(piccolo_run, "closingco")
    assert all(await counts(ids["tenant"]))
    await t.Tenant.delete().where(t.Tenant.id == ids["tenant"]).run()
    assert await counts(ids["tenant"]) == dict.fromkeys(COUNTED, 0)


# --- the schema as the database has it ----------------------------------------------------------


async def database_foreign_keys() -> dict[tuple[str, str], str]:
    """(table, column) → its ON DELETE action ("CASCADE", "RESTRICT", …), as the database
    reports it."""
    out = {}
    if engine_kind() == "sqlite":
        for table in t.TABLES:
            name = table._meta.tablename
            for row in await t.Tenant.raw(f"PRAGMA foreign_key_list({name})").run():
                out[(name, row["from"])] = row["on_delete"]
        return out
    actions = {
        "a": "NO ACTION",
        "r": "RESTRICT",
        "c": "CASCADE",
        "n": "SET NULL",
        "d": "SET DEFAULT",
    }
    rows = await t.Tenant.raw(
        """SELECT c.conrelid::regclass::text AS child, a.attname AS col, c.confdeltype::text AS act
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace"""
    ).run()
    return {(r["child"], r["col"]): actions[r["act"]] for r in rows}


def declared_foreign_keys() -> dict[tuple[str, str], str]:
    """(table, column) → ON DELETE as tables.py declares it."""
    return {
        (
            table._meta.tablename,
            column._meta.db_column_name,
        ): column._foreign_key_meta.on_delete.value
        for table in t.TABLES
        for column in table._meta.foreign_key_columns
        if isinstance(column, ForeignKey)
    }


async def test_the_database_restricts_every_delete_into_a_money_record(app):
    in_database = await database_foreign_keys()
    assert in_database == declared_foreign_keys()
    money = {key: action for key, action in in_database.items() if key[0] in MONEY}
    assert money and all(
        action == ("CASCADE" if column == "tenant" else "RESTRICT")
        for (_, column), action in money.items()
    ), money
    if engine_kind() == "sqlite":
        # Foreign keys are enforced on every connection the app writes on (SQLite leaves
        # them off unless each connection asks).
        assert await t.Tenant.raw("PRAGMA foreign_keys").run() == [{"foreign_keys": 1}]
        async with transaction():
            assert await t.Tenant.raw("PRAGMA foreign_keys").run() == [{"foreign_keys": 1}]


# --- the migration, on a database with data ------------------------------------------------------

MIGRATE = """
import asyncio, sys
from piccolo.apps.migrations.tables import Migration
from portal.db import engine as db_engine
from portal.db import migrate

async def main(url, before):
    engine = db_engine.use_database(url)
    await db_engine.start(engine)
    try:
        if before:  # every migration older than `before`, as `portal migrate` applies them
            await Migration.create_table(if_not_exists=True).run()
            modules = migrate._modules()
            for mid in migrate.migration_ids():
                if mid < before:
                    await (await modules[mid].forwards()).run()
                    await Migration.insert(Migration(name=mid, app_name="portal")).run()
        else:
            await migrate.migrate(quiet=True)
    finally:
        await db_engine.stop(engine)

asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
"""


def migrate_database(url: str, *before: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-c", MIGRATE, url, *before],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


class Driver:
    """Plain SQL on a database the module's engine is not bound to."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")

    async def __aenter__(self) -> Driver:
        if self.sqlite:
            self.connection: Any = sqlite3.connect(sqlite_path(self.url), isolation_level=None)
            self.connection.execute("PRAGMA foreign_keys = 1")
        else:
            self.connection = await asyncpg.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sqlite:
            self.connection.close()
        else:
            await self.connection.close()

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self.sqlite:
            cursor = self.connection.execute(driver_sql(sql, "sqlite"), args)
            names = [c[0] for c in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [dict(r) for r in await self.connection.fetch(driver_sql(sql, "postgres"), *args)]

    async def run(self, sql: str, *args: Any) -> int:
        if self.sqlite:
            args = tuple(a.isoformat() if isinstance(a, date) else a for a in args)
        rows = await self.fetch(sql, *args)
        return int(rows[0]["id"]) if rows else 0

    async def rolled_back(self, sql: str, *args: Any, then: str) -> list[dict[str, Any]]:
        """What `then` reads after `sql`, both with `args`, in a transaction rolled back."""
        if self.sqlite:
            self.connection.execute("BEGIN")
            try:
                await self.fetch(sql, *args)
                return await self.fetch(then, *args)
            finally:
                self.connection.execute("ROLLBACK")
        transaction = self.connection.transaction()
        await transaction.start()
        try:
            await self.fetch(sql, *args)
            return await self.fetch(then, *args)
        finally:
            await transaction.rollback()

    async def rows(self) -> dict[str, list[dict[str, Any]]]:
        return {table: await self.fetch(f"SELECT * FROM {table} ORDER BY id") for table in COUNTED}

    async def schema_objects(self) -> set[str]:
        """The names of every index and trigger (what a SQLite table rebuild must make
        again)."""
        if self.sqlite:
            rows = await self.fetch(
                "SELECT type || ' ' || name AS name FROM sqlite_master "
                "WHERE type IN ('index', 'trigger')"
            )
        else:
            rows = await self.fetch(
                "SELECT 'index ' || indexname AS name FROM pg_indexes WHERE schemaname = 'public' "
                "UNION SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal"
            )
        return {r["name"] for r in rows}


def _as_before(after: dict, before: dict) -> dict:
    """`after`'s rows with only the columns `before`'s rows of the same table had."""
    shaped = {}
    for table, found in after.items():
        names = set(before[table][0]) if before.get(table) else None
        shaped[table] = [
            {k: v for k, v in row.items() if names is None or k in names} for row in found
        ]
    return shaped


async def test_the_migration_keeps_every_row_index_and_trigger(tmp_path: Path, database_url):
    async with fresh_database(tmp_path) as url:
        migrate_database(url, RESTRICT_MIGRATION)
        async with Driver(url) as db:
            ids = await make_books(db.run, "oldbooks")
            rows = await db.rows()
            assert all(rows.values())
            # Before: a customer delete took the invoices and payments with it (rolled back).
            taken = await db.rolled_back(
                "DELETE FROM customer WHERE id = {}",
                ids["customer"],
                then="SELECT count(*) AS n FROM invoice WHERE customer = {}",
            )
            assert taken == [{"n": 0}]
            assert await db.rows() == rows
        migrate_database(url)
        async with Driver(url) as db, Driver(database_url) as current:
            # Later migrations may add columns (e.g. the invoice's status): the rows kept
            # are compared on the columns they had.
            assert _as_before(await db.rows(), rows) == rows
            assert await db.schema_objects() == await current.schema_objects()
            if db.sqlite:
                assert db.connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                assert db.connection.execute("PRAGMA foreign_key_check").fetchall() == []
            with pytest.raises(REFUSED):
                await db.fetch("DELETE FROM customer WHERE id = {}", ids["customer"])
            assert _as_before(await db.rows(), rows) == rows
            # The invoice's balance is still checked by its triggers (SQLite) / constraint.
            with pytest.raises((sqlite3.IntegrityError, asyncpg.exceptions.CheckViolationError)):
                await db.fetch(
                    "UPDATE invoice SET balance_cents = -1 WHERE id = {}", ids["invoice"]
                )

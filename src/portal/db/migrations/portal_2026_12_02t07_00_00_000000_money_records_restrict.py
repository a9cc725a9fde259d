"""A delete never takes a money record with it: the foreign keys that pointed at a
customer, a location, a job, an invoice, a payment, a membership or a booking request
from a job, invoice, payment, payment allocation, refund, membership or card update were
ON DELETE CASCADE (a plain `DELETE FROM customer` took the customer's invoices and
payments along); they become ON DELETE RESTRICT, so the database refuses such a delete.
A business's own delete (tenant) still cascades through everything.

PostgreSQL: each constraint is dropped and added again under its name, in the migration's
transaction (`ALTER TABLE` holds each table's lock while it checks the rows).

SQLite cannot alter a constraint: each table is rebuilt (sqlite.org/lang_altertable.html,
"making other kinds of table schema changes") on a connection of its own with
`foreign_keys` off (the pragma is a no-op inside a transaction, so this migration is not
wrapped in one; it runs its own): the stored CREATE TABLE with CASCADE → RESTRICT for the
named columns, the rows copied, the old table dropped, the new one renamed, its indexes and
triggers made again, `PRAGMA foreign_key_check` clean before COMMIT.

Piccolo's own `alter_column` cannot do either on SQLite, so its alterations are recorded for
the schema snapshot (tests/test_schema.py) and the SQL is this file's.
"""

import re

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete
from piccolo.columns.column_types import ForeignKey
from piccolo.engine import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-02T07:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "money records: ON DELETE RESTRICT"

# table → (its class, {column: the table it references}), in an order where a table is
# rebuilt before the tables that reference it (SQLite does not mind; it reads plainly).
RESTRICT = {
    "job": (
        "Job",
        {"customer": "customer", "location": "location", "booking_request": "booking_request"},
    ),
    "invoice": ("Invoice", {"customer": "customer", "job": "job", "location": "location"}),
    "payment": ("Payment", {"customer": "customer"}),
    "payment_allocation": ("PaymentAllocation", {"payment": "payment", "invoice": "invoice"}),
    "payment_refund": ("PaymentRefund", {"payment": "payment"}),
    "membership": ("Membership", {"customer": "customer", "location": "location"}),
    "card_update": ("CardUpdate", {"customer": "customer", "membership": "membership"}),
}


class _SchemaOnly(MigrationManager):
    """Records the alterations for Piccolo's schema snapshot; the SQL is `_restrict`'s."""

    async def _run_alter_columns(self, backwards: bool = False) -> None:
        return None


async def _postgres(engine) -> None:
    for table, (_, columns) in RESTRICT.items():
        clauses = []
        for column, target in columns.items():
            rows = await engine.run_ddl(
                f"""SELECT c.conname FROM pg_constraint c
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.conrelid = '{table}'::regclass AND c.contype = 'f'
                AND array_length(c.conkey, 1) = 1 AND a.attname = '{column}'"""
            )
            if len(rows) != 1:
                raise RuntimeError(f"{table}.{column}: expected one foreign key, found {rows}")
            name = rows[0]["conname"]
            clauses.append(f'DROP CONSTRAINT "{name}"')
            clauses.append(
                f'ADD CONSTRAINT "{name}" FOREIGN KEY ("{column}") REFERENCES "{target}" ("id") '
                "ON UPDATE CASCADE ON DELETE RESTRICT"
            )
        await engine.run_ddl(f'ALTER TABLE "{table}" ' + ", ".join(clauses))


def _restricted(sql: str, table: str, columns: dict[str, str]) -> str:
    """The stored CREATE TABLE of `table`, renamed `_new_<table>`, with each of `columns`
    ON DELETE RESTRICT instead of CASCADE (exactly one such clause per column, else a
    schema this migration does not know: it stops)."""
    head = f'CREATE TABLE "{table}" ('
    if not sql.startswith(head):
        raise RuntimeError(f"{table}: unexpected CREATE TABLE: {sql[:80]}")
    sql = f'CREATE TABLE "_new_{table}" (' + sql[len(head) :]
    for column, target in columns.items():
        pattern = re.compile(
            rf'("{column}" INTEGER (?:NOT NULL )?REFERENCES "{target}" \("id"\) ON DELETE )CASCADE\b'
        )
        sql, count = pattern.subn(r"\1RESTRICT", sql)
        if count != 1:
            raise RuntimeError(f"{table}.{column}: expected one ON DELETE CASCADE, found {count}")
    return sql


async def _sqlite(engine: SQLiteEngine) -> None:
    connection = await engine.get_connection()
    try:
        await connection.execute("PRAGMA foreign_keys = OFF")
        await connection.execute("BEGIN IMMEDIATE")
        try:
            for table, (_, columns) in RESTRICT.items():
                async with connection.execute(
                    "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL",
                    (table,),
                ) as cursor:
                    rows = await cursor.fetchall()
                [create] = [r["sql"] for r in rows if r["type"] == "table"]
                # Indexes and triggers go with the old table; made again on the new one.
                extras = [r["sql"] for r in rows if r["type"] in ("index", "trigger")]
                await connection.execute(_restricted(create, table, columns))
                await connection.execute(f'INSERT INTO "_new_{table}" SELECT * FROM "{table}"')
                await connection.execute(f'DROP TABLE "{table}"')
                await connection.execute(f'ALTER TABLE "_new_{table}" RENAME TO "{table}"')
                for statement in extras:
                    await connection.execute(statement)
            async with connection.execute("PRAGMA foreign_key_check") as cursor:
                broken = await cursor.fetchall()
            if broken:
                raise RuntimeError(f"rows point at missing rows: {broken[:5]}")
            await connection.execute("COMMIT")
        except BaseException:
            await connection.execute("ROLLBACK")
            raise
    finally:
        await connection.execute("PRAGMA foreign_keys = ON")
        await connection.close()


async def forwards():
    engine = engine_finder()
    sqlite = isinstance(engine, SQLiteEngine)
    manager = _SchemaOnly(
        migration_id=ID,
        app_name="portal",
        description=DESCRIPTION,
        # SQLite's rebuild needs foreign_keys off, which only holds outside a transaction.
        wrap_in_transaction=not sqlite,
    )
    for table, (class_name, columns) in RESTRICT.items():
        for column in columns:
            manager.alter_column(
                table_class_name=class_name,
                tablename=table,
                column_name=column,
                db_column_name=column,
                params={"on_delete": OnDelete.restrict},
                old_params={"on_delete": OnDelete.cascade},
                column_class=ForeignKey,
                old_column_class=ForeignKey,
                schema=None,
            )

    async def run():
        if sqlite:
            await _sqlite(engine)
        else:
            await _postgres(engine)

    manager.add_raw(run)
    return manager

"""Writing what the sync API receives: idempotent upserts and deletes keyed by the source
system's own ids, a batch at a time in one transaction.

Each record is checked with the importer's rules (portal/importer.py), then compared with
what the source last sent (`sync_record`): a record whose version is older than the
stored one is `stale` and changes nothing; one whose content digest is the stored one is
`unchanged` and writes nothing (an unchanged re-push is reads only). New records are
written with multi-row INSERTs, changed ones with one UPDATE each. The statements per
batch are a fixed number per kind and chunk, never per record, except for changed records.

A record with a problem is reported (`Outcome.problem`) and skipped; the rest of the batch
is written. Records that reference each other (a job's customer) may come in the same
batch: kinds are written in dependency order (business units, customers, jobs, invoices,
memberships, appointments), deletes last.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from piccolo.engine.sqlite import SQLiteEngine

from portal import importer
from portal.api.records import (
    KIND_OF,
    AppointmentRecord,
    BusinessUnitRecord,
    CustomerRecord,
    DeleteRecord,
    InvoiceRecord,
    JobRecord,
    MembershipRecord,
    Record,
    source_id,
    version_of,
)
from portal.db import events
from portal.db import grants as grants_db
from portal.db import tables as t
from portal.db.engine import current_engine, transaction
from portal.db.fast import driver_sql
from portal.db.outage import translated
from portal.importer import ImportProblem

MAX_BATCH = 10_000
CHUNK = 300  # rows per multi-row statement (bound by SQLite's and asyncpg's parameter limits)
ORDER = ("business_unit", "customer", "job", "invoice", "membership", "appointment")
_PROBLEM = re.compile(r"^\$\.?([^:]*): (.*)$", re.S)


@dataclass
class Outcome:
    """What became of one record of a push: created | updated | unchanged | stale |
    deleted | error (then `problem` says which field and why)."""

    index: int  # the record's place in the push (its line number - 1 in a batch)
    kind: str
    id: str
    result: str = ""
    field: str = ""
    problem: str = ""
    conflict: bool = False  # refused because other records (payments, jobs) hold it

    def fail(self, message: str) -> None:
        """Mark the record refused with an importer-style message "$.field: why"."""
        self.result = "error"
        match = _PROBLEM.match(message)
        if match:
            self.field, self.problem = match.group(1), match.group(2)
        else:
            self.problem = message


@dataclass(eq=False)  # compared by identity: content comparison would be quadratic
class _Item:
    outcome: Outcome
    record: Any
    version: int
    digest: str = ""
    row_id: int | None = None  # the existing row, when there is one
    known: dict[str, Any] | None = None  # its sync_record
    pdf: bytes | None = None  # an invoice's own PDF, decoded


@dataclass
class Summary:
    """Counts of a push by result, and the outcome of every record that was refused."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[Outcome] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def _digest(record: Any) -> str:
    body = msgspec.json.encode(msgspec.structs.replace(record, updated_at=None, version=None))
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _raw(sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run `sql` ({} placeholders) on the batch's transaction, straight on the driver:
    Piccolo's query building costs more than the statement on a 10,000-record batch."""
    engine = current_engine()
    txn = engine.current_transaction.get()
    if txn is None:
        result: list[dict[str, Any]] = await t.Tenant.raw(sql, *args).run()
        return result
    with translated():
        if isinstance(engine, SQLiteEngine):
            cursor = await txn.connection.execute(driver_sql(sql, "sqlite"), args)
            rows = await cursor.fetchall()
            await cursor.close()
            return list(rows)  # Piccolo's connections make rows dicts
        records = await txn.connection.fetch(driver_sql(sql, "postgres"), *args)
    return [dict(r.items()) for r in records]


def _is_postgres() -> bool:
    return not isinstance(current_engine(), SQLiteEngine)


async def _insert(
    table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], returning: str = ""
) -> list[dict[str, Any]]:
    """Multi-row INSERT, as many rows per statement as the drivers' parameter limits allow
    (32,767 on both); RETURNING rows if asked."""
    out: list[dict[str, Any]] = []
    if not rows:
        return out
    if not returning and _is_postgres():
        await _copy(table, columns, rows)
        return out
    marks = "(" + ", ".join(["{}"] * len(columns)) + ")"
    for chunk in _chunks(rows, min(2000, 30_000 // len(columns))):
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join(
            [marks] * len(chunk)
        )
        if returning:
            sql += f" RETURNING {returning}"
        args = [value for row in chunk for value in row]
        out += await _raw(sql, *args)
    return out


async def _copy(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows that need no ids back (lines, emails, sync records…) on PostgreSQL: COPY on
    the batch's connection, in its transaction — one binary stream instead of statements
    of 30,000 parameters each to parse, plan and bind."""
    txn = current_engine().current_transaction.get()
    assert txn is not None, "a batch's rows are written in its transaction"
    with translated():
        await txn.connection.copy_records_to_table(
            table, records=[tuple(row) for row in rows], columns=list(columns)
        )


async def _select_in(
    sql: str, tenant_id: int, values: Sequence[Any], *extra: Any
) -> list[dict[str, Any]]:
    """`sql` with `{in}` standing for a list of values: on PostgreSQL one statement with an
    array, on SQLite a chunk of values at a time."""
    if _is_postgres():
        kind = "bigint[]" if values and isinstance(next(iter(values)), int) else "text[]"
        # `= ANY(array)`: PostgreSQL hashes a long array, so this is one cheap statement
        # (IN (SELECT unnest(…)) was planned as a nested loop: seconds, not milliseconds).
        array_sql = sql.replace("IN ({in})", f"= ANY({{}}::{kind})")
        if not values:
            return []
        # asyncpg prepares each statement, and after five runs PostgreSQL may keep a generic
        # plan, which cannot hash a parameter's array: every row was compared with every
        # id (2.2 s for a lookup of 10,000 ids, against 9 ms planned for the values at
        # hand; an unchanged re-push is mostly these lookups). So a lookup is planned for
        # its own values; the batch's INSERTs keep their cached plans (planning a
        # 2,000-row INSERT every time cost more than it saved).
        await _raw("SET LOCAL plan_cache_mode = force_custom_plan")
        try:
            return await _raw(array_sql, tenant_id, *extra, list(values))
        finally:
            await _raw("SET LOCAL plan_cache_mode = auto")
    out: list[dict[str, Any]] = []
    for chunk in _chunks(list(values), 5000):
        marks = ", ".join(["{}"] * len(chunk))
        out += await _raw(sql.replace("{in}", marks), tenant_id, *extra, *chunk)
    return out


def _bool(value: Any) -> bool:
    return bool(value)


@dataclass
class _Money:
    """The money on an invoice at the moment of a push: paid (succeeded, less what was
    refunded), held by payments still pending, and the invoice's stored status."""

    paid: int = 0
    held: int = 0
    status: str = "issued"

    def void_problem(self) -> str:
        """Why the invoice cannot be voided now, or "" (money stays for the books)."""
        if self.held:
            return (
                "$.status: a payment of this invoice is in progress; void it once the "
                "payment has failed, or refund it once it has gone through"
            )
        if self.paid:
            return (
                f"$.status: {self.paid} cents were paid on this invoice; refund the payment "
                "first, then void it"
            )
        return ""


class _Batch:
    """One push, written in one transaction."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.now = datetime.now(UTC)
        self.new_sync: list[tuple[Any, ...]] = []
        # (sync id, version, digest, deleted)
        self.changed_sync: list[tuple[int, int, str, bool]] = []
        self.row_moves: list[tuple[int, int]] = []  # (sync id, row id): adopted rows

    # --- what the source sent before -----------------------------------------------------

    async def _known(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = await _select_in(
            "SELECT id, external_id, row_id, version, digest, deleted FROM sync_record "
            "WHERE tenant = {} AND kind = {} AND external_id IN ({in})",
            self.tenant_id,
            ids,
            kind,
        )
        return {r["external_id"]: r for r in rows}

    async def _natural(self, kind: str, ids: Sequence[str]) -> dict[str, int]:
        """Rows the source never pushed but that exist (imported, or made in the portal),
        found by their natural key: the push adopts them instead of making twins."""
        table, key = {
            "business_unit": ("business_unit", "name"),
            "customer": ("customer", "external_id"),
            "job": ("job", "number"),
            "invoice": ("invoice", "number"),
            "membership": ("membership", "external_id"),
            "appointment": ("appointment", "external_id"),
        }[kind]
        rows = await _select_in(
            f"SELECT id, {key} AS k FROM {table} WHERE tenant = {{}} AND {key} IN ({{in}})",
            self.tenant_id,
            ids,
        )
        return {r["k"]: r["id"] for r in rows}

    async def sort(self, kind: str, items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
        """Split one kind's records into new and changed; mark unchanged and stale ones."""
        latest: dict[str, _Item] = {}
        for item in items:  # the same record twice in one push: the newer (or later) wins
            prior = latest.get(item.outcome.id)
            if prior is not None and prior.version > item.version:
                item.outcome.result = "unchanged"
                continue
            if prior is not None:
                prior.outcome.result = "unchanged"
            latest[item.outcome.id] = item
        ids = list(latest)
        known = await self._known(kind, ids)
        natural_keys = {
            item.outcome.id: (item.record.name if kind == "business_unit" else item.outcome.id)
            for item in latest.values()
            if item.outcome.id not in known
        }
        natural = await self._natural(kind, list(natural_keys.values())) if natural_keys else {}
        new: list[_Item] = []
        changed: list[_Item] = []
        for source, item in latest.items():
            row = known.get(source)
            item.known = row
            if row is not None:
                # Version 0 is an unversioned record: applied in the order received.
                if item.version and item.version < row["version"]:
                    item.outcome.result = "stale"
                    continue
                if row["digest"] == item.digest and not _bool(row["deleted"]):
                    item.outcome.result = "unchanged"
                    if item.version > row["version"]:
                        self.changed_sync.append((row["id"], item.version, item.digest, False))
                    continue
                if not _bool(row["deleted"]):
                    item.row_id = row["row_id"]
            elif source in natural_keys and natural_keys[source] in natural:
                item.row_id = natural[natural_keys[source]]
            (changed if item.row_id is not None else new).append(item)
        return new, changed

    def remember(self, kind: str, item: _Item, row_id: int) -> None:
        """Queue the sync_record write for a record just written."""
        item.row_id = row_id
        if item.known is None:
            self.new_sync.append(
                (self.tenant_id, kind, item.outcome.id, row_id, item.version, item.digest, False)
            )
        else:
            version = max(item.version, item.known["version"])
            self.changed_sync.append((item.known["id"], version, item.digest, False))
            if item.known["row_id"] != row_id:
                self.row_moves.append((item.known["id"], row_id))

    async def flush_sync(self) -> None:
        await _insert(
            "sync_record",
            ("tenant", "kind", "external_id", "row_id", "version", "digest", "deleted"),
            self.new_sync,
        )
        for sync_id, version, digest, deleted in self.changed_sync:
            await _raw(
                "UPDATE sync_record SET version = {}, digest = {}, deleted = {} WHERE id = {}",
                version,
                digest,
                deleted,
                sync_id,
            )
        for sync_id, row_id in self.row_moves:
            await _raw("UPDATE sync_record SET row_id = {} WHERE id = {}", row_id, sync_id)
        self.new_sync, self.changed_sync, self.row_moves = [], [], []

    # --- lookups of what records refer to -------------------------------------------------

    async def customers(self, ids: Iterable[str]) -> dict[str, int]:
        rows = await _select_in(
            "SELECT id, external_id FROM customer WHERE tenant = {} AND external_id IN ({in})",
            self.tenant_id,
            sorted(set(ids)),
        )
        return {r["external_id"]: r["id"] for r in rows}

    async def locations(self, ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        rows = await _select_in(
            "SELECT id, external_id, customer FROM location WHERE tenant = {} "
            "AND external_id IN ({in})",
            self.tenant_id,
            sorted(set(ids)),
        )
        return {r["external_id"]: (r["id"], r["customer"]) for r in rows}

    async def units(self, ids: Iterable[str]) -> dict[str, int]:
        rows = await _select_in(
            "SELECT external_id, row_id FROM sync_record WHERE tenant = {} AND "
            "kind = 'business_unit' AND deleted = {} AND external_id IN ({in})",
            self.tenant_id,
            sorted(set(ids)),
            False,
        )
        return {r["external_id"]: r["row_id"] for r in rows}

    async def jobs(self, numbers: Iterable[str]) -> dict[str, dict[str, Any]]:
        rows = await _select_in(
            "SELECT id, number, customer, location, business_unit FROM job "
            "WHERE tenant = {} AND number IN ({in})",
            self.tenant_id,
            sorted(set(numbers)),
        )
        return {r["number"]: r for r in rows}

    async def _money_on(self, invoice_ids: Sequence[int]) -> dict[int, _Money]:
        """What is paid and held on invoices about to change, and their status. On
        PostgreSQL the rows are locked first (in id order, as starting a payment locks
        them), so a payment cannot start on an invoice while a push voids it."""
        if not invoice_ids:
            return {}
        ids = sorted(set(invoice_ids))
        if _is_postgres():
            await _select_in(
                "SELECT id FROM invoice WHERE tenant = {} AND id IN ({in}) ORDER BY id FOR UPDATE",
                self.tenant_id,
                ids,
            )
        rows = await _select_in(
            "SELECT i.id AS invoice, i.status AS status, "
            "COALESCE(SUM(CASE WHEN p.status = 'succeeded' "
            "THEN a.amount_cents - a.refunded_cents ELSE 0 END), 0) AS paid, "
            "COALESCE(SUM(CASE WHEN p.status = 'pending' THEN a.amount_cents ELSE 0 END), 0) "
            "AS held "
            "FROM invoice i LEFT JOIN payment_allocation a ON a.invoice = i.id "
            "LEFT JOIN payment p ON p.id = a.payment "
            "WHERE i.tenant = {} AND i.id IN ({in}) GROUP BY i.id, i.status",
            self.tenant_id,
            ids,
        )
        return {r["invoice"]: _Money(int(r["paid"]), int(r["held"]), r["status"]) for r in rows}

    async def _record_voids(self, voided: list[_Item], jobs: dict[str, dict[str, Any]]) -> None:
        """A newly void invoice: a line in its job's audit trail and `invoice.voided` for the
        events feed and webhooks, in the batch's transaction."""
        if not voided:
            return
        await _insert(
            "audit_event",
            ("tenant", "job", "invoice", "actor", "action", "detail", "reference", "created_at"),
            [
                (
                    self.tenant_id,
                    jobs[item.record.job]["id"],
                    item.row_id,
                    "System of record",
                    "voided",
                    f"Invoice {item.outcome.id} voided: nothing is owed on it",
                    "",
                    self.now,
                )
                for item in voided
            ],
        )
        await events.emit_many(
            self.tenant_id,
            "invoice.voided",
            [
                {
                    "invoice_id": item.row_id,
                    "number": item.outcome.id,
                    "total_cents": importer.invoice_total(item.record),
                }
                for item in voided
            ],
        )

    # --- writers, one per kind ------------------------------------------------------------

    async def business_units(self, new: list[_Item], changed: list[_Item]) -> None:
        rows = await _insert(
            "business_unit",
            ("tenant", "name", "invoices_downloadable"),
            [(self.tenant_id, i.record.name, i.record.invoices_downloadable) for i in new],
            "id, name",
        )
        by_name = {r["name"]: r["id"] for r in rows}
        for item in new:
            self.remember("business_unit", item, by_name[item.record.name])
        for item in changed:
            await _raw(
                "UPDATE business_unit SET name = {}, invoices_downloadable = {} "
                "WHERE tenant = {} AND id = {}",
                item.record.name,
                item.record.invoices_downloadable,
                self.tenant_id,
                item.row_id,
            )
            self.remember("business_unit", item, item.row_id or 0)

    async def customers_(self, new: list[_Item], changed: list[_Item]) -> None:
        # A location id is the business's own and unique across its customers.
        all_items = new + changed
        existing = await self.locations(
            loc.id for item in all_items for loc in item.record.locations
        )
        owner: dict[str, str] = {}
        kept_new: list[_Item] = []
        kept_changed: list[_Item] = []
        for item in all_items:
            problem = ""
            for j, loc in enumerate(item.record.locations):
                taken_here = owner.get(loc.id, item.outcome.id) != item.outcome.id
                taken_before = loc.id in existing and existing[loc.id][1] != item.row_id
                if taken_here or taken_before:
                    problem = f"$.locations[{j}].id: {loc.id!r} is another customer's location"
                owner[loc.id] = item.outcome.id
            if problem:
                item.outcome.fail(problem)
            else:
                (kept_new if item.row_id is None else kept_changed).append(item)
        rows = await _insert(
            "customer",
            ("tenant", "external_id", "name", "kind", "phone", "created_at"),
            [
                (
                    self.tenant_id,
                    i.outcome.id,
                    i.record.name,
                    i.record.kind,
                    i.record.phone,
                    self.now,
                )
                for i in kept_new
            ],
            "id, external_id",
        )
        ids = {r["external_id"]: r["id"] for r in rows}
        for item in kept_new:
            self.remember("customer", item, ids[item.outcome.id])
        for item in kept_changed:
            await _raw(
                "UPDATE customer SET name = {}, kind = {}, phone = {} WHERE tenant = {} AND id = {}",
                item.record.name,
                item.record.kind,
                item.record.phone,
                self.tenant_id,
                item.row_id,
            )
            self.remember("customer", item, item.row_id or 0)
        if kept_changed:
            changed_ids = [i.row_id for i in kept_changed]
            for chunk in _chunks(changed_ids, 500):
                marks = ", ".join(["{}"] * len(chunk))
                await _raw(
                    f"DELETE FROM customer_email WHERE tenant = {{}} AND customer IN ({marks})",
                    self.tenant_id,
                    *chunk,
                )
        kept = kept_new + kept_changed
        await _insert(
            "customer_email",
            ("tenant", "customer", "email"),
            [
                (self.tenant_id, item.row_id, email)
                for item in kept
                for email in dict.fromkeys(item.record.emails)
            ],
        )
        fresh = [
            (
                self.tenant_id,
                item.row_id,
                loc.id,
                loc.name,
                loc.street,
                loc.city,
                loc.state,
                loc.zip,
            )
            for item in kept
            for loc in item.record.locations
            if loc.id not in existing
        ]
        await _insert(
            "location",
            ("tenant", "customer", "external_id", "name", "street", "city", "state", "zip"),
            fresh,
        )
        for item in kept_changed:
            for loc in item.record.locations:
                if loc.id in existing:
                    await _raw(
                        "UPDATE location SET name = {}, street = {}, city = {}, state = {}, "
                        "zip = {} WHERE tenant = {} AND id = {}",
                        loc.name,
                        loc.street,
                        loc.city,
                        loc.state,
                        loc.zip,
                        self.tenant_id,
                        existing[loc.id][0],
                    )

    async def jobs_(self, new: list[_Item], changed: list[_Item]) -> None:
        all_items = new + changed
        customers = await self.customers(i.record.customer for i in all_items)
        locations = await self.locations(i.record.location for i in all_items)
        units = await self.units(i.record.business_unit for i in all_items)
        rows_new = []
        kept_new = []
        for item in all_items:
            j = item.record
            if j.customer not in customers:
                item.outcome.fail(f"$.customer: unknown customer {j.customer!r}")
                continue
            if j.location not in locations:
                item.outcome.fail(f"$.location: unknown location {j.location!r}")
                continue
            if locations[j.location][1] != customers[j.customer]:
                item.outcome.fail(f"$.location: {j.location!r} belongs to another customer")
                continue
            if j.business_unit not in units:
                item.outcome.fail(f"$.business_unit: unknown business unit {j.business_unit!r}")
                continue
            values = (
                customers[j.customer],
                locations[j.location][0],
                units[j.business_unit],
                j.summary,
                j.status,
                j.scheduled_start,
                j.scheduled_end,
                j.completed_at,
            )
            if item.row_id is None:
                kept_new.append(item)
                rows_new.append((self.tenant_id, j.number, *values, self.now))
            else:
                await _raw(
                    "UPDATE job SET customer = {}, location = {}, business_unit = {}, summary = {}, "
                    "status = {}, scheduled_start = {}, scheduled_end = {}, completed_at = {} "
                    "WHERE tenant = {} AND id = {}",
                    *values,
                    self.tenant_id,
                    item.row_id,
                )
                self.remember("job", item, item.row_id)
        rows = await _insert(
            "job",
            (
                "tenant",
                "number",
                "customer",
                "location",
                "business_unit",
                "summary",
                "status",
                "scheduled_start",
                "scheduled_end",
                "completed_at",
                "created_at",
            ),
            rows_new,
            "id, number",
        )
        ids = {r["number"]: r["id"] for r in rows}
        for item in kept_new:
            self.remember("job", item, ids[item.outcome.id])

    async def invoices_(self, new: list[_Item], changed: list[_Item]) -> None:
        all_items = new + changed
        jobs = await self.jobs(i.record.job for i in all_items)
        money = await self._money_on([i.row_id for i in changed if i.row_id is not None])
        rows_new, kept_new, kept = [], [], []
        voided: list[_Item] = []
        for item in all_items:
            inv = item.record
            job = jobs.get(inv.job)
            if job is None:
                item.outcome.fail(f"$.job: unknown job {inv.job!r}")
                continue
            total = importer.invoice_total(inv)
            on_it = money.get(item.row_id or 0, _Money())
            if inv.status == "void":
                problem = on_it.void_problem()
                if problem:
                    item.outcome.fail(problem)
                    item.outcome.conflict = True
                    continue
                balance = 0
                if item.row_id is not None and on_it.status != "void":
                    voided.append(item)  # an invoice customers saw as owed: say so
            else:
                already = on_it.paid
                if already > total:
                    item.outcome.fail(
                        f"$.lines: the total ({total} cents) is less than the payments made in "
                        f"the portal ({already} cents)"
                    )
                    continue
                balance = total - already
                if inv.balance_cents is not None:
                    if inv.balance_cents > total:
                        item.outcome.fail(f"$.balance_cents: more than the total ({total} cents)")
                        continue
                    balance = min(balance, inv.balance_cents)
            values = (
                job["customer"],
                job["id"],
                job["location"],
                job["business_unit"],
                inv.date,
                inv.due_date,
                inv.summary or "",
                total,
                balance,
                inv.status,
            )
            kept.append(item)
            if item.row_id is None:
                kept_new.append(item)
                rows_new.append((self.tenant_id, inv.number, *values, self.now))
            else:
                await _raw(
                    "UPDATE invoice SET customer = {}, job = {}, location = {}, business_unit = {}, "
                    "invoice_date = {}, due_date = {}, summary = {}, total_cents = {}, "
                    "balance_cents = {}, status = {} WHERE tenant = {} AND id = {}",
                    *values,
                    self.tenant_id,
                    item.row_id,
                )
                self.remember("invoice", item, item.row_id)
        rows = await _insert(
            "invoice",
            (
                "tenant",
                "number",
                "customer",
                "job",
                "location",
                "business_unit",
                "invoice_date",
                "due_date",
                "summary",
                "total_cents",
                "balance_cents",
                "status",
                "created_at",
            ),
            rows_new,
            "id, number",
        )
        ids = {r["number"]: r["id"] for r in rows}
        for item in kept_new:
            self.remember("invoice", item, ids[item.outcome.id])
        await self._record_voids(voided, jobs)
        fresh_ids = {id(i) for i in kept_new}
        changed_ids = [i.row_id for i in kept if id(i) not in fresh_ids]
        for chunk in _chunks(changed_ids, 500):
            marks = ", ".join(["{}"] * len(chunk))
            await _raw(
                f"DELETE FROM invoice_line WHERE tenant = {{}} AND invoice IN ({marks})",
                self.tenant_id,
                *chunk,
            )
        await _insert(
            "invoice_line",
            (
                "tenant",
                "invoice",
                "position",
                "description",
                "quantity",
                "unit_price_cents",
                "amount_cents",
            ),
            [
                (
                    self.tenant_id,
                    item.row_id,
                    n,
                    line.description,
                    line.quantity,
                    line.unit_price_cents,
                    importer.line_amount(line),
                )
                for item in kept
                for n, line in enumerate(item.record.lines)
            ],
        )
        # The business's own PDF replaces the portal's drawing; a push without one goes
        # back to the drawing.
        if changed_ids:
            for chunk in _chunks(changed_ids, 500):
                marks = ", ".join(["{}"] * len(chunk))
                await _raw(
                    f"DELETE FROM invoice_document WHERE tenant = {{}} AND invoice IN ({marks})",
                    self.tenant_id,
                    *chunk,
                )
        await _insert(
            "invoice_document",
            ("tenant", "invoice", "pdf", "created_at"),
            [(self.tenant_id, i.row_id, i.pdf, self.now) for i in kept if i.pdf is not None],
        )

    async def memberships_(self, new: list[_Item], changed: list[_Item]) -> None:
        all_items = new + changed
        customers = await self.customers(i.record.customer for i in all_items)
        locations = await self.locations(i.record.location for i in all_items)
        rows_new, kept_new, kept = [], [], []
        for item in all_items:
            m = item.record
            if m.customer not in customers:
                item.outcome.fail(f"$.customer: unknown customer {m.customer!r}")
                continue
            if locations.get(m.location, (0, None))[1] != customers[m.customer]:
                item.outcome.fail(f"$.location: unknown location {m.location!r} for this customer")
                continue
            values = (
                customers[m.customer],
                locations[m.location][0],
                m.type,
                m.status,
                m.start_date,
                m.end_date,
                m.card.brand if m.card else "",
                m.card.last4 if m.card else "",
            )
            kept.append(item)
            if item.row_id is None:
                kept_new.append(item)
                rows_new.append((self.tenant_id, m.id, *values, self.now))
            else:
                await _raw(
                    "UPDATE membership SET customer = {}, location = {}, type_name = {}, "
                    "status = {}, start_date = {}, end_date = {}, card_brand = {}, "
                    "card_last4 = {} WHERE tenant = {} AND id = {}",
                    *values,
                    self.tenant_id,
                    item.row_id,
                )
                self.remember("membership", item, item.row_id)
        rows = await _insert(
            "membership",
            (
                "tenant",
                "external_id",
                "customer",
                "location",
                "type_name",
                "status",
                "start_date",
                "end_date",
                "card_brand",
                "card_last4",
                "created_at",
            ),
            rows_new,
            "id, external_id",
        )
        ids = {r["external_id"]: r["id"] for r in rows}
        for item in kept_new:
            self.remember("membership", item, ids[item.outcome.id])
        fresh_ids = {id(i) for i in kept_new}
        changed_ids = [i.row_id for i in kept if id(i) not in fresh_ids]
        for chunk in _chunks(changed_ids, 500):
            marks = ", ".join(["{}"] * len(chunk))
            await _raw(
                f"DELETE FROM visit WHERE tenant = {{}} AND membership IN ({marks})",
                self.tenant_id,
                *chunk,
            )
        await _insert(
            "visit",
            (
                "tenant",
                "membership",
                "visit_date",
                "window_start",
                "window_end",
                "description",
                "status",
            ),
            [
                (
                    self.tenant_id,
                    item.row_id,
                    v.date,
                    v.window_start,
                    v.window_end,
                    v.description,
                    v.status,
                )
                for item in kept
                for v in item.record.visits
            ],
        )

    async def appointments_(self, new: list[_Item], changed: list[_Item]) -> None:
        all_items = new + changed
        customers = await self.customers(i.record.customer for i in all_items)
        locations = await self.locations(i.record.location for i in all_items)
        jobs = await self.jobs(i.record.job for i in all_items if i.record.job is not None)
        asked = sorted({i.record.booking_request for i in all_items if i.record.booking_request})
        requests = {
            r["id"]: r
            for r in await _select_in(
                "SELECT id, customer, status FROM booking_request "
                "WHERE tenant = {} AND id IN ({in})",
                self.tenant_id,
                asked,
            )
        }
        rows_new, kept_new, answered = [], [], set()
        for item in all_items:
            a: AppointmentRecord = item.record
            customer = customers.get(a.customer)
            if customer is None:
                item.outcome.fail(f"$.customer: unknown customer {a.customer!r}")
                continue
            if locations.get(a.location, (0, None))[1] != customer:
                item.outcome.fail(f"$.location: unknown location {a.location!r} for this customer")
                continue
            job = jobs.get(a.job) if a.job is not None else None
            if a.job is not None and (job is None or job["customer"] != customer):
                item.outcome.fail(f"$.job: unknown job {a.job!r} for this customer")
                continue
            request = requests.get(a.booking_request) if a.booking_request else None
            if a.booking_request and (request is None or request["customer"] != customer):
                item.outcome.fail(
                    f"$.booking_request: no appointment request {a.booking_request} "
                    "of this customer"
                )
                continue
            if request is not None and request["status"] == "new":
                answered.add(request["id"])
            values = (
                customer,
                locations[a.location][0],
                a.service_type,
                a.status,
                a.starts_at,
                a.ends_at,
                job["id"] if job else None,
                request["id"] if request else None,
            )
            if item.row_id is None:
                kept_new.append(item)
                rows_new.append((self.tenant_id, a.id, *values, self.now))
            else:
                await _raw(
                    "UPDATE appointment SET customer = {}, location = {}, service_type = {}, "
                    "status = {}, starts_at = {}, ends_at = {}, job = {}, booking_request = {} "
                    "WHERE tenant = {} AND id = {}",
                    *values,
                    self.tenant_id,
                    item.row_id,
                )
                self.remember("appointment", item, item.row_id)
        rows = await _insert(
            "appointment",
            (
                "tenant",
                "external_id",
                "customer",
                "location",
                "service_type",
                "status",
                "starts_at",
                "ends_at",
                "job",
                "booking_request",
                "created_at",
            ),
            rows_new,
            "id, external_id",
        )
        ids = {r["external_id"]: r["id"] for r in rows}
        for item in kept_new:
            self.remember("appointment", item, ids[item.outcome.id])
        # A request the business booked in its own system is booked: it leaves the office's
        # Bookings queue, and the customer's Scheduler shows it with the appointment's time.
        for request_id in sorted(answered):
            await _raw(
                "UPDATE booking_request SET status = 'booked', handled_at = {}, "
                "handled_by = {} WHERE tenant = {} AND id = {} AND status = 'new'",
                self.now,
                "System of record",
                self.tenant_id,
                request_id,
            )

    # --- deletes ------------------------------------------------------------------------------

    async def delete(self, item: _Item) -> None:
        """Delete one record, unless money records (payments) hang on it: those stay for
        the books, so the delete is refused with the reason."""
        record: DeleteRecord = item.record
        kind = record.kind
        known = (await self._known(kind, [record.id])).get(record.id)
        if known is not None and item.version and item.version < known["version"]:
            item.outcome.result = "stale"
            return
        row_id = known["row_id"] if known is not None and not _bool(known["deleted"]) else None
        if known is None:
            row_id = (
                (await self._natural(kind, [record.id])).get(record.id)
                if kind != ("business_unit")
                else None
            )
        if row_id is not None:
            problem = await self._delete_problem(kind, row_id)
            if problem:
                item.outcome.fail(problem)
                item.outcome.conflict = True
                return
            if kind == "customer":
                await self._revoke_grants(row_id)
            table = kind
            await _raw(
                f"DELETE FROM {table} WHERE tenant = {{}} AND id = {{}}", self.tenant_id, row_id
            )
        item.outcome.result = "deleted"
        if known is None:
            self.new_sync.append(
                (self.tenant_id, kind, record.id, row_id or 0, item.version, "", True)
            )
        else:
            self.changed_sync.append((known["id"], max(item.version, known["version"]), "", True))

    async def _revoke_grants(self, customer_id: int) -> None:
        """A customer deleted: the access grants of their record go with it (cascade), and
        those to their emails on no other record are revoked (issue 16.4)."""
        rows = await _raw(
            """SELECT email FROM customer_email WHERE tenant = {} AND customer = {}
            AND email NOT IN (SELECT email FROM customer_email
                              WHERE tenant = {} AND customer <> {})""",
            self.tenant_id,
            customer_id,
            self.tenant_id,
            customer_id,
        )
        await grants_db.revoke_for_person(
            self.tenant_id, customer_id, [r["email"] for r in rows], by="api: customer deleted"
        )

    async def _delete_problem(self, kind: str, row_id: int) -> str:
        """Why `kind` `row_id` may not be deleted ("" when it may). Money records stay for the
        books, and the database refuses a delete that would take one along (ON DELETE
        RESTRICT): a customer, job or invoice with payments stays; a customer with jobs,
        invoices or memberships, a job with invoices, a membership whose card was changed
        through the portal and a business unit with jobs or invoices wait until those are
        moved or deleted."""
        money = {
            "customer": "SELECT 1 AS x FROM payment WHERE tenant = {} AND customer = {} LIMIT 1",
            "job": "SELECT 1 AS x FROM payment_allocation a JOIN invoice i ON i.id = a.invoice "
            "WHERE a.tenant = {} AND i.job = {} LIMIT 1",
            "invoice": "SELECT 1 AS x FROM payment_allocation WHERE tenant = {} AND invoice = {} "
            "LIMIT 1",
            "membership": "SELECT 1 AS x FROM card_update WHERE tenant = {} AND membership = {} "
            "LIMIT 1",
        }.get(kind)
        if money and await _raw(money, self.tenant_id, row_id):
            if kind == "membership":
                return (
                    "$.id: the card on file was changed through the portal for this membership; "
                    "it stays for the books"
                )
            return f"$.id: payments were made on this {kind}; it stays for the books"
        dependants = DEPENDANTS.get(kind, ())
        for table, column, what in dependants:
            sql = f"SELECT 1 AS x FROM {table} WHERE tenant = {{}} AND {column} = {{}} LIMIT 1"
            if await _raw(sql, self.tenant_id, row_id):
                return (
                    f"$.id: {what} still belong to this {kind.replace('_', ' ')}; "
                    "move or delete them first"
                )
        return ""


# What must be deleted before a record may be (each ON DELETE RESTRICT in the database):
# kind → (table, column, what they are in words).
DEPENDANTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "business_unit": (("job", "business_unit", "jobs"), ("invoice", "business_unit", "invoices")),
    "customer": (
        ("job", "customer", "jobs"),
        ("invoice", "customer", "invoices"),
        ("membership", "customer", "memberships"),
    ),
    "job": (("invoice", "job", "invoices"),),
}


def _prepare(index: int, record: Record) -> _Item:
    """Check a record with the importer's rules and compute its digest."""
    if isinstance(record, DeleteRecord):
        outcome = Outcome(index, record.kind, record.id)
        return _Item(outcome, record, version_of(record))
    kind = KIND_OF[type(record)]
    outcome = Outcome(index, kind, source_id(record))
    item = _Item(outcome, record, version_of(record))
    try:
        if isinstance(record, BusinessUnitRecord):
            importer.clean_unit(record, "$")
        elif isinstance(record, CustomerRecord):
            importer.clean_customer(record, "$")
            if record.portal_account is not None:
                raise ImportProblem(
                    "$.portal_account: portal accounts are made by customers signing up, not pushed"
                )
            record.emails = [
                importer.email_address(e, f"$.emails[{n}]") for n, e in enumerate(record.emails)
            ]
            seen: set[str] = set()
            for n, loc in enumerate(record.locations):
                if loc.id in seen:
                    raise ImportProblem(f"$.locations[{n}].id: {loc.id!r} is used twice")
                seen.add(loc.id)
        elif isinstance(record, JobRecord):
            importer.clean_job(record, "$")
            importer.check_job(record, "$")
        elif isinstance(record, InvoiceRecord):
            importer.clean_invoice(record, "$")
            if record.pdf_base64 is not None:
                item.pdf = importer.invoice_pdf(record.pdf_base64, "$")
        elif isinstance(record, MembershipRecord):
            importer.clean_membership(record, "$")
            importer.check_membership(record, "$")
        elif isinstance(record, AppointmentRecord):
            importer.clean_appointment(record, "$")
            importer.check_appointment(record, "$")
    except ImportProblem as problem:
        outcome.fail(str(problem))
        return item
    item.digest = _digest(record)
    return item


async def push(
    tenant_id: int,
    records: Sequence[Record],
    *,
    all_or_nothing: bool = False,
    dry_run: bool = False,
) -> Summary:
    """Write a push of records (at most MAX_BATCH) in one transaction.

    `all_or_nothing`: a single record's push (PUT/DELETE) — any problem stores nothing.
    `dry_run`: do all the work, say what it did, and roll it back (the office's preview)."""
    if dry_run:
        try:
            await _push(tenant_id, records, all_or_nothing=all_or_nothing, rehearse=True)
        except _Refused as rehearsed:
            return rehearsed.summary
    return await _push(tenant_id, records, all_or_nothing=all_or_nothing)


async def _push(
    tenant_id: int,
    records: Sequence[Record],
    *,
    all_or_nothing: bool = False,
    rehearse: bool = False,
) -> Summary:
    if len(records) > MAX_BATCH * 2:  # an office CSV row may be two records (job, invoice)
        raise ValueError(f"at most {MAX_BATCH} records per push")
    items = [_prepare(n, r) for n, r in enumerate(records)]
    summary = Summary(outcomes=[i.outcome for i in items])
    live = [i for i in items if i.outcome.result != "error"]
    if all_or_nothing and len(live) != len(items):
        return _summarize(summary)
    async with transaction():
        batch = _Batch(tenant_id)
        by_kind: dict[str, list[_Item]] = {kind: [] for kind in ORDER}
        deletes: list[_Item] = []
        for item in live:
            if isinstance(item.record, DeleteRecord):
                deletes.append(item)
            else:
                by_kind[item.outcome.kind].append(item)
        writers = {
            "business_unit": batch.business_units,
            "customer": batch.customers_,
            "job": batch.jobs_,
            "invoice": batch.invoices_,
            "membership": batch.memberships_,
            "appointment": batch.appointments_,
        }
        for kind in ORDER:
            if not by_kind[kind]:
                continue
            new, changed = await batch.sort(kind, by_kind[kind])
            await writers[kind](new, changed)
            for item in new:
                if item.outcome.result == "":
                    item.outcome.result = "created"
            for item in changed:
                if item.outcome.result == "":
                    item.outcome.result = "updated"
            # Later kinds look these rows up (a job's customer), so they are in before them.
            await batch.flush_sync()
        for item in reversed(deletes):
            await batch.delete(item)
        await batch.flush_sync()
        if all_or_nothing and any(i.outcome.result == "error" for i in items):
            raise _Refused(summary)
        if rehearse:
            raise _Refused(_summarize(summary))
    return _summarize(summary)


class _Refused(Exception):
    """Rolls a single record's push back; carries what was found wrong."""

    def __init__(self, summary: Summary) -> None:
        super().__init__("refused")
        self.summary = summary


def _summarize(summary: Summary) -> Summary:
    for outcome in summary.outcomes:
        summary.counts[outcome.result] = summary.counts.get(outcome.result, 0) + 1
        if outcome.result == "error":
            summary.errors.append(outcome)
    return summary


async def push_one(tenant_id: int, record: Record) -> Outcome:
    """One record's upsert or delete: all or nothing (a problem stores nothing)."""
    try:
        summary = await push(tenant_id, [record], all_or_nothing=True)
    except _Refused as refused:
        return refused.summary.outcomes[0]
    return summary.outcomes[0]


async def first_locations(tenant_id: int) -> dict[str, str]:
    """Each customer's first service location, by the business's own ids (an invoice row
    of a CSV names only its customer)."""
    rows = await _raw(
        "SELECT c.external_id AS customer, l.external_id AS location FROM location l "
        "JOIN customer c ON c.id = l.customer WHERE l.tenant = {} ORDER BY l.id",
        tenant_id,
    )
    out: dict[str, str] = {}
    for row in rows:
        out.setdefault(row["customer"], row["location"])
    return out


async def unit_choices(tenant_id: int) -> list[tuple[str, str]]:
    """The business units a pushed job may name: (source id, name)."""
    rows = await _raw(
        "SELECT s.external_id AS id, u.name AS name FROM sync_record s "
        "JOIN business_unit u ON u.id = s.row_id WHERE s.tenant = {} "
        "AND s.kind = 'business_unit' AND s.deleted = {} ORDER BY u.name",
        tenant_id,
        False,
    )
    return [(r["id"], r["name"]) for r in rows]

"""Invoice reads for the customer area: the Invoices tab, the History tab and one invoice.

Every function is scoped by business and by the one customer record being viewed,
and loads a page in a fixed number of statements. $0 invoices never appear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

from portal.db import fast
from portal.db.rows import InvoiceRow
from portal.db.tables import AuditEvent, Invoice, InvoiceLine, Location
from portal.forms import MAX_ID

MAX_OPEN_INVOICES = 200  # the Invoices tab lists at most this many (oldest first)
HISTORY_PREVIEW = 5  # newest invoices shown per location on the History tab
HISTORY_PAGE = 15  # invoices per page when one location is chosen
CURSOR = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d{1,10})$", re.ASCII)

_INVOICE_COLUMNS = """
    i.id, i.number, i.invoice_date, i.due_date, i.summary, i.total_cents, i.balance_cents,
    i.location AS location_id, j.number AS job_number, j.summary AS job_summary,
    j.status AS job_status, l.name AS location_name, l.street AS location_street,
    l.city AS location_city, bu.name AS unit_name, bu.invoices_downloadable AS downloadable
"""
_INVOICE_JOINS = """
    FROM invoice i
    JOIN job j ON j.id = i.job
    JOIN location l ON l.id = i.location
    JOIN business_unit bu ON bu.id = i.business_unit
"""


def as_date(value: Any) -> date | None:
    """A DATE column's value as a date (SQLite hands raw queries ISO strings)."""
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def status_of(invoice: dict[str, Any]) -> tuple[str, str]:
    """(label, badge style) of an invoice as the customer sees it."""
    if invoice["balance_cents"] <= 0:
        return "Paid", "ok"
    if invoice.get("job_status", "completed") != "completed":
        return "Job not finished", ""
    if invoice["balance_cents"] < invoice["total_cents"]:
        return "Partly paid", "warn"
    return "Unpaid", "bad"


def _invoice_row(row: dict[str, Any]) -> dict[str, Any]:
    row["invoice_date"] = as_date(row["invoice_date"])
    row["due_date"] = as_date(row.get("due_date"))
    row["downloadable"] = bool(row["downloadable"])
    row["status"], row["status_style"] = status_of(row)
    row["payable"] = (
        row["balance_cents"] > 0 and row["total_cents"] > 0 and row["job_status"] == "completed"
    )
    return row


def _in_list(values: list[int]) -> str:
    return ", ".join(["{}"] * len(values))


# --- Invoices tab --------------------------------------------------------------------------------


# Each row also carries how many invoices are open and their total balance, counted
# before the limit: a customer with more open invoices than the tab lists still sees
# the whole amount due.
OPEN_INVOICES_SQL = f"""
    SELECT i.id, i.number, i.invoice_date, i.total_cents, i.balance_cents,
        j.summary AS job_summary, l.name AS location_name, l.street AS location_street,
        bu.name AS unit_name, bu.invoices_downloadable AS downloadable,
        COUNT(*) OVER () AS open_count, SUM(i.balance_cents) OVER () AS open_total
    {_INVOICE_JOINS}
    WHERE i.tenant = {{}} AND i.customer = {{}} AND i.balance_cents > 0
      AND i.total_cents > 0 AND j.status = 'completed'
    ORDER BY i.invoice_date, i.id
    LIMIT {{}}
"""


async def open_invoices(tenant_id: int, customer_id: int) -> list[InvoiceRow]:
    """Unpaid invoices of completed jobs, over $0, oldest first (the Invoices tab), at most
    MAX_OPEN_INVOICES of them: just the columns the tab shows, as the driver gives them
    (`invoice_date` is ISO text on SQLite; the template's `date` filter reads both), and
    `open_count` / `open_total` over all of them."""
    rows = await fast.fetch(OPEN_INVOICES_SQL, tenant_id, customer_id, MAX_OPEN_INVOICES)
    return cast(list[InvoiceRow], rows)  # the columns of OPEN_INVOICES_SQL


async def customer_invoices(
    tenant_id: int, customer_id: int, invoice_ids: list[int]
) -> list[dict[str, Any]]:
    """These invoices if they are the customer's (any status); others are simply absent."""
    if not invoice_ids:
        return []
    rows = await Invoice.raw(
        f"""SELECT {_INVOICE_COLUMNS}, i.job AS job_id {_INVOICE_JOINS}
        WHERE i.tenant = {{}} AND i.customer = {{}} AND i.id IN ({_in_list(invoice_ids)})
        ORDER BY i.invoice_date, i.id""",
        tenant_id,
        customer_id,
        *invoice_ids,
    ).run()
    return [_invoice_row(r) for r in rows]


# --- History tab ---------------------------------------------------------------------------------


@dataclass
class Cursor:
    """A keyset position in a location's history: (invoice date, id)."""

    day: date
    id: int

    def __str__(self) -> str:
        return f"{self.day.isoformat()}.{self.id}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor | None:
        match = CURSOR.match(value or "")
        if not match:
            return None
        if int(match.group(2)) > MAX_ID:
            return None
        try:
            return cls(date.fromisoformat(match.group(1)), int(match.group(2)))
        except ValueError:
            return None


@dataclass
class HistoryGroup:
    """One service location and its invoices (a preview, or one page)."""

    location: dict[str, Any]
    invoices: list[dict[str, Any]]
    count: int = 0  # all of the location's invoices shown on History
    older: str | None = None  # cursor of the next (older) page
    newer: str | None = None  # cursor of the previous (newer) page


@dataclass
class History:
    groups: list[HistoryGroup] = field(default_factory=list)
    locations: list[dict[str, Any]] = field(default_factory=list)
    location: dict[str, Any] | None = None  # the chosen location, if any


async def customer_locations(tenant_id: int, customer_id: int) -> list[dict[str, Any]]:
    """The customer's service locations, by name."""
    return (
        await Location.select(Location.id, Location.name, Location.street, Location.city)
        .where((Location.tenant == tenant_id) & (Location.customer == customer_id))
        .order_by(Location.name)
        .order_by(Location.id)
        .run()
    )


async def history(tenant_id: int, customer_id: int) -> History:
    """Every location's newest invoices (paid and unpaid, never $0), with their counts."""
    locations = await customer_locations(tenant_id, customer_id)
    rows = await Invoice.raw(
        f"""SELECT * FROM (
            SELECT {_INVOICE_COLUMNS},
                ROW_NUMBER() OVER (PARTITION BY i.location ORDER BY i.invoice_date DESC, i.id DESC)
                    AS position,
                COUNT(*) OVER (PARTITION BY i.location) AS location_count
            {_INVOICE_JOINS}
            WHERE i.tenant = {{}} AND i.customer = {{}} AND i.total_cents > 0
        ) ranked
        WHERE position <= {{}}
        ORDER BY invoice_date DESC, id DESC""",
        tenant_id,
        customer_id,
        HISTORY_PREVIEW,
    ).run()
    by_location: dict[int, HistoryGroup] = {}
    for row in rows:
        group = by_location.get(row["location_id"])
        if group is None:
            group = by_location[row["location_id"]] = HistoryGroup(
                location={}, invoices=[], count=row["location_count"]
            )
        group.invoices.append(_invoice_row(row))
    result = History(locations=locations)
    for loc in locations:  # locations in name order; those without invoices are left out
        group = by_location.get(loc["id"])
        if group is not None:
            group.location = loc
            result.groups.append(group)
    return result


async def location_history(
    tenant_id: int,
    customer_id: int,
    location_id: int,
    *,
    older: Cursor | None = None,
    newer: Cursor | None = None,
    page_size: int = HISTORY_PAGE,
) -> History | None:
    """One page of a location's invoices, newest first (keyset: older/newer than a cursor).
    None if the location is not the customer's."""
    locations = await customer_locations(tenant_id, customer_id)
    location = next((loc for loc in locations if loc["id"] == location_id), None)
    if location is None:
        return None
    args: list[Any] = [tenant_id, customer_id, location_id]
    keyset, order = "", "DESC"
    if newer is not None:
        # Walk towards newer invoices, then show them newest first again.
        # A row-value comparison, so the index (customer, location, date, id) seeks to it.
        keyset = "AND (i.invoice_date, i.id) > ({}, {})"
        args += [newer.day, newer.id]
        order = "ASC"
    elif older is not None:
        keyset = "AND (i.invoice_date, i.id) < ({}, {})"
        args += [older.day, older.id]
    rows = await Invoice.raw(
        f"""SELECT {_INVOICE_COLUMNS}, COUNT(*) OVER () AS location_count {_INVOICE_JOINS}
        WHERE i.tenant = {{}} AND i.customer = {{}} AND i.location = {{}} AND i.total_cents > 0
        {keyset}
        ORDER BY i.invoice_date {order}, i.id {order}
        LIMIT {page_size + 1}""",
        *args,
    ).run()
    more = len(rows) > page_size
    if newer is not None and not more:
        # Back at the newest invoices: show the first page as it is anywhere else.
        return await location_history(tenant_id, customer_id, location_id, page_size=page_size)
    rows = [_invoice_row(r) for r in rows[:page_size]]
    if order == "ASC":
        rows.reverse()
    group = HistoryGroup(location=location, invoices=rows)
    if rows:
        first, last = rows[0], rows[-1]
        went_newer = newer is not None
        # More rows beyond the page in the direction we walked; the other side exists
        # whenever we arrived through a cursor.
        has_older = more if not went_newer else True
        has_newer = more if went_newer else older is not None
        group.older = str(Cursor(last["invoice_date"], last["id"])) if has_older else None
        group.newer = str(Cursor(first["invoice_date"], first["id"])) if has_newer else None
    return History(groups=[group], locations=locations, location=location)


# --- one invoice ---------------------------------------------------------------------------------


async def invoice_detail(
    tenant_id: int, customer_id: int, invoice_id: int
) -> dict[str, Any] | None:
    """An invoice with its lines, payments and audit trail; None unless it is this
    customer's and over $0 (4 statements)."""
    rows = await Invoice.raw(
        f"""SELECT {_INVOICE_COLUMNS}, i.job AS job_id, c.name AS customer_name,
            l.state AS location_state, l.zip AS location_zip
        {_INVOICE_JOINS}
        JOIN customer c ON c.id = i.customer
        WHERE i.tenant = {{}} AND i.customer = {{}} AND i.id = {{}} AND i.total_cents > 0""",
        tenant_id,
        customer_id,
        invoice_id,
    ).run()
    if not rows:
        return None
    invoice = _invoice_row(rows[0])
    invoice["lines"] = (
        await InvoiceLine.select(
            InvoiceLine.description,
            InvoiceLine.quantity,
            InvoiceLine.unit_price_cents,
            InvoiceLine.amount_cents,
        )
        .where((InvoiceLine.tenant == tenant_id) & (InvoiceLine.invoice == invoice_id))
        .order_by(InvoiceLine.position)
        .order_by(InvoiceLine.id)
        .run()
    )
    invoice["payments"] = await Invoice.raw(
        """SELECT p.id, p.completed_at, p.card_brand, p.card_last4, p.gateway_ref AS reference,
            p.source, p.customer AS customer_id, pa.amount_cents
        FROM payment_allocation pa JOIN payment p ON p.id = pa.payment
        WHERE pa.tenant = {} AND pa.invoice = {} AND p.status = 'succeeded'
        ORDER BY p.completed_at, p.id""",
        tenant_id,
        invoice_id,
    ).run()
    invoice["paid_cents"] = invoice["total_cents"] - invoice["balance_cents"]
    invoice["trail"] = (
        await AuditEvent.select(
            AuditEvent.created_at,
            AuditEvent.actor,
            AuditEvent.action,
            AuditEvent.detail,
            AuditEvent.amount_cents,
            AuditEvent.reference,
        )
        .where(
            (AuditEvent.tenant == tenant_id)
            & (AuditEvent.action != "viewed")  # the office's trail shows views, not this one
            & (
                (AuditEvent.invoice == invoice_id)
                | ((AuditEvent.job == invoice["job_id"]) & AuditEvent.invoice.is_null())
            )
        )
        .order_by(AuditEvent.created_at)
        .order_by(AuditEvent.id)
        .run()
    )
    return invoice


async def business_pdf(tenant_id: int, invoice_id: int) -> bytes | None:
    """The PDF the business's own system pushed for this invoice, if any (the caller has
    checked the invoice is the customer's)."""
    from portal.db.tables import InvoiceDocument

    row = (
        await InvoiceDocument.select(InvoiceDocument.pdf)
        .where((InvoiceDocument.tenant == tenant_id) & (InvoiceDocument.invoice == invoice_id))
        .first()
        .run()
    )
    return bytes(row["pdf"]) if row else None

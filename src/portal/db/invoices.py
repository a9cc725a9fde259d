"""Invoice reads for the customer area: the Invoices tab, the History tab and one invoice.

Every function is scoped by business and by the one customer record being viewed,
and loads a page in a fixed number of statements. $0 invoices never appear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any, cast

from portal.db import fast
from portal.db.rows import InvoiceRow
from portal.db.tables import Invoice
from portal.forms import MAX_ID

OPEN_PAGE = 25  # open invoices per page of the Invoices tab (oldest first)
HISTORY_PREVIEW = 5  # newest invoices shown per location on the History tab
HISTORY_PAGE = 15  # invoices per page when one location is chosen
CURSOR = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d{1,10})$", re.ASCII)

_INVOICE_COLUMNS = """
    i.id, i.number, i.invoice_date, i.due_date, i.summary, i.total_cents, i.balance_cents,
    i.status AS invoice_status, i.location AS location_id, j.number AS job_number,
    j.summary AS job_summary,
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
    if invoice.get("invoice_status") == "void":
        return "Void", ""
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
    row["void"] = row.get("invoice_status") == "void"
    row["payable"] = (
        not row["void"]
        and row["balance_cents"] > 0
        and row["total_cents"] > 0
        and row["job_status"] == "completed"
    )
    return row


def _in_list(values: list[int]) -> str:
    return ", ".join(["{}"] * len(values))


# --- Invoices tab --------------------------------------------------------------------------------


# The page's rows are chosen (and limited) on invoice and job alone, and only those are
# joined to their location and business unit. Each row also carries how many invoices
# are open and their total balance, counted over all of them: a customer with more
# open invoices than a page lists still sees the whole amount due.
#
# That count is every open invoice (from the covering partial index `invoice_open_totals`
# alone: no job is read) less the open invoices of the customer's jobs not completed (a
# few, found from those jobs through `job_customer (customer, status)`: the two ranges
# either side of 'completed'; CROSS JOIN keeps SQLite from starting at the invoices). An
# invoice's customer is its job's (the importer and the sync API write it from the job).
# Joining all 1,700 open invoices of the biggest customer to their jobs cost three times
# as much. `total_cents > 0` is left out of the count: balance_cents > 0 implies it (the
# balance stays within 0..total). Each count is a CTE MATERIALIZED, so it runs once:
# PostgreSQL's generic plan for this prepared statement (estimating one row) otherwise ran
# it again for every row listed.
_OPEN_WHERE = """
    i.tenant = {} AND i.customer = {} AND i.balance_cents > 0 AND i.total_cents > 0
    AND j.status = 'completed'
"""


@lru_cache(maxsize=64)
def open_invoices_sql(
    places: str = "", keyset: str = "", order: str = "", limit: int = OPEN_PAGE + 1
) -> str:
    """The Invoices tab's statement; `places` narrows it to a grant's locations (a
    `fast.within` clause on `i.location`, whose arguments follow each customer id: three
    times); `keyset` (on `i.invoice_date, i.id`, its two arguments after the third
    `places`) picks a page, read in `order` ("" oldest first, or "DESC"), `limit` rows.
    The arguments: `open_invoices_args`.

    The limit is written into the statement, not a parameter: PostgreSQL's generic plan
    of the prepared statement, not knowing how few rows are wanted, read all 1,700 open
    invoices of the biggest customer through `invoice_open_totals` and sorted them (6.6 ms
    against 0.5 ms); with the number in it, it walks `invoice_open` in order and stops."""
    return f"""
    WITH every_open AS MATERIALIZED (
        SELECT COUNT(*) AS open_count, COALESCE(SUM(i.balance_cents), 0) AS open_total
        FROM invoice i
        WHERE i.tenant = {{}} AND i.customer = {{}} AND i.balance_cents > 0{places}
    ), unfinished AS MATERIALIZED (
        SELECT COUNT(*) AS open_count, COALESCE(SUM(i.balance_cents), 0) AS open_total
        FROM job j CROSS JOIN invoice i
        WHERE j.tenant = {{}} AND j.customer = {{}}
          AND (j.status < 'completed' OR j.status > 'completed')
          AND i.job = j.id AND i.tenant = j.tenant AND i.customer = {{}}
          AND i.balance_cents > 0{places}
    ), totals AS (
        SELECT e.open_count - u.open_count AS open_count, e.open_total - u.open_total AS open_total
        FROM every_open e CROSS JOIN unfinished u
    )
    SELECT i.id, i.number, i.invoice_date, i.total_cents, i.balance_cents, i.job_summary,
        l.name AS location_name, l.street AS location_street, bu.name AS unit_name,
        bu.invoices_downloadable AS downloadable, totals.open_count, totals.open_total
    FROM (
        SELECT i.id, i.number, i.invoice_date, i.total_cents, i.balance_cents, i.location,
            i.business_unit, j.summary AS job_summary
        FROM invoice i JOIN job j ON j.id = i.job
        WHERE {_OPEN_WHERE}{places}{keyset}
        ORDER BY i.invoice_date {order}, i.id {order}
        LIMIT {limit}
    ) i
    CROSS JOIN totals
    JOIN location l ON l.id = i.location
    JOIN business_unit bu ON bu.id = i.business_unit
    ORDER BY i.invoice_date {order}, i.id {order}
"""


def open_invoices_args(
    tenant_id: int, customer_id: int, place_args: list[Any], keyset_args: list[Any]
) -> list[Any]:
    """The arguments of `open_invoices_sql`, in order."""
    return [
        *(tenant_id, customer_id, *place_args),
        *(tenant_id, customer_id, customer_id, *place_args),
        *(tenant_id, customer_id, *place_args, *keyset_args),
    ]


OPEN_INVOICES_SQL = open_invoices_sql()
_FROM = " AND (i.invoice_date, i.id) >= ({}, {})"
_BEFORE = " AND (i.invoice_date, i.id) < ({}, {})"


@dataclass
class OpenInvoices:
    """One page of the Invoices tab: its rows (oldest first), and over every open
    invoice (listed or not) how many there are and what they total; the cursors of the
    neighbouring pages (`next`: `?from=`, `previous`: `?before=`) and of this page's
    first row when it is not the first page (`start`: the pay form keeps it, so a form
    sent back with a problem shows the same page)."""

    rows: list[InvoiceRow] = field(default_factory=list)
    open_count: int = 0
    total_due: int = 0
    start: str | None = None
    next: str | None = None
    previous: str | None = None


def _cursor_of(row: InvoiceRow) -> str:
    day = as_date(row["invoice_date"])
    assert day is not None
    return str(Cursor(day, row["id"]))


async def open_invoices(
    tenant_id: int,
    customer_id: int,
    location_ids: list[int] | None = None,
    *,
    start: Cursor | None = None,
    before: Cursor | None = None,
) -> OpenInvoices:
    """A page of the unpaid invoices of completed jobs, over $0, oldest first (the
    Invoices tab): OPEN_PAGE of them, from `start` on (that invoice included), or the
    OPEN_PAGE just before `before`, or the first ones; just the columns the tab shows, as
    the driver gives them (`invoice_date` is ISO text on SQLite; the template's `date`
    filter reads both), with the count and total of all of them. One statement (two when a
    cursor no longer leads anywhere, or walking back reaches the first page: then the first
    page). `location_ids`: only those locations' (a grant's; None: every location)."""
    page = OPEN_PAGE
    places, place_args = fast.within("i.location", location_ids)
    keyset, order, keyset_args = "", "", []
    if before is not None:
        keyset, order, keyset_args = _BEFORE, "DESC", [before.day, before.id]
    elif start is not None:
        keyset, keyset_args = _FROM, [start.day, start.id]
    rows = cast(
        list[InvoiceRow],  # the columns of OPEN_INVOICES_SQL
        await fast.fetch(
            open_invoices_sql(places, keyset, order, page + 1),
            *open_invoices_args(tenant_id, customer_id, place_args, keyset_args),
        ),
    )
    more = len(rows) > page
    if (before is not None and not more) or (start is not None and not rows):
        # Back at the oldest invoices, or a cursor past the last one: the first page.
        return await open_invoices(tenant_id, customer_id, location_ids)
    if not rows:
        return OpenInvoices()
    shown = rows[:page]
    result = OpenInvoices(
        open_count=int(rows[0]["open_count"]), total_due=int(rows[0]["open_total"] or 0)
    )
    if before is not None:
        shown.reverse()
        result.next = str(before)
        result.previous = _cursor_of(shown[0])
    else:
        result.next = _cursor_of(rows[page]) if more else None
        result.previous = _cursor_of(shown[0]) if start is not None else None
    result.rows = shown
    if before is not None or start is not None:
        result.start = _cursor_of(shown[0])
    return result


async def customer_invoices(
    tenant_id: int,
    customer_id: int,
    invoice_ids: list[int],
    location_ids: list[int] | None = None,
) -> list[dict[str, Any]]:
    """These invoices if they are the customer's (any status) and at `location_ids` (a
    grant's; None: any); others are simply absent."""
    if not invoice_ids:
        return []
    places, place_args = fast.within("i.location", location_ids)
    rows = await Invoice.raw(
        f"""SELECT {_INVOICE_COLUMNS}, i.job AS job_id {_INVOICE_JOINS}
        WHERE i.tenant = {{}} AND i.customer = {{}} AND i.id IN ({_in_list(invoice_ids)})"""
        + places
        + " ORDER BY i.invoice_date, i.id",
        tenant_id,
        customer_id,
        *invoice_ids,
        *place_args,
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
    more: bool = False  # the location has more invoices than the preview shows
    older: str | None = None  # cursor of the next (older) page
    newer: str | None = None  # cursor of the previous (newer) page


@dataclass
class History:
    groups: list[HistoryGroup] = field(default_factory=list)
    locations: list[dict[str, Any]] = field(default_factory=list)
    location: dict[str, Any] | None = None  # the chosen location, if any


_LOCATION_COLUMNS = "l.id AS loc_id, l.name AS loc_name, l.street AS loc_street, l.city AS loc_city"
_PICKED_COLUMNS = """
    i.id, i.number, i.invoice_date, i.due_date, i.summary, i.total_cents, i.balance_cents,
    i.status AS invoice_status, i.location AS location_id, j.number AS job_number,
    j.summary AS job_summary,
    j.status AS job_status, l.name AS location_name, l.street AS location_street,
    l.city AS location_city, bu.name AS unit_name, bu.invoices_downloadable AS downloadable
"""


def located_invoices_sql(
    dialect: str, condition: str, order: str, limit: int, places: str = ""
) -> str:
    """Every location of a customer (by name), each with at most `limit` of its invoices
    over $0 that meet `condition` (on alias `v`, placeholders first in the arguments),
    newest (`order` DESC) or oldest (ASC) first: one statement that reads only the rows
    it returns, each location's through the index (customer, location, date, id).

    PostgreSQL takes them with a LATERAL join. SQLite has none; there the invoice rows
    are looked up by id from a correlated subquery that runs once per location.

    `places` narrows the locations to a grant's (a `fast.within` clause on `l.id`, its
    arguments after the business and customer)."""
    pick = f"""
        v.tenant = l.tenant AND v.customer = l.customer AND v.location = l.id
        AND v.total_cents > 0 {condition}
        ORDER BY v.invoice_date {order}, v.id {order} LIMIT {limit}"""
    if dialect == "postgres":
        invoices = f"""LEFT JOIN LATERAL (
            SELECT v.id, v.number, v.invoice_date, v.due_date, v.summary, v.total_cents,
                v.balance_cents, v.status, v.location, v.job, v.business_unit
            FROM invoice v WHERE {pick}
        ) i ON TRUE"""
    else:
        invoices = f"LEFT JOIN invoice i ON i.id IN (SELECT v.id FROM invoice v WHERE {pick})"
    return f"""SELECT {_LOCATION_COLUMNS}, {_PICKED_COLUMNS}
        FROM location l
        {invoices}
        LEFT JOIN job j ON j.id = i.job
        LEFT JOIN business_unit bu ON bu.id = i.business_unit
        WHERE l.tenant = {{}} AND l.customer = {{}}{places}
        ORDER BY l.name, l.id, i.invoice_date {order}, i.id {order}"""


async def _located(
    condition: str,
    args: list[Any],
    order: str,
    limit: int,
    tenant_id: int,
    customer_id: int,
    location_ids: list[int] | None,
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(location, its invoices) for every location of the customer the viewer may see
    (`location_ids`: a grant's; None: all), in name order."""
    places, place_args = fast.within("l.id", location_ids)
    sql = located_invoices_sql(fast.dialect(), condition, order, limit, places)
    grouped: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for row in await fast.fetch(sql, *args, tenant_id, customer_id, *place_args):
        if not grouped or grouped[-1][0]["id"] != row["loc_id"]:
            location = {
                "id": row["loc_id"],
                "name": row["loc_name"],
                "street": row["loc_street"],
                "city": row["loc_city"],
            }
            grouped.append((location, []))
        if row["id"] is not None:
            grouped[-1][1].append(_invoice_row(row))
    return grouped


async def history(
    tenant_id: int, customer_id: int, location_ids: list[int] | None = None
) -> History:
    """Every location's newest invoices (paid and unpaid, never $0), and whether it has
    more than those. One statement, reading at most HISTORY_PREVIEW + 1 invoices a location.
    `location_ids`: only those locations (a grant's; None: every one)."""
    result = History()
    for location, rows in await _located(
        "", [], "DESC", HISTORY_PREVIEW + 1, tenant_id, customer_id, location_ids
    ):
        result.locations.append(location)
        if rows:  # locations without invoices are left out
            group = HistoryGroup(location=location, invoices=rows[:HISTORY_PREVIEW])
            group.more = len(rows) > HISTORY_PREVIEW
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
    location_ids: list[int] | None = None,
) -> History | None:
    """One page of a location's invoices, newest first (keyset: older/newer than a cursor).
    None if the location is not the customer's (or not among `location_ids`, a grant's). One statement (two when walking back
    to the newest page), reading at most `page_size` + 1 invoices."""
    condition, order = "AND v.location = {}", "DESC"
    args: list[Any] = [location_id]
    if newer is not None:
        # Walk towards newer invoices, then show them newest first again.
        # A row-value comparison, so the index (customer, location, date, id) seeks to it.
        condition += " AND (v.invoice_date, v.id) > ({}, {})"
        args += [newer.day, newer.id]
        order = "ASC"
    elif older is not None:
        condition += " AND (v.invoice_date, v.id) < ({}, {})"
        args += [older.day, older.id]
    grouped = await _located(
        condition, args, order, page_size + 1, tenant_id, customer_id, location_ids
    )
    locations = [location for location, _ in grouped]
    found = next(((loc, rows) for loc, rows in grouped if loc["id"] == location_id), None)
    if found is None:
        return None
    location, rows = found
    more = len(rows) > page_size
    if newer is not None and not more:
        # Back at the newest invoices: show the first page as it is anywhere else.
        return await location_history(
            tenant_id, customer_id, location_id, page_size=page_size, location_ids=location_ids
        )
    rows = rows[:page_size]
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
    tenant_id: int, customer_id: int, invoice_id: int, location_ids: list[int] | None = None
) -> dict[str, Any] | None:
    """An invoice with its lines, payments and audit trail (and `viewed_by`: the accounts
    that have viewed it); None unless it is this customer's, at one of `location_ids` (a
    grant's; None: any) and over $0 (4 statements, straight to the driver)."""
    places, place_args = fast.within("i.location", location_ids)
    rows = await fast.fetch(
        f"""SELECT {_INVOICE_COLUMNS}, i.job AS job_id, c.name AS customer_name,
            l.state AS location_state, l.zip AS location_zip
        {_INVOICE_JOINS}
        JOIN customer c ON c.id = i.customer
        WHERE i.tenant = {{}} AND i.customer = {{}} AND i.id = {{}} AND i.total_cents > 0"""
        + places,
        tenant_id,
        customer_id,
        invoice_id,
        *place_args,
    )
    if not rows:
        return None
    invoice = _invoice_row(rows[0])
    invoice["lines"] = await fast.fetch(
        """SELECT description, quantity, unit_price_cents, amount_cents FROM invoice_line
        WHERE tenant = {} AND invoice = {} ORDER BY position, id""",
        tenant_id,
        invoice_id,
    )
    invoice["payments"] = await fast.fetch(
        """SELECT p.id, p.completed_at, p.card_brand, p.card_last4, p.gateway_ref AS reference,
            p.source, p.customer AS customer_id, pa.amount_cents
        FROM payment_allocation pa JOIN payment p ON p.id = pa.payment
        WHERE pa.tenant = {} AND pa.invoice = {} AND p.status = 'succeeded'
        ORDER BY p.completed_at, p.id""",
        tenant_id,
        invoice_id,
    )
    for payment in invoice["payments"]:
        payment["completed_at"] = fast.timestamp(payment["completed_at"])
    # A void invoice owes nothing and holds no money (payments are refunded first).
    invoice["paid_cents"] = (
        0 if invoice["void"] else invoice["total_cents"] - invoice["balance_cents"]
    )
    events = await fast.fetch(
        """SELECT id, created_at, actor, action, detail, amount_cents, reference FROM audit_event
        WHERE tenant = {} AND invoice = {}
        UNION ALL
        SELECT id, created_at, actor, action, detail, amount_cents, reference FROM audit_event
        WHERE tenant = {} AND job = {} AND invoice IS NULL AND action <> 'viewed'
        ORDER BY created_at, id""",
        tenant_id,
        invoice_id,
        tenant_id,
        invoice["job_id"],
    )
    # The office's trail shows views ("viewed"); the customer's does not. Who has viewed
    # it spares a repeat view the write transaction `office_money.note_viewed` would open.
    invoice["viewed_by"] = {e["actor"] for e in events if e["action"] == "viewed"}
    invoice["trail"] = [e for e in events if e["action"] != "viewed"]
    for event in invoice["trail"]:
        event["created_at"] = fast.timestamp(event["created_at"])
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

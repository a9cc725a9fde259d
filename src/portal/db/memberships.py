"""Memberships (residential) and contracts (commercial) of a customer, with their visits.

Every function is scoped by business and by the customer being viewed. Which
statuses a customer may see is the office's choice: active always, canceled,
expired and suspended only when selected in the portal settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from portal.db import fast
from portal.db.rows import TenantRow
from portal.forms import MAX_ID

STATUSES = ("active", "canceled", "expired", "suspended")
HIDEABLE = ("canceled", "expired", "suspended")
PAST_VISITS_PAGE = 20
MEMBERSHIPS_SHOWN = 5  # the Memberships tab lists this many until "Show all" is chosen


def visible_statuses(tenant: TenantRow) -> list[str]:
    """The statuses a customer sees: active always, others only if the office chose them."""
    chosen = set(tenant.get("membership_statuses") or [])
    return ["active", *[s for s in HIDEABLE if s in chosen]]


_COLUMNS = """
    m.id, m.type_name, m.status, m.start_date, m.end_date, m.card_brand, m.card_last4,
    l.name AS location_name, l.street AS location_street, l.city AS location_city,
    l.state AS location_state, l.zip AS location_zip
"""


def _visible(tenant: TenantRow, location_ids: list[int] | None) -> tuple[str, list[Any]]:
    """The WHERE clause of the customer's visible memberships (business and customer
    placeholders first, then the statuses and a grant's locations) and the arguments
    after the business and customer."""
    statuses = visible_statuses(tenant)
    placeholders = ", ".join(["{}"] * len(statuses))
    places, place_args = fast.within("m.location", location_ids)
    where = f"m.tenant = {{}} AND m.customer = {{}} AND m.status IN ({placeholders})" + places
    return where, [*statuses, *place_args]


async def memberships_for_customer(
    tenant: TenantRow,
    customer_id: int,
    today: date,
    location_ids: list[int] | None = None,
    *,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The customer's visible memberships, active first, newest first; each with
    `next_visit` (the next upcoming visit, or None). One statement. `location_ids`: only
    those at a grant's locations (None: every location); `limit`: at most that many."""
    where, statuses = _visible(tenant, location_ids)
    most = f" LIMIT {int(limit)}" if limit is not None else ""
    rows = await fast.fetch(
        f"""SELECT {_COLUMNS},
            (SELECT MIN(v.visit_date) FROM visit v
             WHERE v.tenant = m.tenant AND v.membership = m.id AND v.status = 'upcoming'
               AND v.visit_date >= {{}}) AS next_visit
        FROM membership m JOIN location l ON l.id = m.location
        WHERE {where}
        ORDER BY CASE WHEN m.status = 'active' THEN 0 ELSE 1 END, m.start_date DESC, m.id DESC"""
        + most,
        today,
        tenant["id"],
        customer_id,
        *statuses,
    )
    for row in rows:
        row["next_visit"] = _as_date(row["next_visit"]) if row["next_visit"] else None
    return rows


async def membership_for_customer(
    tenant: TenantRow, customer_id: int, membership_id: int, location_ids: list[int] | None = None
) -> dict[str, Any] | None:
    """One visible membership of the customer, or None (foreign, hidden, at a location
    outside `location_ids` — a grant's — and unknown alike)."""
    where, statuses = _visible(tenant, location_ids)
    rows = await fast.fetch(
        f"""SELECT {_COLUMNS} FROM membership m JOIN location l ON l.id = m.location
        WHERE {where} AND m.id = {{}}""",
        tenant["id"],
        customer_id,
        *statuses,
        membership_id,
    )
    return rows[0] if rows else None


@dataclass
class Visits:
    """A membership's visits: upcoming (soonest first) and one page of past ones."""

    upcoming: list[dict[str, Any]]
    past: list[dict[str, Any]]
    earlier: str | None  # cursor for the next page of past visits, if there is one


def visits_cursor(value: str | None) -> tuple[date, int] | None:
    """Parse a past-visits cursor `YYYY-MM-DD_id`; anything else means the first page."""
    if not value:
        return None
    day, _, ident = value.partition("_")
    if not ident.isdigit() or len(ident) > 10 or int(ident) > MAX_ID:
        return None
    try:
        return date.fromisoformat(day), int(ident)
    except ValueError:
        return None


_VISIT_COLUMNS = "id, visit_date, window_start, window_end, description, status"


async def visits(
    tenant_id: int, membership_id: int, today: date, before: tuple[date, int] | None = None
) -> Visits:
    """Upcoming visits (from `today` on, not yet done) and past visits, newest first,
    paged by keyset on (date, id). Call only for a membership the viewer may see.
    One statement: the upcoming ones (on the first page) and a page of past ones."""
    # Past: anything done, and anything whose day has gone by.
    past_sql = f"""SELECT 1 AS past, {_VISIT_COLUMNS} FROM visit
        WHERE tenant = {{}} AND membership = {{}}
          AND (visit_date < {{}} OR status = 'completed') {{keyset}}
        ORDER BY visit_date DESC, id DESC LIMIT {PAST_VISITS_PAGE + 1}"""
    args: list[Any] = [tenant_id, membership_id, today]
    if before is not None:
        past_sql = past_sql.replace("{keyset}", "AND (visit_date, id) < ({}, {})")
        args += list(before)
        sql = past_sql
    else:
        sql = f"""SELECT * FROM (
            SELECT * FROM (
                SELECT 0 AS past, {_VISIT_COLUMNS} FROM visit
                WHERE tenant = {{}} AND membership = {{}} AND visit_date >= {{}}
                  AND status <> 'completed'
            ) upcoming
            UNION ALL
            SELECT * FROM ({past_sql.replace("{keyset}", "")}) past
        ) visits
        ORDER BY past, CASE WHEN past = 0 THEN visit_date END, CASE WHEN past = 0 THEN id END,
            visit_date DESC, id DESC"""
        args = [tenant_id, membership_id, today, *args]
    upcoming: list[dict[str, Any]] = []
    past: list[dict[str, Any]] = []
    for row in await fast.fetch(sql, *args):
        row["visit_date"] = _as_date(row["visit_date"])
        (past if row.pop("past") else upcoming).append(row)
    earlier = None
    if len(past) > PAST_VISITS_PAGE:
        past = past[:PAST_VISITS_PAGE]
        last = past[-1]
        earlier = f"{last['visit_date'].isoformat()}_{last['id']}"
    return Visits(upcoming=upcoming, past=past, earlier=earlier)


def _as_date(value: Any) -> date:
    # Aggregates come back from SQLite as text.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])

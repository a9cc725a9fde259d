"""Memberships (residential) and contracts (commercial) of a customer, with their visits.

Every function is scoped by business and by the customer being viewed. Which
statuses a customer may see is the office's choice: active always, canceled,
expired and suspended only when selected in the portal settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from piccolo.query.functions.aggregate import Min

from portal.db.rows import TenantRow
from portal.db.tables import Membership, Visit
from portal.forms import MAX_ID

STATUSES = ("active", "canceled", "expired", "suspended")
HIDEABLE = ("canceled", "expired", "suspended")
PAST_VISITS_PAGE = 20


def visible_statuses(tenant: TenantRow) -> list[str]:
    """The statuses a customer sees: active always, others only if the office chose them."""
    chosen = set(tenant.get("membership_statuses") or [])
    return ["active", *[s for s in HIDEABLE if s in chosen]]


def _columns() -> list[Any]:
    loc = Membership.location
    return [
        Membership.id,
        Membership.type_name,
        Membership.status,
        Membership.start_date,
        Membership.end_date,
        Membership.card_brand,
        Membership.card_last4,
        loc.name.as_alias("location_name"),
        loc.street.as_alias("location_street"),
        loc.city.as_alias("location_city"),
        loc.state.as_alias("location_state"),
        loc.zip.as_alias("location_zip"),
    ]


def _visible(tenant: TenantRow, customer_id: int) -> Any:
    return (
        (Membership.tenant == tenant["id"])
        & (Membership.customer == customer_id)
        & Membership.status.is_in(visible_statuses(tenant))
    )


async def memberships_for_customer(
    tenant: TenantRow, customer_id: int, today: date
) -> list[dict[str, Any]]:
    """The customer's visible memberships, active first, newest first; each with
    `next_visit` (the next upcoming visit, or None). Two statements."""
    rows = await (
        Membership.select(*_columns())
        .where(_visible(tenant, customer_id))
        .order_by(Membership.start_date, ascending=False)
        .order_by(Membership.id, ascending=False)
        .run()
    )
    # Active ones first; the query's order (newest first) is kept within each group.
    rows.sort(key=lambda r: r["status"] != "active")
    if not rows:
        return rows
    next_dates = await (
        Visit.select(Visit.membership, Min(Visit.visit_date, alias="next_date"))
        .where(
            (Visit.tenant == tenant["id"])
            & Visit.membership.is_in([r["id"] for r in rows])
            & (Visit.status == "upcoming")
            & (Visit.visit_date >= today)
        )
        .group_by(Visit.membership)
        .run()
    )
    by_membership = {r["membership"]: _as_date(r["next_date"]) for r in next_dates}
    for row in rows:
        row["next_visit"] = by_membership.get(row["id"])
    return rows


async def membership_for_customer(
    tenant: TenantRow, customer_id: int, membership_id: int
) -> dict[str, Any] | None:
    """One visible membership of the customer, or None (foreign, hidden and unknown alike)."""
    return await (
        Membership.select(*_columns())
        .where(_visible(tenant, customer_id) & (Membership.id == membership_id))
        .first()
        .run()
    )


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


async def visits(
    tenant_id: int, membership_id: int, today: date, before: tuple[date, int] | None = None
) -> Visits:
    """Upcoming visits (from `today` on, not yet done) and past visits, newest first,
    paged by keyset on (date, id). Call only for a membership the viewer may see."""
    scope = (Visit.tenant == tenant_id) & (Visit.membership == membership_id)
    columns = [
        Visit.id,
        Visit.visit_date,
        Visit.window_start,
        Visit.window_end,
        Visit.description,
        Visit.status,
    ]
    upcoming_where = scope & (Visit.visit_date >= today) & (Visit.status != "completed")
    upcoming = (
        []
        if before is not None
        else await Visit.select(*columns)
        .where(upcoming_where)
        .order_by(Visit.visit_date)
        .order_by(Visit.id)
        .run()
    )
    # Past: anything done, and anything whose day has gone by.
    past_where = scope & ((Visit.visit_date < today) | (Visit.status == "completed"))
    if before is not None:
        day, ident = before
        past_where = past_where & (
            (Visit.visit_date < day) | ((Visit.visit_date == day) & (Visit.id < ident))
        )
    past = await (
        Visit.select(*columns)
        .where(past_where)
        .order_by(Visit.visit_date, ascending=False)
        .order_by(Visit.id, ascending=False)
        .limit(PAST_VISITS_PAGE + 1)
        .run()
    )
    earlier = None
    if len(past) > PAST_VISITS_PAGE:
        past = past[:PAST_VISITS_PAGE]
        last = past[-1]
        earlier = f"{_as_date(last['visit_date']).isoformat()}_{last['id']}"
    for row in (*upcoming, *past):
        row["visit_date"] = _as_date(row["visit_date"])
    return Visits(upcoming=upcoming, past=past, earlier=earlier)


def _as_date(value: Any) -> date:
    # Aggregates come back from SQLite as text.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])

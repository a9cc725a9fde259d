"""Memberships tab ("Contracts" for commercial customers) and each membership's Visits view."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.guards import CustomerDep
from portal.db import memberships as db
from portal.handlers.customer import tab_page
from portal.handlers.scheduler import business_now, day_text, record_id, window_text
from portal.tenancy import TenantDep

STATUS_BADGES = {"active": "ok", "canceled": "bad", "expired": "", "suspended": "warn"}
VISIT_STATUS = {"completed": "Completed", "canceled": "Canceled", "upcoming": ""}


def _require_memberships(tenant: dict[str, Any]) -> None:
    if not tenant["memberships_enabled"]:
        raise NotFoundException()


def _formatters(today: date) -> dict[str, Any]:
    return {
        "today": today,
        "day_text": lambda d: day_text(d, today),
        "window_text": window_text,
        "status_badges": STATUS_BADGES,
        "visit_status": VISIT_STATUS,
    }


@get("/memberships")
async def memberships(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """The customer's memberships (contracts), in the statuses the office shows."""
    _require_memberships(tenant)
    today = business_now(tenant).date()
    rows = (
        await db.memberships_for_customer(tenant, viewer.customer["id"], today)
        if viewer.customer
        else []
    )
    return tab_page(
        request, tenant, viewer, "memberships", {**_formatters(today), "memberships": rows}
    )


@get("/memberships/{membership_id:str}")
async def membership_visits(
    request: Request, tenant: TenantDep, viewer: CustomerDep, membership_id: FromPath[str]
) -> Response:
    """Visits view of one membership: upcoming visits, the office's message, past visits."""
    _require_memberships(tenant)
    wanted = record_id(membership_id)
    if viewer.customer is None or wanted is None:
        raise NotFoundException()
    membership = await db.membership_for_customer(tenant, viewer.customer["id"], wanted)
    if membership is None:  # another customer's, hidden by the settings, or none at all
        raise NotFoundException()
    today = business_now(tenant).date()
    before = db.visits_cursor(request.query_params.get("earlier"))
    visits = await db.visits(tenant["id"], membership["id"], today, before)
    context = {
        **_formatters(today),
        "membership": membership,
        "visits": visits,
        "paged": before is not None,
    }
    return tab_page(
        request, tenant, viewer, "memberships", context, template="customer/membership.html"
    )


ROUTES = [memberships, membership_visits]

"""Memberships tab ("Contracts" for commercial customers) and each membership's Visits view."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import CustomerViewer, TenantDep
from portal.auth.guards import CustomerDep
from portal.db import card_updates as card_db
from portal.db import memberships as db
from portal.db.rows import TenantRow
from portal.formatting import business_now, day_text, window_text
from portal.forms import record_id
from portal.pages import refuse_customer, tab_page
from portal.payments import card_updates
from portal.payments.service import as_sentence, new_key
from portal.web import form_data, see_other

STATUS_BADGES = {"active": "ok", "canceled": "bad", "expired": "", "suspended": "warn"}
VISIT_STATUS = {"completed": "Completed", "canceled": "Canceled", "upcoming": ""}


def _require_memberships(tenant: TenantRow) -> None:
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
async def memberships(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """The customer's memberships (contracts), in the statuses the office shows: the
    first few, or every one with `?all=1` ("Show all …"), so the tab reads only what it
    shows however many a customer has."""
    _require_memberships(tenant)
    today = business_now(tenant).date()
    every = request.query_params.get("all") == "1"
    shown = None if every else db.MEMBERSHIPS_SHOWN
    rows = (
        await db.memberships_for_customer(
            tenant,
            viewer.customer["id"],
            today,
            viewer.location_ids,
            limit=None if shown is None else shown + 1,
        )
        if viewer.customer
        else []
    )
    more = shown is not None and len(rows) > shown
    return tab_page(
        request,
        tenant,
        viewer,
        "memberships",
        {**_formatters(today), "memberships": rows[:shown] if more else rows, "more": more},
    )


@get("/memberships/{membership_id:str}")
async def membership_visits(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    membership_id: FromPath[str],
) -> Response[Any]:
    """Visits view of one membership: upcoming visits, the office's message, past visits."""
    _require_memberships(tenant)
    wanted = record_id(membership_id)
    if viewer.customer is None or wanted is None:
        raise NotFoundException()
    membership = await db.membership_for_customer(
        tenant, viewer.customer["id"], wanted, viewer.location_ids
    )
    if membership is None:  # another customer's, hidden, not granted, or none at all
        raise NotFoundException()
    return await _visits_page(request, tenant, viewer, membership)


async def _visits_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: CustomerViewer,
    membership: dict[str, Any],
    *,
    card_error: str = "",
    status_code: int = 200,
) -> Response[Any]:
    today = business_now(tenant).date()
    before = db.visits_cursor(request.query_params.get("earlier"))
    visits = await db.visits(tenant["id"], membership["id"], today, before)
    card_notice = ""
    update_id = record_id(request.query_params.get("card"))
    if update_id is not None and viewer.customer is not None and viewer.can_manage_cards:
        update = await card_db.get(tenant["id"], update_id, viewer.customer["id"])
        if update is not None and update["membership"] == membership["id"]:
            card_notice, failed = _card_outcome(update)
            card_error = card_error or (card_notice if failed else "")
            card_notice = "" if failed else card_notice
    context = {
        **_formatters(today),
        "membership": membership,
        "visits": visits,
        "paged": before is not None,
        "can_update_card": membership["status"] in card_updates.BILLING_STATUSES
        and viewer.can_manage_cards,
        "card_key": new_key(),
        "card_notice": card_notice,
        "card_error": card_error,
        "trail": await card_db.audit_trail(tenant["id"], membership["id"]),
    }
    return tab_page(
        request,
        tenant,
        viewer,
        "memberships",
        context,
        template="customer/membership.html",
        status_code=status_code,
    )


def _card_outcome(update: dict[str, Any]) -> tuple[str, bool]:
    """(message, failed) for a card update the customer just came back from."""
    if update["status"] == "succeeded":
        return (
            f"Your card on file is now {update['card_brand']} ending in {update['card_last4']}.",
            False,
        )
    if update["status"] == "failed":
        reason = {
            "declined": "The card was declined.",
            "canceled": "You canceled on the card page.",
            "expired": "The card page timed out.",
        }.get(update["failure_reason"], as_sentence(update["failure_reason"]))
        reason = reason or "It did not go through."
        return f"Your card on file was not changed. {reason} You can try again.", True
    return "We're still waiting to hear from the card page. Refresh in a moment.", False


async def _visible_membership(
    tenant: TenantRow, viewer: CustomerViewer, membership_id: str
) -> dict[str, Any]:
    _require_memberships(tenant)
    wanted = record_id(membership_id)
    if viewer.customer is None or wanted is None:
        raise NotFoundException()
    membership = await db.membership_for_customer(
        tenant, viewer.customer["id"], wanted, viewer.location_ids
    )
    if membership is None:
        raise NotFoundException()
    return membership


@post("/memberships/{membership_id:str}/card")
async def update_card(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    membership_id: FromPath[str],
) -> Response[Any]:
    """Update payment card: off to the gateway's hosted card page (no card number here)."""
    membership = await _visible_membership(tenant, viewer, membership_id)
    if not viewer.can_manage_cards:  # billing and view-only grants (issue 16.4)
        return refuse_customer(request, tenant, viewer, "memberships", "manage cards on file")
    started = await card_updates.start(
        request.app.state.settings,
        tenant,
        viewer.customer_id,
        viewer.session.email,
        membership,
        viewer.memberships_label[:-1].lower(),
        (await form_data(request)).get("key", ""),
    )
    if started.error:
        return await _visits_page(
            request,
            tenant,
            viewer,
            membership,
            card_error=started.error,
            status_code=started.status_code,
        )
    return see_other(request, started.url)


@get("/memberships/{membership_id:str}/card/{update_id:str}")
async def card_return(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    membership_id: FromPath[str],
    update_id: FromPath[str],
) -> Response[Any]:
    """Back from the card page: settle with the gateway if its callback has not come yet."""
    membership = await _visible_membership(tenant, viewer, membership_id)
    if not viewer.can_manage_cards:
        return refuse_customer(request, tenant, viewer, "memberships", "manage cards on file")
    wanted = record_id(update_id)
    update = await card_db.get(tenant["id"], wanted, viewer.customer_id) if wanted else None
    if update is None or update["membership"] != membership["id"]:
        raise NotFoundException()
    await card_updates.refresh(request.app.state.settings, tenant, update)
    return see_other(request, f"/memberships/{membership['id']}?card={update['id']}")


ROUTES = [memberships, membership_visits, update_card, card_return]

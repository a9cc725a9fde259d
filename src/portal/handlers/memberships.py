"""Memberships tab ("Contracts" for commercial customers) and each membership's Visits view."""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.guards import CustomerDep, CustomerViewer
from portal.db import card_updates, payment_accounts
from portal.db import memberships as db
from portal.handlers.customer import tab_page
from portal.handlers.scheduler import business_now, day_text, record_id, window_text
from portal.mail.links import portal_url
from portal.payments.gateway import (
    BadCallback,
    GatewayError,
    PaymentsUnavailable,
    gateway_for,
    verify_callback,
)
from portal.payments.service import as_sentence, call_us, new_key
from portal.tenancy import TenantDep
from portal.web import form_data, see_other

log = logging.getLogger("portal.memberships")
CARD_CALLBACK_PATH = "/memberships/card-callback"
CARD_REFERENCE = re.compile(r"^card_(\d{1,10})$")
KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

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
    return await _visits_page(request, tenant, viewer, membership)


async def _visits_page(
    request: Request,
    tenant: dict[str, Any],
    viewer: CustomerViewer,
    membership: dict[str, Any],
    *,
    card_error: str = "",
    status_code: int = 200,
) -> Response:
    today = business_now(tenant).date()
    before = db.visits_cursor(request.query_params.get("earlier"))
    visits = await db.visits(tenant["id"], membership["id"], today, before)
    card_notice = ""
    update_id = record_id(request.query_params.get("card"))
    if update_id is not None and viewer.customer is not None:
        update = await card_updates.get(tenant["id"], update_id, viewer.customer["id"])
        if update is not None and update["membership"] == membership["id"]:
            card_notice, failed = _card_outcome(update)
            card_error = card_error or (card_notice if failed else "")
            card_notice = "" if failed else card_notice
    context = {
        **_formatters(today),
        "membership": membership,
        "visits": visits,
        "paged": before is not None,
        "can_update_card": membership["status"] in card_updates.BILLING_STATUSES,
        "card_key": new_key(),
        "card_notice": card_notice,
        "card_error": card_error,
        "trail": await card_updates.audit_trail(tenant["id"], membership["id"]),
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
    tenant: dict[str, Any], viewer: CustomerViewer, membership_id: str
) -> dict[str, Any]:
    _require_memberships(tenant)
    wanted = record_id(membership_id)
    if viewer.customer is None or wanted is None:
        raise NotFoundException()
    membership = await db.membership_for_customer(tenant, viewer.customer["id"], wanted)
    if membership is None:
        raise NotFoundException()
    return membership


@post("/memberships/{membership_id:str}/card")
async def update_card(
    request: Request, tenant: TenantDep, viewer: CustomerDep, membership_id: FromPath[str]
) -> Response:
    """Update payment card: off to the gateway's hosted card page (no card number here)."""
    membership = await _visible_membership(tenant, viewer, membership_id)
    label = viewer.memberships_label[:-1].lower()
    if membership["status"] not in card_updates.BILLING_STATUSES:
        error = f"This {label} is {membership['status']}, so it has no card to bill."
        return await _visits_page(
            request, tenant, viewer, membership, card_error=error, status_code=422
        )
    if not tenant["card_payments"]:
        error = "Cards can't be changed online right now. " + call_us(tenant)
        return await _visits_page(
            request, tenant, viewer, membership, card_error=error, status_code=422
        )
    key = (await form_data(request)).get("key", "")
    update = (
        await card_updates.begin(
            tenant["id"],
            viewer.customer["id"],
            membership["id"],
            viewer.session.email,
            key,
            tenant["payment_account_id"],
        )
        if KEY.match(key)
        else None
    )
    if update is None:
        error = "This form could not be read. Please try again."
        return await _visits_page(
            request, tenant, viewer, membership, card_error=error, status_code=422
        )
    back = f"/memberships/{membership['id']}"
    if update["status"] != "pending":  # a repeated submit of a finished update
        return see_other(request, f"{back}?card={update['id']}")
    if update["payment_account_id"] != tenant["payment_account_id"]:
        # A form sent again after the office changed the payment account: never open a
        # card page on the unlinked one (the page shown again carries a fresh form).
        error = (
            "The business changed its payment account meanwhile. "
            "Nothing was changed; please try again."
        )
        return await _visits_page(
            request, tenant, viewer, membership, card_error=error, status_code=422
        )
    settings = request.app.state.settings
    try:
        gateway = gateway_for(settings, update["payment_account_id"])
        checkout = await gateway.create_checkout(
            mode="setup",
            merchant_reference=f"card_{update['id']}",
            amount_cents=0,
            currency=tenant["currency"],
            description=f"Card on file for {membership['type_name']}",
            return_url=portal_url(settings, tenant["host"], f"{back}/card/{update['id']}"),
            callback_url=portal_url(settings, tenant["host"], CARD_CALLBACK_PATH),
        )
    except (GatewayError, PaymentsUnavailable) as exc:
        log.warning("card update %s: no checkout: %s", update["id"], exc)
        error = "We couldn't open the secure card page. Nothing was changed; please try again."
        return await _visits_page(
            request, tenant, viewer, membership, card_error=error, status_code=503
        )
    await card_updates.set_gateway_ref(update["id"], checkout.ref)
    return see_other(request, checkout.url)


@get("/memberships/{membership_id:str}/card/{update_id:str}")
async def card_return(
    request: Request,
    tenant: TenantDep,
    viewer: CustomerDep,
    membership_id: FromPath[str],
    update_id: FromPath[str],
) -> Response:
    """Back from the card page: settle with the gateway if its callback has not come yet."""
    membership = await _visible_membership(tenant, viewer, membership_id)
    wanted = record_id(update_id)
    update = await card_updates.get(tenant["id"], wanted, viewer.customer["id"]) if wanted else None
    if update is None or update["membership"] != membership["id"]:
        raise NotFoundException()
    if update["status"] == "pending" and update["gateway_ref"]:
        try:
            # The account the update started on, even if the office has unlinked it since.
            gateway = gateway_for(request.app.state.settings, update["payment_account_id"])
            checkout = await gateway.get_checkout(update["gateway_ref"])
            if checkout is not None and checkout.is_final:
                await card_updates.settle(tenant["id"], update["id"], checkout, gateway.account_id)
        except (GatewayError, PaymentsUnavailable) as exc:
            log.warning("card update %s: status unknown: %s", update["id"], exc)
    return see_other(request, f"/memberships/{membership['id']}?card={update['id']}")


@post(CARD_CALLBACK_PATH, exclude_from_csrf=True, include_in_schema=False, status_code=200)
async def card_callback(request: Request, tenant: TenantDep) -> Response:
    """The gateway's signed report of a card-setup page (server to server)."""
    body = await request.body()
    try:
        # Signed by one of the business's accounts (linked now or before); settle checks
        # it is the account the card update started on.
        accounts = await payment_accounts.accounts_of(tenant)
        event = verify_callback(request.app.state.settings, accounts, request.headers, body[:65536])
    except PaymentsUnavailable:
        return Response({"error": "no payment account"}, status_code=404)
    except BadCallback as exc:
        log.warning("refused a card callback: %s", exc)
        return Response({"error": "bad signature"}, status_code=403)
    match = CARD_REFERENCE.match(event.checkout.merchant_reference)
    if event.checkout.mode != "setup" or match is None:
        return Response({"error": "unknown checkout"}, status_code=404)
    if not event.checkout.is_final:
        return Response({"status": "pending"}, status_code=200)
    status = await card_updates.settle(
        tenant["id"], int(match.group(1)), event.checkout, event.account_id
    )
    code = {"unknown": 404, "mismatch": 409}.get(status, 200)
    return Response({"status": status}, status_code=code)


ROUTES = [memberships, membership_visits, update_card, card_return]
# Outside the customer-area guard: a card saved must be recorded even if the portal closes.
CALLBACK_ROUTES = [card_callback]

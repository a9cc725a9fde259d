"""Changing the card on file of a membership (contract), the same way as paying an
invoice: handler -> this service -> the gateway (`registry.gateway_for`), with the
gateway's callback in `callbacks.py`.

A `CardUpdate` row is written (pending, with the form's idempotency key) before the
gateway is asked for a "setup" checkout. Its outcome is applied once, by a
conditional update from pending, whether the gateway's callback or the customer's
return comes first. The portal stores only brand, last four digits and the
gateway's token.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from portal.config import Settings
from portal.db import card_updates as db
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.db.tables import AuditEvent, CardUpdate, Membership
from portal.mail.links import portal_url
from portal.payments.gateway import Checkout, GatewayError, PaymentsUnavailable
from portal.payments.registry import gateway_for
from portal.payments.service import call_us

log = logging.getLogger("portal.payments")

# A card can be changed on memberships that still bill: active ones, and suspended
# ones (often suspended because the old card failed).
BILLING_STATUSES = ("active", "suspended")
CALLBACK_PATH = "/memberships/card-callback"
REFERENCE = re.compile(r"^card_(\d{1,10})$")
KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class CardStart:
    """What asking to change a card led to: the card page to send the browser to, or
    why not (shown on the membership's page with `status_code`; nothing changed)."""

    url: str = ""
    error: str = ""
    status_code: int = 200


async def start(
    settings: Settings,
    tenant: TenantRow,
    customer_id: int,
    account_email: str,
    membership: dict[str, Any],
    label: str,
    key: str,
) -> CardStart:
    """Start (or find again, for a repeated submit) the card update of `membership`
    (`label`: "membership" or "contract") and open the gateway's setup page for it."""
    if membership["status"] not in BILLING_STATUSES:
        error = f"This {label} is {membership['status']}, so it has no card to bill."
        return CardStart(error=error, status_code=422)
    if not tenant["card_payments"]:
        error = "Cards can't be changed online right now. " + call_us(tenant)
        return CardStart(error=error, status_code=422)
    update = (
        await db.begin(
            tenant["id"],
            customer_id,
            membership["id"],
            account_email,
            key,
            tenant["payment_account_id"],
        )
        if KEY.match(key)
        else None
    )
    if update is None:
        return CardStart(error="This form could not be read. Please try again.", status_code=422)
    back = f"/memberships/{membership['id']}"
    if update["status"] != "pending":  # a repeated submit of a finished update
        return CardStart(url=f"{back}?card={update['id']}")
    if update["payment_account_id"] != tenant["payment_account_id"]:
        # A form sent again after the office changed the payment account: never open a
        # card page on the unlinked one (the page shown again carries a fresh form).
        error = (
            "The business changed its payment account meanwhile. "
            "Nothing was changed; please try again."
        )
        return CardStart(error=error, status_code=422)
    try:
        gateway = gateway_for(settings, update["payment_account_id"])
        checkout = await gateway.create_checkout(
            mode="setup",
            merchant_reference=f"card_{update['id']}",
            amount_cents=0,
            currency=tenant["currency"],
            description=f"Card on file for {membership['type_name']}",
            return_url=portal_url(settings, tenant, f"{back}/card/{update['id']}"),
            callback_url=portal_url(settings, tenant, CALLBACK_PATH),
        )
    except (GatewayError, PaymentsUnavailable) as exc:
        log.warning("card update %s: no checkout: %s", update["id"], exc)
        error = "We couldn't open the secure card page. Nothing was changed; please try again."
        return CardStart(error=error, status_code=503)
    await db.set_gateway_ref(update["id"], checkout.ref)
    return CardStart(url=checkout.url)


async def refresh(settings: Settings, tenant: TenantRow, update: dict[str, Any]) -> None:
    """The customer is back from the card page: settle the update with the gateway if
    its callback has not come yet (a gateway out of reach leaves it pending)."""
    if update["status"] != "pending" or not update["gateway_ref"]:
        return
    try:
        # The account the update started on, even if the office has unlinked it since.
        gateway = gateway_for(settings, update["payment_account_id"])
        checkout = await gateway.get_checkout(update["gateway_ref"])
        if checkout is not None and checkout.is_final:
            await settle(tenant["id"], update["id"], checkout, gateway.account_id)
    except (GatewayError, PaymentsUnavailable) as exc:
        log.warning("card update %s: status unknown: %s", update["id"], exc)


async def settle_reported(tenant_id: int, checkout: Checkout, account_id: str) -> str | None:
    """Apply a verified callback's checkout to the card update its reference names:
    the update's status, or None when the checkout is no card update's."""
    match = REFERENCE.match(checkout.merchant_reference)
    if checkout.mode != "setup" or match is None:
        return None
    if not checkout.is_final:
        return "pending"
    return await settle(tenant_id, int(match.group(1)), checkout, account_id)


async def settle(tenant_id: int, update_id: int, checkout: Checkout, account_id: str) -> str:
    """Apply a final checkout of payment account `account_id` to its card update once:
    returns the update's status ("mismatch" for another account's or checkout's)."""
    async with transaction():
        row = await db.get(tenant_id, update_id)
        if row is None:
            return "unknown"
        if (
            checkout.ref != row["gateway_ref"]
            or checkout.mode != "setup"
            or account_id != row["payment_account_id"]
        ):
            return "mismatch"
        if row["status"] != "pending":
            result: str = row["status"]
            return result
        moment = datetime.now(UTC)
        card = checkout.card if checkout.succeeded else None
        status = "succeeded" if card is not None else "failed"
        claimed = (
            await CardUpdate.update(
                {
                    CardUpdate.status: status,
                    CardUpdate.card_brand: card.brand if card else "",
                    CardUpdate.card_last4: card.last4 if card else "",
                    CardUpdate.failure_reason: ""
                    if card
                    else (checkout.failure_reason or checkout.status)[:200],
                    CardUpdate.completed_at: moment,
                }
            )
            .where((CardUpdate.id == update_id) & (CardUpdate.status == "pending"))
            .returning(CardUpdate.id)
            .run()
        )
        if not claimed or card is None:
            return status
        old = (
            await Membership.select(Membership.card_brand, Membership.card_last4)
            .where(Membership.id == row["membership"])
            .first()
            .run()
        )
        await (
            Membership.update(
                {
                    Membership.card_brand: card.brand,
                    Membership.card_last4: card.last4,
                    Membership.card_token: card.token,
                }
            )
            .where((Membership.id == row["membership"]) & (Membership.tenant == tenant_id))
            .run()
        )
        before = (
            f"{old['card_brand']} ending {old['card_last4']}"
            if old and old["card_last4"]
            else "no card"
        )
        await AuditEvent.insert(
            AuditEvent(
                tenant=tenant_id,
                membership=row["membership"],
                actor=row["account_email"],
                action="card_updated",
                detail=f"Card on file changed from {before} to {card.brand} ending {card.last4} in the customer portal",
                reference=checkout.ref,
                created_at=moment,
            )
        ).run()
    return status

"""Changing the card on file of a membership (contract) through the payment gateway.

A `CardUpdate` row is written (pending, with the form's idempotency key) before the
gateway is asked for a "setup" checkout. Its outcome is applied once, by a
conditional update from pending, whether the gateway's callback or the customer's
return comes first. The portal stores only brand, last four digits and the
gateway's token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db import events
from portal.db.engine import transaction
from portal.db.tables import AuditEvent, CardUpdate, Membership
from portal.payments.gateway import Checkout

# A card can be changed on memberships that still bill: active ones, and suspended
# ones (often suspended because the old card failed).
BILLING_STATUSES = ("active", "suspended")


async def begin(
    tenant_id: int,
    customer_id: int,
    membership_id: int,
    account_email: str,
    key: str,
    payment_account_id: str,
) -> dict[str, Any] | None:
    """The card update for this form submission (a repeated submission gets the same
    row), or None when the key belongs to something else. It starts on the business's
    `payment_account_id` and is completed on that account."""
    await (
        CardUpdate.insert(
            CardUpdate(
                tenant=tenant_id,
                customer=customer_id,
                membership=membership_id,
                account_email=account_email,
                idempotency_key=key,
                payment_account_id=payment_account_id,
            )
        )
        .on_conflict(target=(CardUpdate.tenant, CardUpdate.idempotency_key), action="DO NOTHING")
        .run()
    )
    row = (
        await CardUpdate.select()
        .where((CardUpdate.tenant == tenant_id) & (CardUpdate.idempotency_key == key))
        .first()
        .run()
    )
    if row is None or row["customer"] != customer_id or row["membership"] != membership_id:
        return None
    return row


async def set_gateway_ref(update_id: int, ref: str) -> None:
    await CardUpdate.update({CardUpdate.gateway_ref: ref}).where(CardUpdate.id == update_id).run()


async def get(
    tenant_id: int, update_id: int, customer_id: int | None = None
) -> dict[str, Any] | None:
    """A card update of this business (and of this customer, when given)."""
    where = (CardUpdate.tenant == tenant_id) & (CardUpdate.id == update_id)
    if customer_id is not None:
        where = where & (CardUpdate.customer == customer_id)
    return await CardUpdate.select().where(where).first().run()


async def pending_on_account(tenant_id: int, account_id: str) -> list[dict[str, Any]]:
    """The business's card updates still waiting for the gateway, started on this account."""
    return (
        await CardUpdate.select()
        .where(
            (CardUpdate.tenant == tenant_id)
            & (CardUpdate.payment_account_id == account_id)
            & (CardUpdate.status == "pending")
        )
        .order_by(CardUpdate.id)
        .run()
    )


async def fail(tenant_id: int, update_id: int, reason: str) -> bool:
    """Give up a pending card update (its card page was closed first); nothing changes
    on the membership. False if it had ended already."""
    done = (
        await CardUpdate.update(
            {
                CardUpdate.status: "failed",
                CardUpdate.failure_reason: reason[:200],
                CardUpdate.completed_at: datetime.now(UTC),
            }
        )
        .where(
            (CardUpdate.tenant == tenant_id)
            & (CardUpdate.id == update_id)
            & (CardUpdate.status == "pending")
        )
        .returning(CardUpdate.id)
        .run()
    )
    return bool(done)


async def settle(tenant_id: int, update_id: int, checkout: Checkout, account_id: str) -> str:
    """Apply a final checkout of payment account `account_id` to its card update once:
    returns the update's status ("mismatch" for another account's or checkout's)."""
    async with transaction():
        row = await get(tenant_id, update_id)
        if row is None:
            return "unknown"
        if (
            checkout.ref != row["gateway_ref"]
            or checkout.mode != "setup"
            or account_id != row["payment_account_id"]
        ):
            return "mismatch"
        if row["status"] != "pending":
            return row["status"]
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
        await events.emit(
            tenant_id,
            "card.updated",
            {"membership_id": row["membership"], "brand": card.brand, "last4": card.last4},
        )
    return status


async def audit_trail(tenant_id: int, membership_id: int) -> list[dict[str, Any]]:
    """A membership's audit trail, newest first."""
    return (
        await AuditEvent.select()
        .where((AuditEvent.tenant == tenant_id) & (AuditEvent.membership == membership_id))
        .order_by(AuditEvent.created_at, ascending=False)
        .run()
    )

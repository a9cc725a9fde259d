"""Settling a payment: applying the gateway's final word to the invoices, once.

Success: balances go down (conditionally: `balance_cents >= amount`, and the database
checks `balance_cents >= 0` as well), an audit event per invoice and a receipt email
are written in one transaction; settling is a conditional pending -> final transition,
so a retried, replayed or late callback, or a callback racing the customer's return,
settles a payment once. A success that arrives after the payment was called failed is
recorded late (or refunded) with an office alert. The records themselves are
`db/payments.py`.
"""

from __future__ import annotations

from typing import Any

from portal import logs
from portal.config import Settings
from portal.db import events
from portal.db import payments as db
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.db.tables import Invoice, Payment
from portal.formatting import format_datetime, money
from portal.mail.alerts import raise_alert
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email
from portal.payments.gateway import Checkout, is_test_mode


async def settle_payment(
    settings: Settings,
    tenant: TenantRow,
    payment_id: int,
    checkout: Checkout,
    *,
    late_reason: str | None = None,
) -> str:
    """Apply a checkout's final outcome to a pending payment, once.

    Success: balances go down (conditionally), an audit event per invoice and a receipt
    email are written in the same transaction. Returns "succeeded", "failed" or
    "unchanged" (already settled). Raises BalanceChanged (nothing applied) when a
    balance no longer covers its allocation.

    `late_reason`: the payment was already marked failed for this reason when its
    success arrived. It is recorded all the same (failed -> succeeded, once), its audit
    events say so, and the office is alerted in the same transaction.
    """
    if not checkout.succeeded:
        reason = checkout.failure_reason or "The payment did not go through."
        done = await db.fail_payment(tenant["id"], payment_id, reason, checkout.ref)
        if done:
            logs.event(
                "payment.failed",
                "payment failed",
                tenant=tenant["id"],
                payment=payment_id,
                actor="gateway",
            )
        return "failed" if done else "unchanged"
    moment = db.now()
    card = checkout.card
    late = late_reason is not None
    claimable = (
        (Payment.status == "failed") & Payment.refunded_at.is_null()
        if late
        else (Payment.status == "pending")
    )
    async with transaction():
        claimed = (
            await Payment.update(
                {
                    Payment.status: "succeeded",
                    Payment.gateway_ref: checkout.ref,
                    Payment.card_brand: card.brand if card else "",
                    Payment.card_last4: card.last4 if card else "",
                    Payment.failure_reason: "",
                    Payment.completed_at: moment,
                }
            )
            .where((Payment.tenant == tenant["id"]) & (Payment.id == payment_id) & claimable)
            .returning(
                Payment.account_email,
                Payment.amount_cents,
                Payment.kind,
                Payment.customer,
                Payment.payment_account_id,
            )
            .run()
        )
        if not claimed:
            return "unchanged"
        paid = claimed[0]
        lines = []
        for alloc in await db.allocations(payment_id):
            updated = (
                await Invoice.update(
                    {Invoice.balance_cents: Invoice.balance_cents - alloc["amount_cents"]}
                )
                .where(
                    (Invoice.tenant == tenant["id"])
                    & (Invoice.id == alloc["invoice"])
                    & (Invoice.balance_cents >= alloc["amount_cents"])
                )
                .returning(Invoice.balance_cents, Invoice.summary)
                .run()
            )
            if not updated:
                raise db.BalanceChanged(alloc["number"])  # rolls the whole payment back
            lines.append({**alloc, **updated[0]})
        card_text = f"{card.brand} ending {card.last4}" if card else "card"
        currency = tenant["currency"]
        recorded = f"Paid online in the customer portal ({card_text})"
        if late:
            recorded += f", recorded late: it had been reported as failed ({late_reason})"
        await db.record_on_invoices(
            tenant["id"],
            actor=paid["account_email"],
            action="payment",
            reference=checkout.ref,
            at=moment,
            lines=[
                db.TrailLine(
                    line["job_id"],
                    line["invoice"],
                    line["amount_cents"],
                    f"{recorded}; {line['number']} balance now "
                    f"{money(line['balance_cents'], currency)}",
                )
                for line in lines
            ],
        )
        if paid["account_email"]:
            await queue_email(
                settings,
                tenant,
                paid["account_email"],
                "receipt",
                {
                    "name": await db.customer_name(tenant["id"], paid["customer"]),
                    "amount": money(paid["amount_cents"], currency),
                    "paid_at": format_datetime(moment, tenant["time_zone"]),
                    "card": card_text,
                    "reference": checkout.ref,
                    "test_mode": is_test_mode(paid["payment_account_id"]),
                    "lines": [
                        {
                            "number": line["number"],
                            "summary": line["summary"],
                            "amount": money(line["amount_cents"], currency),
                            "balance": money(line["balance_cents"], currency),
                        }
                        for line in lines
                    ],
                    "link": portal_url(settings, tenant, f"/payments/{payment_id}"),
                },
            )
        await events.emit(
            tenant["id"],
            "payment.succeeded",
            {
                "payment_id": payment_id,
                "amount_cents": paid["amount_cents"],
                "invoices": [
                    {"id": line["invoice"], "amount_cents": line["amount_cents"]} for line in lines
                ],
            },
        )
        if late:
            amount = money(paid["amount_cents"], currency)
            balances = "; ".join(
                f"{line['number']} balance now {money(line['balance_cents'], currency)}"
                for line in lines
            )
            await raise_alert(
                settings,
                tenant,
                kind="late_payment",
                title=f"Late card payment of {amount} recorded ({_numbers(lines)})",
                message=(
                    f"A card payment of {amount} by {paid['account_email'] or 'a customer'} "
                    f"({card_text}, reference {checkout.ref}) went through after the portal "
                    f"had reported it as failed ({late_reason}). It is now recorded and "
                    f"applied: {balances}. The customer was emailed a receipt."
                ),
                reference=checkout.ref,
            )
    logs.event(
        "payment.succeeded",
        "payment succeeded" + (" late" if late else ""),
        tenant=tenant["id"],
        payment=payment_id,
        amount_cents=paid["amount_cents"],
        actor="gateway",
    )
    return "succeeded"


async def record_late_refund(
    settings: Settings,
    tenant: TenantRow,
    payment_id: int,
    checkout: Checkout,
    why: str,
) -> bool:
    """A payment already marked failed went through after all, but could not be applied
    (`why`, e.g. "INV-7 had been paid in the meantime"), and the charge was refunded in
    full at the gateway: record the refund on the payment, in the job's audit trail and
    as an office alert (once; False if it was recorded already)."""
    moment = db.now()
    currency = tenant["currency"]
    card = checkout.card
    card_text = f"{card.brand} ending {card.last4}" if card else "card"
    reason = (
        f"It went through after it was reported as failed, but {why}, so it was refunded in full."
    )
    async with transaction():
        claimed = (
            await Payment.update(
                {
                    Payment.failure_reason: reason[:200],
                    Payment.refunded_at: moment,
                    Payment.gateway_ref: checkout.ref,
                }
            )
            .where(
                (Payment.tenant == tenant["id"])
                & (Payment.id == payment_id)
                & (Payment.status == "failed")
                & Payment.refunded_at.is_null()
            )
            .returning(Payment.account_email, Payment.amount_cents)
            .run()
        )
        if not claimed:
            return False
        payment = claimed[0]
        lines = await db.allocations(payment_id)
        detail = (
            f"A card payment in the customer portal ({card_text}) went through "
            f"after it was reported as failed; {why}, so it was refunded in full"
        )
        await db.record_on_invoices(
            tenant["id"],
            actor=payment["account_email"],
            action="refund",
            reference=checkout.ref,
            at=moment,
            lines=[
                db.TrailLine(line["job_id"], line["invoice"], line["amount_cents"], detail)
                for line in lines
            ],
        )
        amount = money(payment["amount_cents"], currency)
        await raise_alert(
            settings,
            tenant,
            kind="late_payment_refunded",
            title=f"Late card payment of {amount} refunded ({_numbers(lines)})",
            message=(
                f"A card payment of {amount} by {payment['account_email'] or 'a customer'} "
                f"({card_text}, reference {checkout.ref}) went through after the portal had "
                f"reported it as failed, but {why}, so the charge was refunded in full and no "
                "balance changed. The customer may see both the charge and the refund on "
                "their card statement."
            ),
            reference=checkout.ref,
        )
    logs.event(
        "payment.refunded",
        "late card payment refunded in full",
        tenant=tenant["id"],
        payment=payment_id,
        amount_cents=payment["amount_cents"],
        actor="gateway",
    )
    return True


def _numbers(lines: list[dict[str, Any]]) -> str:
    return ", ".join(line["number"] for line in lines)

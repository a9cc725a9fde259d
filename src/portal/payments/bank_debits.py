"""US bank debits (ACH, Stripe's `us_bank_account`): the customer finishes Stripe's page,
and the debit then takes days to settle or fail. Meanwhile the payment stays pending,
holding its invoices, and is shown as "Processing" to the customer and the office
(`payment.processing_at`). A debit that settles is settled like a card payment; one that
fails fails the payment: the balance is due again and the customer is emailed."""

from __future__ import annotations

from datetime import UTC, datetime

from portal import logs
from portal.config import Settings
from portal.db import events
from portal.db import payments as payments_db
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.db.tables import Payment
from portal.formatting import money
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email
from portal.mail.worker import wake
from portal.payments.gateway import Checkout


async def mark_processing(tenant: TenantRow, payment_id: int, checkout: Checkout) -> str:
    """Record that a pending payment's bank debit was submitted (once)."""
    card = checkout.card
    await (
        Payment.update(
            {
                Payment.processing_at: datetime.now(UTC),
                Payment.card_brand: card.brand if card else "Bank account",
                Payment.card_last4: card.last4 if card else "",
                Payment.gateway_ref: checkout.ref,
            }
        )
        .where(
            (Payment.tenant == tenant["id"])
            & (Payment.id == payment_id)
            & (Payment.status == "pending")
            & Payment.processing_at.is_null()
        )
        .run()
    )
    return "processing"


async def fail_processing(
    settings: Settings, tenant: TenantRow, payment_id: int, checkout: Checkout
) -> bool:
    """A processing bank debit failed (days later): the payment fails, so its invoices'
    balances are due again (they were only held), and the customer is emailed, in one
    transaction. False if the payment was not a processing bank debit (any more)."""
    reason = checkout.failure_reason or "The bank debit did not go through."
    moment = datetime.now(UTC)
    async with transaction():
        claimed = (
            await Payment.update(
                {
                    Payment.status: "failed",
                    Payment.failure_reason: reason[:200],
                    Payment.completed_at: moment,
                }
            )
            .where(
                (Payment.tenant == tenant["id"])
                & (Payment.id == payment_id)
                & (Payment.status == "pending")
                & Payment.processing_at.is_not_null()
            )
            .returning(Payment.account_email, Payment.amount_cents, Payment.card_last4)
            .run()
        )
        if not claimed:
            return False
        paid = claimed[0]
        await events.emit(
            tenant["id"],
            "payment.failed",
            {"payment_id": payment_id, "amount_cents": paid["amount_cents"]},
        )
        found = await payments_db.payment(tenant["id"], payment_id)
        numbers = [a["number"] for a in found["allocations"]] if found else []
        if paid["account_email"]:
            await queue_email(
                settings,
                tenant,
                paid["account_email"],
                "bank_debit_failed",
                {
                    "amount": money(paid["amount_cents"], tenant["currency"]),
                    "last4": paid["card_last4"],
                    "reason": reason,
                    "numbers": ", ".join(numbers),
                    "link": portal_url(settings, tenant, "/invoices"),
                },
            )
    logs.event(
        "payment.failed",
        "bank debit failed",
        tenant=tenant["id"],
        payment=payment_id,
        amount_cents=paid["amount_cents"],
        actor="gateway",
    )
    wake()
    return True

"""US bank debits (ACH, Stripe's `us_bank_account`): the customer finishes Stripe's page,
and the debit then takes days to settle or fail. Meanwhile the payment stays pending,
holding its invoices, and is shown as "Processing" to the customer and the office
(`payment.processing_at`). A debit that settles is settled like a card payment; one that
fails fails the payment: the balance is due again and the customer is emailed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db.tables import Payment
from portal.payments.gateway import Checkout


async def mark_processing(tenant: dict[str, Any], payment_id: int, checkout: Checkout) -> str:
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

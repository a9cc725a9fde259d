"""Refunds (full or partial, with a reason) and disputes, for the sandbox and Stripe.

An administrator refunds from the office invoice page: the refund is recorded pending,
the gateway is asked (the refund's own id is the idempotency key, so a retry never
refunds twice), and only then are the allocations reversed (portal.db.refunds). Refunds
made in the Stripe dashboard arrive by webhook and are reconciled the same way; a
dispute (`charge.dispute.created`) becomes an office alert.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from portal.config import Settings
from portal.db.engine import transaction
from portal.db.payments import payment as payment_row
from portal.db.rows import TenantRow
from portal.formatting import money
from portal.forms import Checked, one_line
from portal.mail import alerts as office_alerts
from portal.mail.worker import wake
from portal.payments import refund_records as db
from portal.payments.gateway import GatewayError, PaymentsUnavailable
from portal.payments.registry import gateway_for
from portal.payments.service import parse_cents

log = logging.getLogger("portal.payments.refunds")

PORTAL_REFUND = re.compile(r"^refund_(\d{1,12})$")
PAYMENT_REF = re.compile(r"^pay_(\d{1,12})$")
REFUND_EVENTS = (
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
)
MAX_REASON = 200


@dataclass
class RefundOutcome:
    """What the office sees after asking for a refund."""

    done: bool = False
    message: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    not_found: bool = False


@dataclass(frozen=True)
class RefundForm:
    """A checked refund form: how much (cents) and why."""

    amount_cents: int
    reason: str


def clean_reason(value: str) -> tuple[str, str | None]:
    """Why the payment is refunded (the customer reads it): one line, cut at `MAX_REASON`."""
    reason = one_line(value)[:MAX_REASON]
    if not reason:
        return reason, "Say why you are refunding (the customer sees it in their email)."
    return reason, None


def clean_amount(value: str, left: int, currency: str) -> tuple[int | None, str | None]:
    """The amount to refund in cents: up to the `left` cents not refunded yet; empty means
    all of it."""
    amount = left if not value.strip() else parse_cents(value)
    if amount is None or not 0 < amount <= left:
        return amount, (
            f"Enter an amount from $0.01 to {money(left, currency)}, or leave it empty to refund it all."
        )
    return amount, None


def check_refund(
    amount_text: str, reason_text: str, left: int, currency: str
) -> Checked[RefundForm | None]:
    """Check the refund form (`forms.Checked`): the refund (None while there are problems),
    the problems by field. (The office's invoice page shows the form again empty.)"""
    reason, reason_problem = clean_reason(reason_text)
    amount, amount_problem = clean_amount(amount_text, left, currency)
    problems = {
        field: problem
        for field, problem in (("reason", reason_problem), ("amount", amount_problem))
        if problem
    }
    if problems or amount is None:
        return Checked(None, problems)
    return Checked(RefundForm(amount, reason))


async def refund(
    settings: Settings,
    tenant: TenantRow,
    staff_email: str,
    payment_id: int,
    amount_text: str,
    reason_text: str,
) -> RefundOutcome:
    """Refund `amount_text` (empty: all that is left) of a payment, for `reason_text`."""
    payment = await db.refundable(tenant["id"], payment_id)
    if payment is None:
        return RefundOutcome(not_found=True)
    currency = tenant["currency"]
    left = payment["left_cents"]
    if left <= 0:
        return RefundOutcome(message="This payment has been refunded in full already.")
    checked = check_refund(amount_text, reason_text, left, currency)
    if checked.clean is None:
        return RefundOutcome(errors=checked.problems)
    amount, reason = checked.clean.amount_cents, checked.clean.reason
    refund_id = await db.start(tenant["id"], payment_id, amount, reason, staff_email)
    if refund_id is None:
        return RefundOutcome(
            message="Another refund of this payment was made meanwhile. Check the amounts and try again."
        )
    try:
        gateway = gateway_for(settings, payment["payment_account_id"])
        gateway_refund_id = await gateway.refund_amount(
            payment["gateway_ref"], amount, key=f"refund_{refund_id}", reason=reason
        )
    except (GatewayError, PaymentsUnavailable) as exc:
        log.warning("refund %s of payment %s refused: %s", refund_id, payment_id, exc)
        await db.fail(tenant["id"], refund_id, str(exc) or "the payment service refused it")
        return RefundOutcome(
            message=f"The payment service did not make the refund, so nothing was given back: {exc}"
        )
    await db.apply(settings, tenant, refund_id, gateway_refund_id)
    wake()  # the customer's email
    return RefundOutcome(
        done=True,
        message=f"Refunded {money(amount, currency)}. The customer was emailed.",
    )


async def on_event(
    settings: Settings, tenant: TenantRow, gateway: Any, kind: str, object_id: str
) -> None:
    """Stripe events about refunds and disputes; other types are acknowledged, ignored."""
    if kind in REFUND_EVENTS:
        # A charge.refunded event is about the charge; the others about the refund.
        found = await gateway.retrieve(
            "charge" if kind == "charge.refunded" else "refund", object_id
        )
        intent = (found or {}).get("payment_intent")
        if intent:
            await sync_refunds(settings, tenant, gateway, intent)
    elif kind == "charge.dispute.created":
        await flag_dispute(settings, tenant, gateway, object_id)


async def _payment_of_intent(tenant: TenantRow, gateway: Any, intent: str) -> dict[str, Any] | None:
    checkout = await gateway.session_of_intent(intent)
    match = PAYMENT_REF.match(checkout.merchant_reference) if checkout else None
    if match is None:
        return None
    payment = await payment_row(tenant["id"], int(match.group(1)))
    if payment is None or payment["payment_account_id"] != gateway.account_id:
        return None
    return payment


async def sync_refunds(settings: Settings, tenant: TenantRow, gateway: Any, intent: str) -> int:
    """Record every refund Stripe has for a payment and the portal does not (made in the
    dashboard, or the portal's own whose answer was lost). Returns how many."""
    payment = await _payment_of_intent(tenant, gateway, intent)
    if payment is None:
        return 0
    recorded = 0
    for found in sorted(await gateway.refunds_of(intent), key=lambda r: r.get("created", 0)):
        if found.get("status") not in ("succeeded", "pending"):
            continue
        own = PORTAL_REFUND.match((found.get("metadata") or {}).get("portal_refund", ""))
        if own:
            recorded += await db.apply(settings, tenant, int(own.group(1)), found["id"])
            continue
        recorded += await db.record_external(
            settings,
            tenant,
            payment["id"],
            found["amount"],
            found["id"],
            "Refunded in the Stripe dashboard",
        )
    if recorded:
        wake()
    return recorded


async def flag_dispute(
    settings: Settings, tenant: TenantRow, gateway: Any, dispute_id: str
) -> None:
    """A chargeback: the office must answer it in the Stripe dashboard before its deadline."""
    dispute = await gateway.retrieve("dispute", dispute_id)
    if dispute is None:
        return
    payment = await _payment_of_intent(tenant, gateway, dispute.get("payment_intent") or "")
    full = await payment_row(tenant["id"], payment["id"]) if payment else None
    numbers = ", ".join(a["number"] for a in full["allocations"]) if full else "unknown invoices"
    amount = money(dispute.get("amount", 0), tenant["currency"])
    who = (full or {}).get("account_email") or "a customer"
    async with transaction():
        await office_alerts.raise_alert(
            settings,
            tenant,
            kind="dispute",
            title=f"Card payment of {amount} disputed ({numbers})",
            message=(
                f"{who} disputed a card payment of {amount} ({numbers}) with their bank, "
                f"reason: {str(dispute.get('reason', 'unknown')).replace('_', ' ')}. The money "
                "is held by Stripe until the dispute is decided. Answer it with evidence in the "
                f"Stripe dashboard (dispute {dispute_id}) before its deadline."
            ),
            reference=dispute_id,
        )
    wake()

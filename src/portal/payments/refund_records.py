"""Refund records (tables.PaymentRefund): money given back from a succeeded payment.

Like a payment, an office refund is written (pending) *before* the gateway is asked, so a
repeated request finds it; applying it is a conditional pending -> succeeded transition
that, in one transaction, reverses the allocations (the invoices' balances go up again,
the last invoice of the payment first), records an audit event per invoice, emails the
customer and emits `payment.refunded`. A refund made in the gateway's dashboard is
recorded the same way when its webhook arrives (`record_external`), once per gateway id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal import logs
from portal.config import Settings
from portal.db import events
from portal.db import payments as db_payments
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.db.tables import Invoice, Payment, PaymentAllocation, PaymentRefund
from portal.formatting import format_datetime, money
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email


async def refundable(tenant_id: int, payment_id: int) -> dict[str, Any] | None:
    """A succeeded payment of the business with what is left to refund (None if none)."""
    row = (
        await Payment.select()
        .where(
            (Payment.tenant == tenant_id)
            & (Payment.id == payment_id)
            & (Payment.status == "succeeded")
        )
        .first()
        .run()
    )
    if row is None:
        return None
    held = await PaymentRefund.raw(
        """SELECT COALESCE(SUM(amount_cents), 0) AS held FROM payment_refund
        WHERE tenant = {} AND payment = {} AND status = 'pending'""",
        tenant_id,
        payment_id,
    ).run()
    row["left_cents"] = row["amount_cents"] - row["refunded_cents"] - int(held[0]["held"])
    return row


async def start(
    tenant_id: int, payment_id: int, amount_cents: int, reason: str, actor: str
) -> int | None:
    """Record a pending office refund if the payment still has that much left (None if
    not: another refund took it meanwhile)."""
    async with transaction():
        found = await refundable(tenant_id, payment_id)
        if found is None or not 0 < amount_cents <= found["left_cents"]:
            return None
        rows = (
            await PaymentRefund.insert(
                PaymentRefund(
                    tenant=tenant_id,
                    payment=payment_id,
                    amount_cents=amount_cents,
                    reason=reason[:200],
                    actor=actor,
                    source="office",
                )
            )
            .returning(PaymentRefund.id)
            .run()
        )
    return int(rows[0]["id"])


async def fail(tenant_id: int, refund_id: int, reason: str) -> None:
    """The gateway refused the refund: nothing was given back."""
    await (
        PaymentRefund.update(
            {
                PaymentRefund.status: "failed",
                PaymentRefund.failure_reason: reason[:200],
                PaymentRefund.completed_at: datetime.now(UTC),
            }
        )
        .where(
            (PaymentRefund.tenant == tenant_id)
            & (PaymentRefund.id == refund_id)
            & (PaymentRefund.status == "pending")
        )
        .run()
    )
    logs.event("refund.failed", "refund refused by the gateway", tenant=tenant_id, refund=refund_id)


async def by_gateway_id(tenant_id: int, gateway_refund_id: str) -> dict[str, Any] | None:
    return (
        await PaymentRefund.select()
        .where(
            (PaymentRefund.tenant == tenant_id)
            & (PaymentRefund.gateway_refund_id == gateway_refund_id)
        )
        .first()
        .run()
    )


async def apply(
    settings: Settings,
    tenant: TenantRow,
    refund_id: int,
    gateway_refund_id: str,
) -> bool:
    """The gateway gave the money back: apply a pending refund, once (False if it was
    applied already)."""
    moment = datetime.now(UTC)
    async with transaction():
        claimed = (
            await PaymentRefund.update(
                {
                    PaymentRefund.status: "succeeded",
                    PaymentRefund.gateway_refund_id: gateway_refund_id,
                    PaymentRefund.completed_at: moment,
                }
            )
            .where(
                (PaymentRefund.tenant == tenant["id"])
                & (PaymentRefund.id == refund_id)
                & (PaymentRefund.status == "pending")
            )
            .returning(
                PaymentRefund.payment,
                PaymentRefund.amount_cents,
                PaymentRefund.reason,
                PaymentRefund.actor,
            )
            .run()
        )
        if not claimed:
            return False
        await _reverse(settings, tenant, claimed[0], gateway_refund_id, moment)
    _refunded(tenant, claimed[0], "office")
    return True


async def record_external(
    settings: Settings,
    tenant: TenantRow,
    payment_id: int,
    amount_cents: int,
    gateway_refund_id: str,
    reason: str,
) -> bool:
    """A refund made in the gateway's dashboard: recorded and applied once per gateway id
    (False if known already, or more than the payment has left)."""
    moment = datetime.now(UTC)
    async with transaction():
        if await by_gateway_id(tenant["id"], gateway_refund_id) is not None:
            return False
        found = await refundable(tenant["id"], payment_id)
        if found is None or not 0 < amount_cents <= found["left_cents"]:
            return False
        actor = "the payment provider's dashboard"
        refund: dict[str, Any] = {
            "payment": payment_id,
            "amount_cents": amount_cents,
            "reason": reason,
            "actor": actor,
        }
        await PaymentRefund.insert(
            PaymentRefund(
                tenant=tenant["id"],
                payment=payment_id,
                amount_cents=amount_cents,
                reason=reason[:200],
                actor=actor,
                status="succeeded",
                source="gateway",
                gateway_refund_id=gateway_refund_id,
                completed_at=moment,
            )
        ).run()
        await _reverse(settings, tenant, refund, gateway_refund_id, moment)
    _refunded(tenant, refund, "gateway")
    return True


def _refunded(tenant: TenantRow, refund: dict[str, Any], source: str) -> None:
    logs.event(
        "refund.succeeded",
        "refund made",
        tenant=tenant["id"],
        payment=refund["payment"],
        amount_cents=refund["amount_cents"],
        source=source,
    )


async def _reverse(
    settings: Settings,
    tenant: TenantRow,
    refund: dict[str, Any],
    gateway_refund_id: str,
    moment: datetime,
) -> None:
    """Give the refunded amount back to the invoices' balances (the last allocation
    first, never more than was paid on it), with audit events, the customer's email and
    the domain event. Runs in the caller's transaction."""
    payment_id, left = refund["payment"], refund["amount_cents"]
    payment = (
        await Payment.update({Payment.refunded_cents: Payment.refunded_cents + left})
        .where((Payment.tenant == tenant["id"]) & (Payment.id == payment_id))
        .returning(Payment.account_email, Payment.amount_cents, Payment.gateway_ref)
        .run()
    )[0]
    allocations = await PaymentAllocation.raw(
        """SELECT pa.id, pa.invoice, pa.amount_cents, pa.refunded_cents, i.number, i.job
        FROM payment_allocation pa JOIN invoice i ON i.id = pa.invoice
        WHERE pa.tenant = {} AND pa.payment = {} ORDER BY pa.id DESC""",
        tenant["id"],
        payment_id,
    ).run()
    currency = tenant["currency"]
    lines = []
    for alloc in allocations:
        take = min(left, alloc["amount_cents"] - alloc["refunded_cents"])
        if take <= 0:
            continue
        left -= take
        await (
            PaymentAllocation.update(
                {PaymentAllocation.refunded_cents: PaymentAllocation.refunded_cents + take}
            )
            .where(PaymentAllocation.id == alloc["id"])
            .run()
        )
        balance = (
            await Invoice.update({Invoice.balance_cents: Invoice.balance_cents + take})
            .where((Invoice.tenant == tenant["id"]) & (Invoice.id == alloc["invoice"]))
            .returning(Invoice.balance_cents)
            .run()
        )[0]["balance_cents"]
        lines.append({**alloc, "take": take, "balance_cents": balance})
        if left == 0:
            break
    why = f": {refund['reason']}" if refund["reason"] else ""
    await db_payments.record_on_invoices(
        tenant["id"],
        actor=refund["actor"],
        action="refund",
        reference=gateway_refund_id or payment["gateway_ref"],
        at=moment,
        lines=[
            db_payments.TrailLine(
                line["job"],
                line["invoice"],
                line["take"],
                f"Refunded {money(line['take'], currency)} of the online payment{why}; "
                f"{line['number']} balance now {money(line['balance_cents'], currency)}",
            )
            for line in lines
        ],
    )
    total = refund["amount_cents"]
    if payment["account_email"]:
        await queue_email(
            settings,
            tenant,
            payment["account_email"],
            "refund",
            {
                "amount": money(total, currency),
                "paid": money(payment["amount_cents"], currency),
                "refunded_at": format_datetime(moment, tenant["time_zone"]),
                "reason": refund["reason"],
                "reference": gateway_refund_id,
                "lines": [
                    {
                        "number": line["number"],
                        "amount": money(line["take"], currency),
                        "balance": money(line["balance_cents"], currency),
                    }
                    for line in lines
                ],
                "link": portal_url(settings, tenant, f"/payments/{payment_id}"),
            },
        )
    await events.emit(
        tenant["id"],
        "payment.refunded",
        {
            "payment_id": payment_id,
            "amount_cents": total,
            "invoices": [{"id": li["invoice"], "amount_cents": li["take"]} for li in lines],
        },
    )


async def of_payment(tenant_id: int, payment_id: int) -> list[dict[str, Any]]:
    """A payment's refunds that went through, oldest first."""
    return (
        await PaymentRefund.select(
            PaymentRefund.amount_cents,
            PaymentRefund.reason,
            PaymentRefund.completed_at,
            PaymentRefund.gateway_refund_id,
            PaymentRefund.source,
        )
        .where(
            (PaymentRefund.tenant == tenant_id)
            & (PaymentRefund.payment == payment_id)
            & (PaymentRefund.status == "succeeded")
        )
        .order_by(PaymentRefund.id)
        .run()
    )

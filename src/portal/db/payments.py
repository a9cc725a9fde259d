"""Payment records: one payment, an allocation per invoice, pending -> succeeded | failed.

Rules the money depends on:

- A payment row (with its idempotency key) is written *before* the gateway is asked,
  so a repeated request finds it instead of charging again.
- While a payment is pending, its allocations are held against the invoices' balances:
  a second payment that would take a balance below zero is refused before anyone is
  sent to a card page (rows are locked on PostgreSQL; SQLite has one writer at a time).
- Balances go down only when a payment succeeds, with a conditional UPDATE
  (`balance_cents >= amount`), and the database checks `balance_cents >= 0` as well.
- Settling is a conditional pending -> final transition: a retried, replayed or late
  callback, or a callback racing the customer's return, settles a payment once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from portal.config import Settings
from portal.db import events, fast, office_alerts
from portal.db.engine import current_engine, transaction
from portal.db.invoices import _in_list, as_date
from portal.db.tables import AuditEvent, Invoice, Payment, PaymentAllocation
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email
from portal.payments.gateway import Checkout, is_test_mode
from portal.web import format_datetime, money


def now() -> datetime:
    return datetime.now(UTC)


class BalanceChanged(Exception):
    """An invoice's balance no longer covers a payment's allocation (nothing was applied)."""

    def __init__(self, number: str) -> None:
        super().__init__(number)
        self.number = number


@dataclass
class Refusal:
    """Why a payment was not started (shown to the customer; nothing was charged)."""

    message: str


@dataclass
class KeyUsed:
    """A payment with this idempotency key exists already (a repeated request)."""


async def payment(tenant_id: int, payment_id: int) -> dict[str, Any] | None:
    """A payment of the business with the ids of the invoices it pays."""
    row = (
        await Payment.select()
        .where((Payment.tenant == tenant_id) & (Payment.id == payment_id))
        .first()
        .run()
    )
    if row is not None:
        row["allocations"] = await _allocations(payment_id)
    return row


async def payment_by_key(tenant_id: int, key: str) -> dict[str, Any] | None:
    """The payment started with this idempotency key, if any."""
    row = (
        await Payment.select()
        .where((Payment.tenant == tenant_id) & (Payment.idempotency_key == key))
        .first()
        .run()
    )
    if row is not None:
        row["allocations"] = await _allocations(row["id"])
    return row


async def _allocations(payment_id: int) -> list[dict[str, Any]]:
    return (
        await PaymentAllocation.select(
            PaymentAllocation.invoice,
            PaymentAllocation.amount_cents,
            PaymentAllocation.invoice.number.as_alias("number"),
            PaymentAllocation.invoice.job.as_alias("job_id"),
        )
        .where(PaymentAllocation.payment == payment_id)
        .order_by(PaymentAllocation.id)
        .run()
    )


async def pending_for_invoices(tenant_id: int, invoice_ids: list[int]) -> list[dict[str, Any]]:
    """Pending payments holding any of these invoices (whoever started them)."""
    if not invoice_ids:
        return []
    return await Payment.raw(
        f"""SELECT DISTINCT p.id, p.gateway_ref, p.account_email, p.idempotency_key,
            p.created_at, p.customer, p.payment_account_id, p.amount_cents
        FROM payment p JOIN payment_allocation pa ON pa.payment = p.id
        WHERE p.tenant = {{}} AND p.status = 'pending' AND pa.invoice IN ({_in_list(invoice_ids)})
        ORDER BY p.id""",
        tenant_id,
        *invoice_ids,
    ).run()


async def pending_for_customer(tenant_id: int, customer_id: int) -> list[dict[str, Any]]:
    """The customer's payments still waiting for the gateway's answer (asked on each
    Invoices and History page: one plain SQL read, see portal.db.fast)."""
    rows = await fast.fetch(
        """SELECT id, gateway_ref, account_email, created_at, payment_account_id, amount_cents
        FROM payment WHERE tenant = {} AND customer = {} AND status = 'pending' ORDER BY id""",
        tenant_id,
        customer_id,
    )
    for row in rows:
        row["created_at"] = fast.timestamp(row["created_at"])
    return rows


async def pending_on_account(tenant_id: int, account_id: str) -> list[dict[str, Any]]:
    """The business's payments still waiting for the gateway that started on this account."""
    return (
        await Payment.select(
            Payment.id,
            Payment.gateway_ref,
            Payment.account_email,
            Payment.created_at,
            Payment.payment_account_id,
            Payment.amount_cents,
        )
        .where(
            (Payment.tenant == tenant_id)
            & (Payment.payment_account_id == account_id)
            & (Payment.status == "pending")
        )
        .order_by(Payment.id)
        .run()
    )


async def start_payment(
    *,
    tenant_id: int,
    customer_id: int,
    account_email: str,
    key: str,
    kind: str,
    gateway: str,
    payment_account_id: str,
    allocations: dict[int, int],
    balances_seen: dict[int, int],
    numbers: dict[int, str],
) -> int | Refusal | KeyUsed:
    """Record a pending payment (before the gateway is asked). Returns its id, or why not.

    `allocations` maps invoice id -> cents; `balances_seen` are the balances the amounts
    were computed from. Other pending payments hold their amounts, so two payments
    racing on one invoice cannot both be started for more than its balance.
    """
    ids = sorted(allocations)
    async with transaction():
        if current_engine().engine_type == "postgres":
            # Serialize payments on the same invoices (in id order: no deadlocks).
            await Invoice.raw(
                f"SELECT id FROM invoice WHERE tenant = {{}} AND id IN ({_in_list(ids)}) "
                "ORDER BY id FOR UPDATE",
                tenant_id,
                *ids,
            ).run()
        if await payment_by_key(tenant_id, key) is not None:
            return KeyUsed()
        balances = {
            r["id"]: r["balance_cents"]
            for r in await Invoice.raw(
                f"SELECT id, balance_cents FROM invoice WHERE tenant = {{}} AND id IN ({_in_list(ids)})",
                tenant_id,
                *ids,
            ).run()
        }
        held = {
            r["invoice"]: int(r["held"])
            for r in await Invoice.raw(
                f"""SELECT pa.invoice AS invoice, SUM(pa.amount_cents) AS held
                FROM payment_allocation pa JOIN payment p ON p.id = pa.payment
                WHERE pa.tenant = {{}} AND p.status = 'pending' AND pa.invoice IN ({_in_list(ids)})
                GROUP BY pa.invoice""",
                tenant_id,
                *ids,
            ).run()
        }
        for invoice_id in ids:
            number = numbers[invoice_id]
            if balances.get(invoice_id) != balances_seen[invoice_id]:
                return Refusal(
                    f"The balance of {number} changed a moment ago. "
                    "Check the amounts below and try again."
                )
            if allocations[invoice_id] > balances[invoice_id] - held.get(invoice_id, 0):
                return Refusal(
                    f"A payment for {number} is already in progress. If you started it in "
                    "another window, finish it there; otherwise try again in a few minutes."
                )
        rows = await Payment.insert(
            Payment(
                tenant=tenant_id,
                customer=customer_id,
                account_email=account_email,
                amount_cents=sum(allocations.values()),
                kind=kind,
                status="pending",
                idempotency_key=key,
                gateway=gateway,
                payment_account_id=payment_account_id,
                source="portal",
            )
        ).run()
        payment_id = rows[0]["id"]
        await PaymentAllocation.insert(
            *[
                PaymentAllocation(
                    tenant=tenant_id,
                    payment=payment_id,
                    invoice=invoice_id,
                    amount_cents=allocations[invoice_id],
                )
                for invoice_id in ids
            ]
        ).run()
    return payment_id


async def attach_checkout(tenant_id: int, payment_id: int, ref: str) -> None:
    """Remember the gateway's checkout of a payment (its reference)."""
    await (
        Payment.update({Payment.gateway_ref: ref})
        .where(
            (Payment.tenant == tenant_id) & (Payment.id == payment_id) & (Payment.gateway_ref == "")
        )
        .run()
    )


async def fail_payment(
    tenant_id: int, payment_id: int, reason: str, ref: str = "", *, refunded: bool = False
) -> bool:
    """Mark a pending payment failed (balances untouched; `refunded`: its charge was given
    back at the gateway). False if it was already final."""
    moment = now()
    changes: dict[Any, Any] = {
        Payment.status: "failed",
        Payment.failure_reason: reason[:200],
        Payment.completed_at: moment,
    }
    if refunded:
        changes[Payment.refunded_at] = moment
    async with transaction():
        done = (
            await Payment.update(changes)
            .where(
                (Payment.tenant == tenant_id)
                & (Payment.id == payment_id)
                & (Payment.status == "pending")
            )
            .returning(Payment.id, Payment.amount_cents)
            .run()
        )
        if done:
            await events.emit(
                tenant_id,
                "payment.failed",
                {"payment_id": payment_id, "amount_cents": done[0]["amount_cents"]},
            )
    if done and ref:
        await attach_checkout(tenant_id, payment_id, ref)
    return bool(done)


async def settle_payment(
    settings: Settings,
    tenant: dict[str, Any],
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
        done = await fail_payment(tenant["id"], payment_id, reason, checkout.ref)
        return "failed" if done else "unchanged"
    moment = now()
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
        for alloc in await _allocations(payment_id):
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
                raise BalanceChanged(alloc["number"])  # rolls the whole payment back
            lines.append({**alloc, **updated[0]})
        card_text = f"{card.brand} ending {card.last4}" if card else "card"
        currency = tenant["currency"]
        recorded = f"Paid online in the customer portal ({card_text})"
        if late:
            recorded += f", recorded late: it had been reported as failed ({late_reason})"
        await AuditEvent.insert(
            *[
                AuditEvent(
                    tenant=tenant["id"],
                    job=line["job_id"],
                    invoice=line["invoice"],
                    actor=paid["account_email"],
                    action="payment",
                    detail=(
                        f"{recorded}; {line['number']} balance now "
                        f"{money(line['balance_cents'], currency)}"
                    ),
                    amount_cents=line["amount_cents"],
                    reference=checkout.ref,
                    created_at=moment,
                )
                for line in lines
            ]
        ).run()
        if paid["account_email"]:
            await queue_email(
                settings,
                tenant,
                paid["account_email"],
                "receipt",
                {
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
                    "link": portal_url(settings, tenant["host"], f"/payments/{payment_id}"),
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
            await office_alerts.raise_alert(
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
    return "succeeded"


async def record_late_refund(
    settings: Settings,
    tenant: dict[str, Any],
    payment_id: int,
    checkout: Checkout,
    why: str,
) -> bool:
    """A payment already marked failed went through after all, but could not be applied
    (`why`, e.g. "INV-7 had been paid in the meantime"), and the charge was refunded in
    full at the gateway: record the refund on the payment, in the job's audit trail and
    as an office alert (once; False if it was recorded already)."""
    moment = now()
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
        lines = await _allocations(payment_id)
        await AuditEvent.insert(
            *[
                AuditEvent(
                    tenant=tenant["id"],
                    job=line["job_id"],
                    invoice=line["invoice"],
                    actor=payment["account_email"],
                    action="refund",
                    detail=(
                        f"A card payment in the customer portal ({card_text}) went through "
                        f"after it was reported as failed; {why}, so it was refunded in full"
                    ),
                    amount_cents=line["amount_cents"],
                    reference=checkout.ref,
                    created_at=moment,
                )
                for line in lines
            ]
        ).run()
        amount = money(payment["amount_cents"], currency)
        await office_alerts.raise_alert(
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
    return True


def _numbers(lines: list[dict[str, Any]]) -> str:
    return ", ".join(line["number"] for line in lines)


async def receipt(tenant_id: int, customer_id: int, payment_id: int) -> dict[str, Any] | None:
    """A payment of this customer with what it paid on each invoice (2 statements)."""
    row = (
        await Payment.select()
        .where(
            (Payment.tenant == tenant_id)
            & (Payment.customer == customer_id)
            & (Payment.id == payment_id)
        )
        .first()
        .run()
    )
    if row is None:
        return None
    row["lines"] = await Invoice.raw(
        """SELECT i.id, i.number, i.invoice_date, i.summary, i.total_cents, i.balance_cents,
            pa.amount_cents
        FROM payment_allocation pa JOIN invoice i ON i.id = pa.invoice
        WHERE pa.tenant = {} AND pa.payment = {}
        ORDER BY i.invoice_date, i.id""",
        tenant_id,
        payment_id,
    ).run()
    for line in row["lines"]:
        line["invoice_date"] = as_date(line["invoice_date"])
    return row


def describe(invoices: list[dict[str, Any]]) -> str:
    """What a checkout is for, as the card page shows it."""
    numbers = ", ".join(i["number"] for i in invoices[:6])
    more = f" and {len(invoices) - 6} more" if len(invoices) > 6 else ""
    word = "Invoice" if len(invoices) == 1 else "Invoices"
    return f"{word} {numbers}{more}"

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

from portal.db import fast
from portal.db.engine import current_engine, transaction
from portal.db.invoices import _in_list, as_date
from portal.db.tables import AuditEvent, Customer, Invoice, Payment, PaymentAllocation


async def customer_name(tenant_id: int, customer_id: int) -> str:
    """The name on a customer's record (to greet them in a receipt), or ""."""
    row = (
        await Customer.select(Customer.name)
        .where((Customer.tenant == tenant_id) & (Customer.id == customer_id))
        .first()
        .run()
    )
    return str(row["name"]) if row else ""


def now() -> datetime:
    """The moment written to payment rows (UTC)."""
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
        row["allocations"] = await allocations(payment_id)
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
        row["allocations"] = await allocations(row["id"])
    return row


async def allocations(payment_id: int) -> list[dict[str, Any]]:
    """What a payment pays on each invoice (with the invoice's number and job)."""
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
    result: list[dict[str, Any]] = await Payment.raw(
        f"""SELECT DISTINCT p.id, p.gateway_ref, p.account_email, p.idempotency_key,
            p.created_at, p.customer, p.payment_account_id, p.amount_cents
        FROM payment p JOIN payment_allocation pa ON pa.payment = p.id
        WHERE p.tenant = {{}} AND p.status = 'pending' AND pa.invoice IN ({_in_list(invoice_ids)})
        ORDER BY p.id""",
        tenant_id,
        *invoice_ids,
    ).run()
    return result


async def pending_for_customer(tenant_id: int, customer_id: int) -> list[dict[str, Any]]:
    """The customer's card payments still waiting for the gateway's answer (asked on each
    Invoices and History page: one plain SQL read, see portal.db.fast). Bank debits on
    their way are left out: they take days, and asking the gateway on every page view
    would cost one API call per view; their end comes by webhook or the worker's paced
    reconciliation (payments.webhooks.reconcile)."""
    rows = await fast.fetch(
        """SELECT id, gateway_ref, account_email, created_at, payment_account_id, amount_cents
        FROM payment WHERE tenant = {} AND customer = {} AND status = 'pending'
        AND processing_at IS NULL ORDER BY id""",
        tenant_id,
        customer_id,
    )
    for row in rows:
        row["created_at"] = fast.timestamp(row["created_at"])
    return rows


async def pending_since_before(moment: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Card payments of every business still waiting for the gateway's answer, started
    before `moment` (oldest first, at most `limit`): for the worker to ask their gateway.
    Bank debits on their way are left out (paced by payments.webhooks.reconcile): a pile
    of them, days old, would otherwise fill every batch and be asked about every minute."""
    return (
        await Payment.select(
            Payment.id,
            Payment.tenant,
            Payment.gateway_ref,
            Payment.account_email,
            Payment.created_at,
            Payment.payment_account_id,
            Payment.amount_cents,
        )
        .where(
            (Payment.status == "pending")
            & (Payment.created_at < moment)
            & Payment.processing_at.is_null()
        )
        .order_by(Payment.id)
        .limit(limit)
        .run()
    )


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
    result: int | Refusal | KeyUsed = payment_id
    return result


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
    done = (
        await Payment.update(changes)
        .where(
            (Payment.tenant == tenant_id)
            & (Payment.id == payment_id)
            & (Payment.status == "pending")
        )
        .returning(Payment.id)
        .run()
    )
    if done and ref:
        await attach_checkout(tenant_id, payment_id, ref)
    return bool(done)


async def receipt(
    tenant_id: int, customer_id: int, payment_id: int, location_ids: list[int] | None = None
) -> dict[str, Any] | None:
    """A payment of this customer with what it paid on each invoice (2 statements). With
    `location_ids` (a grant's), only a payment whose every invoice is at one of them."""
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
            pa.amount_cents, i.location AS location_id
        FROM payment_allocation pa JOIN invoice i ON i.id = pa.invoice
        WHERE pa.tenant = {} AND pa.payment = {}
        ORDER BY i.invoice_date, i.id""",
        tenant_id,
        payment_id,
    ).run()
    if location_ids is not None and any(
        line["location_id"] not in location_ids for line in row["lines"]
    ):
        return None  # a payment that reaches beyond the grant answers like a missing one
    for line in row["lines"]:
        line["invoice_date"] = as_date(line["invoice_date"])
    return row


def describe(invoices: list[dict[str, Any]]) -> str:
    """What a checkout is for, as the card page shows it."""
    numbers = ", ".join(i["number"] for i in invoices[:6])
    more = f" and {len(invoices) - 6} more" if len(invoices) > 6 else ""
    word = "Invoice" if len(invoices) == 1 else "Invoices"
    return f"{word} {numbers}{more}"


@dataclass(frozen=True)
class TrailLine:
    """One invoice's line in the audit trail of a payment or refund."""

    job: int | None
    invoice: int
    amount_cents: int
    detail: str


async def record_on_invoices(
    tenant_id: int,
    *,
    actor: str | None,
    action: str,
    reference: str | None,
    at: datetime,
    lines: list[TrailLine],
) -> None:
    """One audit-trail row per invoice a payment or refund touched, in one statement (in
    the caller's transaction)."""
    if not lines:
        return
    await AuditEvent.insert(
        *[
            AuditEvent(
                tenant=tenant_id,
                job=line.job,
                invoice=line.invoice,
                actor=actor,
                action=action,
                detail=line.detail,
                amount_cents=line.amount_cents,
                reference=reference,
                created_at=at,
            )
            for line in lines
        ]
    ).run()

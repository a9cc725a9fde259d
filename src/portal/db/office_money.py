"""What the office sees of the money: an invoice's and a job's audit trail, and the
Payments page (filters, totals, CSV). Every read is scoped by the business and takes a
fixed number of statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from portal.db import events, fast
from portal.db.engine import transaction
from portal.db.invoices import _INVOICE_COLUMNS, _INVOICE_JOINS, _in_list, as_date
from portal.db.rows import TenantRow
from portal.db.tables import AuditEvent, Invoice, Payment

PAGE_SIZE = 50
STATUSES = ("succeeded", "processing", "pending", "failed", "refunded")
METHODS = ("card", "bank")


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return fast.timestamp(value)
    moment = cast(datetime, value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def payment_state(row: dict[str, Any]) -> str:
    """How the office names a payment's state: Paid, Processing (a bank debit on its
    way), Waiting (a card page open), Failed, Refunded or Partly refunded."""
    if row["status"] == "succeeded":
        if row["refunded_cents"] >= row["amount_cents"]:
            return "Refunded"
        return "Partly refunded" if row["refunded_cents"] else "Paid"
    if row["status"] == "pending":
        return "Processing" if row["processing_at"] else "Waiting for the customer"
    return "Refunded" if row.get("refunded_at") else "Failed"


def _trail_of_payments(payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trail entries the payment rows themselves say (started, processing, failed)."""
    entries = []
    for p in payments:
        entries.append(
            {
                "at": _utc(p["created_at"]),
                "actor": p["account_email"],
                "action": "payment started",
                "detail": f"Payment page opened ({p['gateway']})",
                "amount_cents": p["allocated_cents"],
                "reference": p["gateway_ref"],
                "invoice_id": p["invoice_id"],
            }
        )
        if p["processing_at"]:
            entries.append(
                {
                    "at": _utc(p["processing_at"]),
                    "actor": p["account_email"],
                    "action": "processing",
                    "detail": "Bank debit submitted; it takes a few business days to clear",
                    "amount_cents": p["allocated_cents"],
                    "reference": p["gateway_ref"],
                    "invoice_id": p["invoice_id"],
                }
            )
        if p["status"] == "failed":
            entries.append(
                {
                    "at": _utc(p["completed_at"]),
                    "actor": p["account_email"],
                    "action": "payment failed",
                    "detail": p["failure_reason"] or "The payment did not go through",
                    "amount_cents": p["allocated_cents"],
                    "reference": p["gateway_ref"],
                    "invoice_id": p["invoice_id"],
                }
            )
    return entries


def _audit_entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {
        "payment": "paid",
        "refund": "refunded",
        "card_updated": "card updated",
        "viewed": "viewed by the customer",
    }
    return [
        {
            "at": _utc(r["created_at"]),
            "actor": r["actor"],
            "action": names.get(r["action"], r["action"]),
            "detail": r["detail"],
            "amount_cents": r["amount_cents"],
            "reference": r["reference"],
            "invoice_id": r["invoice"],
        }
        for r in rows
    ]


def _sorted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(entries, key=lambda e: e["at"] or floor)


async def _payments_on(tenant_id: int, invoice_ids: list[int]) -> list[dict[str, Any]]:
    if not invoice_ids:
        return []
    rows: list[dict[str, Any]] = await Payment.raw(
        f"""SELECT p.id, p.status, p.amount_cents, p.refunded_cents, p.gateway, p.gateway_ref,
            p.payment_account_id, p.card_brand, p.card_last4, p.account_email, p.failure_reason,
            p.created_at, p.completed_at, p.processing_at, p.refunded_at, p.source, p.kind,
            pa.invoice AS invoice_id, pa.amount_cents AS allocated_cents,
            pa.refunded_cents AS allocation_refunded_cents
        FROM payment_allocation pa JOIN payment p ON p.id = pa.payment
        WHERE pa.tenant = {{}} AND pa.invoice IN ({_in_list(invoice_ids)})
        ORDER BY p.id""",
        tenant_id,
        *invoice_ids,
    ).run()
    return rows


async def invoice_page(tenant_id: int, invoice_id: int) -> dict[str, Any] | None:
    """An invoice of the business with its customer, payments (and their refunds) and
    audit trail, oldest first (4 statements)."""
    rows = await Invoice.raw(
        f"""SELECT {_INVOICE_COLUMNS}, i.job AS job_id, i.customer AS customer_id,
            c.name AS customer_name
        {_INVOICE_JOINS}
        JOIN customer c ON c.id = i.customer
        WHERE i.tenant = {{}} AND i.id = {{}}""",
        tenant_id,
        invoice_id,
    ).run()
    if not rows:
        return None
    invoice = rows[0]
    invoice["invoice_date"] = as_date(invoice["invoice_date"])
    invoice["payments"] = await _payments_on(tenant_id, [invoice_id])
    refunds = await Payment.raw(
        """SELECT r.payment, r.amount_cents, r.reason, r.status, r.source, r.actor,
            r.gateway_refund_id, r.failure_reason, r.created_at, r.completed_at
        FROM payment_refund r JOIN payment_allocation pa ON pa.payment = r.payment
        WHERE r.tenant = {} AND pa.invoice = {} ORDER BY r.id""",
        tenant_id,
        invoice_id,
    ).run()
    for p in invoice["payments"]:
        p["state"] = payment_state(p)
        p["refunds"] = [r for r in refunds if r["payment"] == p["id"]]
        p["left_cents"] = (
            p["amount_cents"]
            - p["refunded_cents"]
            - sum(r["amount_cents"] for r in p["refunds"] if r["status"] == "pending")
            if p["status"] == "succeeded"
            else 0
        )
    audit = (
        await AuditEvent.select()
        .where(
            (AuditEvent.tenant == tenant_id)
            & (
                (AuditEvent.invoice == invoice_id)
                | ((AuditEvent.job == invoice["job_id"]) & AuditEvent.invoice.is_null())
            )
        )
        .order_by(AuditEvent.id)
        .run()
    )
    invoiced = {
        "at": datetime.combine(invoice["invoice_date"], time(12), tzinfo=UTC)
        if invoice["invoice_date"]
        else None,
        "actor": "",
        "action": "invoiced",
        "detail": f"{invoice['number']} for {invoice['job_number']}",
        "amount_cents": invoice["total_cents"],
        "reference": "",
        "date_only": True,
    }
    invoice["trail"] = [invoiced] + _sorted(
        _audit_entries(audit) + _trail_of_payments(invoice["payments"])
    )
    return cast(dict[str, Any], invoice)


async def job_page(tenant_id: int, job_id: int) -> dict[str, Any] | None:
    """A job of the business with its invoices and their trail (4 statements)."""
    rows = await Invoice.raw(
        """SELECT j.id, j.number, j.summary, j.status, j.completed_at, j.scheduled_start,
            j.customer AS customer_id, c.name AS customer_name, l.name AS location_name,
            l.street AS location_street, l.city AS location_city, bu.name AS unit_name
        FROM job j JOIN customer c ON c.id = j.customer JOIN location l ON l.id = j.location
        JOIN business_unit bu ON bu.id = j.business_unit
        WHERE j.tenant = {} AND j.id = {}""",
        tenant_id,
        job_id,
    ).run()
    if not rows:
        return None
    job = rows[0]
    job["invoices"] = await Invoice.raw(
        """SELECT id, number, invoice_date, total_cents, balance_cents, summary, status
        FROM invoice
        WHERE tenant = {} AND job = {} ORDER BY invoice_date, id""",
        tenant_id,
        job_id,
    ).run()
    for inv in job["invoices"]:
        inv["invoice_date"] = as_date(inv["invoice_date"])
    ids = [inv["id"] for inv in job["invoices"]]
    payments = await _payments_on(tenant_id, ids)
    audit = (
        await AuditEvent.select()
        .where((AuditEvent.tenant == tenant_id) & (AuditEvent.job == job_id))
        .order_by(AuditEvent.id)
        .run()
    )
    numbers = {inv["id"]: inv["number"] for inv in job["invoices"]}
    entries = _audit_entries(audit) + _trail_of_payments(payments)
    for entry in entries:
        entry["invoice"] = numbers.get(entry["invoice_id"], "")
    job["trail"] = _sorted(entries)
    return cast(dict[str, Any], job)


@dataclass(frozen=True)
class PaymentFilters:
    """The Payments page's filters (already checked)."""

    start: date | None = None
    end: date | None = None
    status: str = ""
    method: str = ""

    def query(self) -> str:
        parts = []
        if self.start:
            parts.append(f"from={self.start.isoformat()}")
        if self.end:
            parts.append(f"to={self.end.isoformat()}")
        if self.status:
            parts.append(f"status={self.status}")
        if self.method:
            parts.append(f"method={self.method}")
        return "&".join(parts)


def _where(tenant: TenantRow, filters: PaymentFilters) -> tuple[str, list[Any]]:
    zone = ZoneInfo(tenant["time_zone"])
    clauses = ["p.tenant = {}", "p.source = 'portal'"]
    args: list[Any] = [tenant["id"]]
    if filters.start:
        clauses.append("p.created_at >= {}")
        args.append(datetime.combine(filters.start, time(0), tzinfo=zone).astimezone(UTC))
    if filters.end:
        clauses.append("p.created_at < {}")
        end = datetime.combine(filters.end + timedelta(days=1), time(0), tzinfo=zone)
        args.append(end.astimezone(UTC))
    status = {
        "succeeded": "p.status = 'succeeded' AND p.refunded_cents < p.amount_cents",
        "refunded": "(p.refunded_cents > 0 OR p.refunded_at IS NOT NULL)",
        "processing": "p.status = 'pending' AND p.processing_at IS NOT NULL",
        "pending": "p.status = 'pending' AND p.processing_at IS NULL",
        "failed": "p.status = 'failed'",
    }.get(filters.status)
    if status:
        clauses.append(status)
    if filters.method == "bank":
        clauses.append("p.card_brand = 'Bank account'")
    elif filters.method == "card":
        clauses.append("p.card_brand <> 'Bank account'")
    return " AND ".join(clauses), args


async def payments(
    tenant: TenantRow,
    filters: PaymentFilters,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The business's portal payments, newest first (keyset by id), and the totals of
    everything the filters match (3 statements)."""
    where, args = _where(tenant, filters)
    totals = (
        await Payment.raw(
            f"""SELECT COUNT(*) AS count,
                COALESCE(SUM(CASE WHEN p.status = 'succeeded' THEN p.amount_cents ELSE 0 END), 0)
                    AS received,
                COALESCE(SUM(p.refunded_cents), 0) AS refunded,
                COALESCE(SUM(CASE WHEN p.status = 'pending' THEN p.amount_cents ELSE 0 END), 0)
                    AS pending
            FROM payment p WHERE {where}""",
            *args,
        ).run()
    )[0]
    totals = {k: int(v) for k, v in totals.items()}
    totals["net"] = totals["received"] - totals["refunded"]
    page_where, page_args = where, list(args)
    if before is not None:
        page_where += " AND p.id < {}"
        page_args.append(before)
    rows = await Payment.raw(
        f"""SELECT p.id, p.status, p.amount_cents, p.refunded_cents, p.card_brand, p.card_last4,
            p.account_email, p.created_at, p.completed_at, p.processing_at, p.refunded_at,
            p.gateway, p.gateway_ref, p.payment_account_id, p.failure_reason, c.name AS customer_name,
            p.customer AS customer_id
        FROM payment p JOIN customer c ON c.id = p.customer
        WHERE {page_where} ORDER BY p.id DESC LIMIT {{}}""",
        *page_args,
        limit + 1,
    ).run()
    ids = [r["id"] for r in rows[:limit]]
    invoices = (
        await Payment.raw(
            f"""SELECT pa.payment, pa.invoice, i.number FROM payment_allocation pa
            JOIN invoice i ON i.id = pa.invoice
            WHERE pa.tenant = {{}} AND pa.payment IN ({_in_list(ids)}) ORDER BY pa.id""",
            tenant["id"],
            *ids,
        ).run()
        if ids
        else []
    )
    for row in rows:
        row["created_at"] = _utc(row["created_at"])
        row["state"] = payment_state(row)
        row["invoices"] = [i for i in invoices if i["payment"] == row["id"]]
    return rows, totals


async def pays_invoice(tenant_id: int, payment_id: int, invoice_id: int) -> bool:
    """Whether this payment of the business was allocated to this invoice of it."""
    rows = await Payment.raw(
        """SELECT 1 AS found FROM payment_allocation
        WHERE tenant = {} AND payment = {} AND invoice = {}""",
        tenant_id,
        payment_id,
        invoice_id,
    ).run()
    return bool(rows)


async def note_viewed(tenant_id: int, invoice: dict[str, Any], email: str) -> None:
    """The customer's account opened the invoice: recorded once per account in the
    invoice's audit trail (the office's "viewed by the customer"), with `invoice.viewed`.
    An invoice read by `invoices.invoice_detail` says who has viewed it already: a repeat
    view writes nothing and opens no transaction."""
    if email in invoice.get("viewed_by", ()):
        return
    async with transaction():
        seen = (
            await AuditEvent.count()
            .where(
                (AuditEvent.tenant == tenant_id)
                & (AuditEvent.invoice == invoice["id"])
                & (AuditEvent.action == "viewed")
                & (AuditEvent.actor == email)
            )
            .run()
        )
        if seen:
            return
        await AuditEvent.insert(
            AuditEvent(
                tenant=tenant_id,
                job=invoice["job_id"],
                invoice=invoice["id"],
                actor=email,
                action="viewed",
                detail="Viewed in the customer portal",
            )
        ).run()
        await events.emit(tenant_id, "invoice.viewed", {"invoice_id": invoice["id"]})

"""Office › Customers: find a customer, their contact emails and portal accounts, their
invoices, and emailing an invoice. Every function is scoped by business (tenant).

A customer's contact emails decide who may use the portal for them: an account sees
every record that lists its email, so removing an email from a record removes that
account's access to the record at once.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import asyncpg
from piccolo.columns.combination import WhereRaw
from piccolo.custom_types import Combinable

from portal.db.engine import transaction
from portal.db.tables import (
    AuditEvent,
    Customer,
    CustomerEmail,
    Invoice,
    Location,
    PortalAccount,
)

PAGE_SIZE = 25
INVOICE_PAGE_SIZE = 20
MAX_EMAILS = 10


def _like_pattern(text: str) -> str:
    """`%text%` for LIKE, with the user's own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(
    tenant_id: int, query: str = "", after: int | None = None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], int | None]:
    """Customers whose name or one of whose emails contains `query`, by name, a page at a
    time (keyset on name, id). Each comes with its emails and whether any of them has a
    portal account. Returns the page and the id to continue after (None on the last)."""
    where: Combinable = Customer.tenant == tenant_id
    query = " ".join(query.split()).lower()[:100]
    if query:
        pattern = _like_pattern(query)
        where &= WhereRaw(
            "(LOWER(name) LIKE {} ESCAPE '\\' OR LOWER(external_id) LIKE {} ESCAPE '\\' OR id IN "
            "(SELECT customer FROM customer_email WHERE tenant = {} AND email LIKE {} ESCAPE '\\'))",
            pattern,
            pattern,
            tenant_id,
            pattern,
        )
    if after is not None:
        mark = (
            await Customer.select(Customer.name)
            .where((Customer.tenant == tenant_id) & (Customer.id == after))
            .first()
            .run()
        )
        if mark is not None:
            where &= (Customer.name > mark["name"]) | (
                (Customer.name == mark["name"]) & (Customer.id > after)
            )
    rows = (
        await Customer.select(Customer.id, Customer.name, Customer.kind, Customer.external_id)
        .where(where)
        .order_by(Customer.name)
        .order_by(Customer.id)
        .limit(limit + 1)
        .run()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    await _attach_emails(tenant_id, rows)
    return rows, (rows[-1]["id"] if more and rows else None)


async def _attach_emails(tenant_id: int, customers: list[dict[str, Any]]) -> None:
    """Give each customer its emails, each with its portal account (two queries in all)."""
    ids = [c["id"] for c in customers]
    for c in customers:
        c["emails"] = []
    if not ids:
        return
    emails = (
        await CustomerEmail.select(CustomerEmail.id, CustomerEmail.customer, CustomerEmail.email)
        .where((CustomerEmail.tenant == tenant_id) & CustomerEmail.customer.is_in(ids))
        .order_by(CustomerEmail.id)
        .run()
    )
    addresses = sorted({e["email"] for e in emails})
    accounts = {}
    if addresses:
        rows = (
            await PortalAccount.select(
                PortalAccount.email, PortalAccount.confirmed_at, PortalAccount.last_sign_in_at
            )
            .where((PortalAccount.tenant == tenant_id) & PortalAccount.email.is_in(addresses))
            .run()
        )
        accounts = {a["email"]: a for a in rows}
    by_customer = {c["id"]: c for c in customers}
    for e in emails:
        e["account"] = accounts.get(e["email"])
        by_customer[e["customer"]]["emails"].append(e)
    for c in customers:
        c["registered"] = any(e["account"] and e["account"]["confirmed_at"] for e in c["emails"])


async def customer(tenant_id: int, customer_id: int) -> dict[str, Any] | None:
    """One customer of this business with emails, accounts and locations (None if not ours)."""
    row = (
        await Customer.select(
            Customer.id, Customer.name, Customer.kind, Customer.external_id, Customer.phone
        )
        .where((Customer.tenant == tenant_id) & (Customer.id == customer_id))
        .first()
        .run()
    )
    if row is None:
        return None
    await _attach_emails(tenant_id, [row])
    row["locations"] = (
        await Location.select(Location.name, Location.street, Location.city, Location.state)
        .where((Location.tenant == tenant_id) & (Location.customer == customer_id))
        .order_by(Location.id)
        .run()
    )
    return row


async def invoices(
    tenant_id: int, customer_id: int, after: int | None = None, limit: int = INVOICE_PAGE_SIZE
) -> tuple[list[dict[str, Any]], int | None]:
    """A customer's invoices, newest first, a page at a time (keyset on date, id)."""
    where = (Invoice.tenant == tenant_id) & (Invoice.customer == customer_id)
    if after is not None:
        mark = (
            await Invoice.select(Invoice.invoice_date)
            .where(
                (Invoice.tenant == tenant_id)
                & (Invoice.customer == customer_id)
                & (Invoice.id == after)
            )
            .first()
            .run()
        )
        if mark is not None:
            day = mark["invoice_date"]
            where &= (Invoice.invoice_date < day) | (
                (Invoice.invoice_date == day) & (Invoice.id < after)
            )
    rows = (
        await Invoice.select(
            Invoice.id,
            Invoice.number,
            Invoice.invoice_date,
            Invoice.due_date,
            Invoice.summary,
            Invoice.total_cents,
            Invoice.balance_cents,
            Invoice.status,
            Invoice.business_unit.name.as_alias("unit_name"),
            Invoice.job.status.as_alias("job_status"),
        )
        .where(where)
        .order_by(Invoice.invoice_date, ascending=False)
        .order_by(Invoice.id, ascending=False)
        .limit(limit + 1)
        .run()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


async def add_email(tenant_id: int, customer_id: int, email: str) -> str | None:
    """Add a contact email (already checked and lower-cased); returns a problem or None."""
    try:
        async with transaction():
            existing = (
                await CustomerEmail.select(CustomerEmail.email)
                .where(
                    (CustomerEmail.tenant == tenant_id) & (CustomerEmail.customer == customer_id)
                )
                .run()
            )
            if any(e["email"] == email for e in existing):
                return f"{email} is already on this customer's record."
            if len(existing) >= MAX_EMAILS:
                return f"A customer can have at most {MAX_EMAILS} emails. Remove one first."
            await CustomerEmail.insert(
                CustomerEmail(tenant=tenant_id, customer=customer_id, email=email)
            ).run()
    except (sqlite3.IntegrityError, asyncpg.UniqueViolationError):
        return f"{email} is already on this customer's record."
    return None


async def remove_email(tenant_id: int, customer_id: int, email_id: int) -> str | None:
    """Remove a contact email from the record; returns the email, or None if not found.

    The account with that email no longer sees this record (access follows the emails).
    """
    rows = await (
        CustomerEmail.delete()
        .where(
            (CustomerEmail.tenant == tenant_id)
            & (CustomerEmail.customer == customer_id)
            & (CustomerEmail.id == email_id)
        )
        .returning(CustomerEmail.email)
        .run()
    )
    return rows[0]["email"] if rows else None


async def invoice_for_customer(
    tenant_id: int, customer_id: int, invoice_id: int
) -> dict[str, Any] | None:
    return (
        await Invoice.select(
            Invoice.id,
            Invoice.job,
            Invoice.number,
            Invoice.due_date,
            Invoice.balance_cents,
            Invoice.total_cents,
            Invoice.status,
        )
        .where(
            (Invoice.tenant == tenant_id)
            & (Invoice.customer == customer_id)
            & (Invoice.id == invoice_id)
        )
        .first()
        .run()
    )


async def note_invoice_emailed(
    tenant_id: int, invoice: dict[str, Any], to: str, staff_email: str
) -> None:
    """Note in the invoice's audit trail that it was emailed to `to` (in the transaction
    that queues the email: `portal.mail.notifications.email_invoice`)."""
    await AuditEvent.insert(
        AuditEvent(
            tenant=tenant_id,
            job=invoice["job"],
            invoice=invoice["id"],
            actor=staff_email,
            action="emailed",
            detail=f"Invoice {invoice['number']} emailed to {to}",
            created_at=datetime.now(UTC),
        )
    ).run()

"""Privacy requests (issue 17.13): erase a customer's personal data, and gather it all for
an export. Scoped by business (tenant).

Erasing replaces the customer's name, phone and addresses, removes their contact emails,
deletes their portal accounts (their sessions and sign-in links go with them: those
foreign keys cascade) and the emails stored for them, and wipes every mention of the
name, the emails, the phone and the streets from every text column of the business's
tables. It never deletes a customer, location, job, invoice, payment or audit row: the
books stay whole. (The database would refuse such a delete anyway: every foreign key
from a job, invoice, payment, allocation, refund, membership or card update is ON DELETE
RESTRICT — tests/test_money_records.py — so erasing in place is the only way.) Nothing is
erased when the customer is another business's.
"""

from __future__ import annotations

from typing import Any

from piccolo.columns import Text, Varchar
from piccolo.table import Table

from portal.db import activity, grants
from portal.db.engine import transaction
from portal.db.tables import (
    TABLES,
    AccountRequest,
    Appointment,
    BookingRequest,
    CardUpdate,
    Customer,
    CustomerEmail,
    Invoice,
    InvoiceLine,
    Job,
    Location,
    Membership,
    OutboxEmail,
    Payment,
    PaymentAllocation,
    PortalAccount,
    ThrottleCount,
    Visit,
)

ERASED = "[erased]"
ERASED_NAME = "Erased customer"
# Shorter than this, a text is not searched for (it would match unrelated words).
MIN_NEEDLE = 4


class NotFound(Exception):
    """No such customer in this business."""


def _text_columns(table: type[Table]) -> list[str]:
    return [
        c._meta.db_column_name
        for c in table._meta.columns
        if isinstance(c, Varchar | Text) and c._meta.db_column_name != "tenant"
    ]


def _tenant_tables() -> list[type[Table]]:
    """Every table that belongs to a business (has a `tenant` column)."""
    return [t for t in TABLES if any(c._meta.name == "tenant" for c in t._meta.columns)]


async def _customer(tenant_id: int, customer_id: int) -> dict[str, Any]:
    row = (
        await Customer.select()
        .where((Customer.tenant == tenant_id) & (Customer.id == customer_id))
        .first()
        .run()
    )
    if row is None:
        raise NotFound(customer_id)
    return row


async def _emails(tenant_id: int, customer_id: int) -> list[str]:
    rows = await CustomerEmail.select(CustomerEmail.email).where(
        (CustomerEmail.tenant == tenant_id) & (CustomerEmail.customer == customer_id)
    )
    return [str(r["email"]) for r in rows]


async def erase(tenant_id: int, customer_id: int, actor: activity.Actor) -> dict[str, int]:
    """Erase one customer's personal data in one transaction (see the module's doc);
    returns counts of what went, for the office's notice. Raises `NotFound`."""
    async with transaction():
        customer = await _customer(tenant_id, customer_id)
        emails = await _emails(tenant_id, customer_id)
        # An email also on another customer's record stays with that record (and its
        # portal account, which sees that record too): only this record loses it.
        shared = {
            r["email"]
            for r in await CustomerEmail.select(CustomerEmail.email).where(
                (CustomerEmail.tenant == tenant_id)
                & (CustomerEmail.customer != customer_id)
                & CustomerEmail.email.is_in(emails or [""])
            )
        }
        own = [e for e in emails if e not in shared]
        streets = [
            str(r["street"])
            for r in await Location.select(Location.street).where(
                (Location.tenant == tenant_id) & (Location.customer == customer_id)
            )
        ]
        counts = {"accounts": 0, "emails": 0}
        if own:
            accounts = (
                await PortalAccount.delete()
                .where((PortalAccount.tenant == tenant_id) & PortalAccount.email.is_in(own))
                .returning(PortalAccount.id)
                .run()
            )  # their sessions and sign-in links cascade
            counts["accounts"] = len(accounts)
            stored = (
                await OutboxEmail.delete()
                .where((OutboxEmail.tenant == tenant_id) & OutboxEmail.to_addr.is_in(own))
                .returning(OutboxEmail.id)
                .run()
            )
            counts["emails"] = len(stored)
            await AccountRequest.delete().where(
                (AccountRequest.tenant == tenant_id) & AccountRequest.email.is_in(own)
            )
            for email in own:
                await ThrottleCount.delete().where(
                    (ThrottleCount.tenant == tenant_id) & ThrottleCount.key.like(f"%{email}%")
                )
        # Access grants (issue 16.4): those of this record, and those to the person's own
        # emails, are revoked (kept for the office's history; the text below erases them).
        counts["grants"] = await grants.revoke_for_person(
            tenant_id, customer_id, own, by=f"office: {actor.name}"
        )
        await CustomerEmail.delete().where(
            (CustomerEmail.tenant == tenant_id) & (CustomerEmail.customer == customer_id)
        )
        await Customer.update({Customer.name: ERASED_NAME, Customer.phone: ""}).where(
            (Customer.tenant == tenant_id) & (Customer.id == customer_id)
        )
        await Location.update(
            {
                Location.name: "",
                Location.street: ERASED,
                Location.city: "",
                Location.state: "",
                Location.zip: "",
            }
        ).where((Location.tenant == tenant_id) & (Location.customer == customer_id))
        mine = (BookingRequest.tenant == tenant_id) & (BookingRequest.customer == customer_id)
        await BookingRequest.update(
            {BookingRequest.account_email: "", BookingRequest.notes: ""}
        ).where(mine)
        await Payment.update({Payment.account_email: ""}).where(
            (Payment.tenant == tenant_id) & (Payment.customer == customer_id)
        )
        await CardUpdate.update({CardUpdate.account_email: ""}).where(
            (CardUpdate.tenant == tenant_id) & (CardUpdate.customer == customer_id)
        )
        # Every other mention, wherever it was written (job summaries, invoice lines,
        # audit trails, office alerts and their emails, the activity log...).
        needles = [customer["name"], customer["phone"], *own, *streets]
        needles = sorted({n for n in needles if n and len(n) >= MIN_NEEDLE}, key=len, reverse=True)
        for table in _tenant_tables():
            name = table._meta.tablename
            for column in _text_columns(table):
                for needle in needles:
                    await table.raw(
                        f"UPDATE {name} SET {column} = REPLACE({column}, {{}}, {{}}) "
                        f"WHERE tenant = {{}} AND {column} <> REPLACE({column}, {{}}, {{}})",
                        needle,
                        ERASED,
                        tenant_id,
                        needle,
                        ERASED,
                    ).run()
        await activity.record(
            tenant_id,
            actor,
            "customer.erased",
            f"Customer {customer['external_id']}",
            "Personal data",
            "Erased on request",
        )
    return counts


async def export_data(tenant_id: int, customer_id: int) -> dict[str, Any]:
    """Everything the portal holds about one customer, as plain data for a JSON export
    (no password hashes, tokens or card tokens). Raises `NotFound`."""
    customer = await _customer(tenant_id, customer_id)
    emails = await _emails(tenant_id, customer_id)
    mine = {"tenant": tenant_id, "customer": customer_id}

    def where(table: type[Table]) -> Any:
        return (table.tenant == mine["tenant"]) & (table.customer == mine["customer"])  # type: ignore[attr-defined]

    invoices = await Invoice.select().where(where(Invoice)).order_by(Invoice.id)
    invoice_ids = [i["id"] for i in invoices] or [0]
    lines = await InvoiceLine.select().where(
        (InvoiceLine.tenant == tenant_id) & InvoiceLine.invoice.is_in(invoice_ids)
    )
    payments = await Payment.select().where(where(Payment)).order_by(Payment.id)
    payment_ids = [p["id"] for p in payments] or [0]
    allocations = await PaymentAllocation.select().where(
        (PaymentAllocation.tenant == tenant_id) & PaymentAllocation.payment.is_in(payment_ids)
    )
    memberships = await Membership.select().where(where(Membership)).order_by(Membership.id)
    membership_ids = [m["id"] for m in memberships] or [0]
    visits = await Visit.select().where(
        (Visit.tenant == tenant_id) & Visit.membership.is_in(membership_ids)
    )
    accounts = await PortalAccount.select(
        PortalAccount.email,
        PortalAccount.confirmed_at,
        PortalAccount.last_sign_in_at,
        PortalAccount.created_at,
    ).where((PortalAccount.tenant == tenant_id) & PortalAccount.email.is_in(emails or [""]))
    for m in memberships:
        m.pop("card_token", None)
    return {
        "customer": {**customer, "emails": emails},
        "locations": await Location.select().where(where(Location)).order_by(Location.id),
        "portal_accounts": accounts,
        "jobs": await Job.select().where(where(Job)).order_by(Job.id),
        "invoices": [
            {**i, "lines": [line for line in lines if line["invoice"] == i["id"]]} for i in invoices
        ],
        "payments": [
            {**p, "allocations": [a for a in allocations if a["payment"] == p["id"]]}
            for p in payments
        ],
        "memberships": [
            {**m, "visits": [v for v in visits if v["membership"] == m["id"]]} for m in memberships
        ],
        "appointment_requests": await BookingRequest.select()
        .where(where(BookingRequest))
        .order_by(BookingRequest.id),
        "appointments": await Appointment.select()
        .where(where(Appointment))
        .order_by(Appointment.id),
        "card_updates": await CardUpdate.select().where(where(CardUpdate)),
        # Issue 16.4: whom the customer shared their record with, and what was shared with
        # the customer's emails (live and revoked).
        "access_grants": {
            "given": await grants.for_office(tenant_id, customer_id),
            "held": await grants.held_by_emails(tenant_id, emails),
        },
    }

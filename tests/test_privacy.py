"""Privacy requests (issue 17.13): an administrator erases a customer's personal data —
afterwards no text column of any table holds their former name, emails, phone or street,
while every invoice, payment, allocation and audit row is still there with the same
amounts — and exports one customer's data as a zip (JSON and invoice PDFs). Office staff
can do neither; nothing is erased without the confirmation. Runs on SQLite and
PostgreSQL (DATABASE_URL)."""

from __future__ import annotations

import io
import json
import zipfile

from portal.db import tables as t
from tests.support.http import post_form
from tests.support.world import snapshot

PHONE = "(555) 013-9876"


async def money_rows() -> dict[str, list]:
    """Every money record of every business, with its amounts."""
    return {
        "invoices": await t.Invoice.select(
            t.Invoice.id, t.Invoice.total_cents, t.Invoice.balance_cents
        ).order_by(t.Invoice.id),
        "payments": await t.Payment.select(
            t.Payment.id, t.Payment.amount_cents, t.Payment.status
        ).order_by(t.Payment.id),
        "allocations": await t.PaymentAllocation.select(
            t.PaymentAllocation.id, t.PaymentAllocation.amount_cents
        ).order_by(t.PaymentAllocation.id),
        "lines": await t.InvoiceLine.select(t.InvoiceLine.id, t.InvoiceLine.amount_cents).order_by(
            t.InvoiceLine.id
        ),
        "audit": await t.AuditEvent.select(t.AuditEvent.id, t.AuditEvent.amount_cents).order_by(
            t.AuditEvent.id
        ),
        "jobs": await t.Job.select(t.Job.id).order_by(t.Job.id),
    }


def mentions(tables: dict[str, list[tuple]], needles: list[str]) -> list[str]:
    """Where any needle still appears: table, column and the text around it."""
    found = []
    for table, rows in tables.items():
        for row in rows:
            for column, value in row:
                for needle in needles:
                    if needle.lower() in value.lower():
                        found.append(f"{table}.{column}: {value[:120]}")
    return found


async def test_office_staff_cannot_and_nothing_is_erased_without_the_confirmation(world):
    c = world.customer("A1")
    before = await snapshot()
    r = await post_form(
        world.a.office, f"/office/customers/{c.id}/erase", {"confirm": "yes"},
        csrf_page=f"/office/customers/{c.id}",
    )  # fmt: skip
    assert r.status_code == 403
    r = await post_form(
        world.a.admin, f"/office/customers/{c.id}/erase", {},
        csrf_page=f"/office/customers/{c.id}",
    )  # fmt: skip
    assert r.status_code == 422
    assert "Tick the box to confirm" in r.text
    assert (await world.a.office.get(f"/office/customers/{c.id}/export")).status_code == 403
    after = await snapshot()
    changed = [name for name in before if before[name] != after[name] and name != "session"]
    assert changed == []


async def test_export_is_a_zip_of_the_customers_data_and_invoice_pdfs(world):
    c = world.customer("A2")
    r = await world.a.admin.get(f"/office/customers/{c.id}/export")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    data = json.loads(archive.read("customer.json"))
    assert data["customer"]["name"] == c.name
    assert data["customer"]["emails"] == [c.email]
    assert [a["email"] for a in data["portal_accounts"]] == [c.email]
    assert "password_hash" not in json.dumps(data)
    numbers = sorted(i["number"] for i in data["invoices"])
    assert numbers == ["INV-A2-1", "INV-A2-2"]
    assert all(i["lines"] for i in data["invoices"])
    assert data["payments"] and data["memberships"][0]["visits"]
    pdfs = sorted(n for n in archive.namelist() if n.endswith(".pdf"))
    assert pdfs == ["invoices/INV-A2-1.pdf", "invoices/INV-A2-2.pdf"]
    assert all(archive.read(n).startswith(b"%PDF-") for n in pdfs)
    # Another business's customer: not found, as a missing one.
    other = world.customer("B1")
    assert (await world.a.admin.get(f"/office/customers/{other.id}/export")).status_code == 404


async def test_erasing_leaves_no_trace_of_the_person_and_every_money_record_whole(world):
    c, neighbour = world.customer("A1"), world.customer("B1")
    await t.Customer.update({t.Customer.phone: PHONE}).where(t.Customer.id == c.id)
    street = (await t.Location.select().where(t.Location.id == c.location_id).first())["street"]
    needles = [c.name, c.email, PHONE, street]
    before_tables = await snapshot()
    assert mentions(before_tables, needles), "the world should mention the customer first"
    before_money = await money_rows()
    r = await post_form(
        world.a.admin, f"/office/customers/{c.id}/erase", {"confirm": "yes"},
        csrf_page=f"/office/customers/{c.id}",
    )  # fmt: skip
    assert r.status_code == 303
    page = await world.a.admin.get(r.headers["location"].split("#")[0])
    assert "This customer&#39;s personal data is erased" in page.text
    after = await snapshot()
    assert mentions(after, needles) == []
    assert await money_rows() == before_money  # every invoice, payment and audit row, same sums
    # The portal account, its sessions and stored emails are gone; the customer is signed out.
    assert await t.PortalAccount.count().where(t.PortalAccount.email == c.email) == 0
    assert await t.OutboxEmail.count().where(t.OutboxEmail.to_addr == c.email) == 0
    assert (await c.client.get("/invoices")).status_code in (302, 303)
    # The record stays, anonymous, with its invoices; the other business is untouched.
    record = await t.Customer.select().where(t.Customer.id == c.id).first()
    assert record["name"] == "Erased customer" and record["external_id"] == "A1"
    assert await t.Invoice.count().where(t.Invoice.customer == c.id) == 2
    assert mentions(after, [neighbour.name, neighbour.email])
    assert (await neighbour.client.get("/invoices")).status_code == 200
    # The activity log says an erasure happened, without saying who was erased.
    entry = (
        await t.ActivityEvent.select().where(t.ActivityEvent.action == "customer.erased").first()
    )
    assert entry["subject"] == "Customer A1" and entry["actor"] == world.a.admin_email


async def test_no_table_that_references_a_portal_account_holds_money():
    """Deleting portal accounts (as erasing does) cascades only to the account's own sign-in
    data (sessions, links, passkeys, grants...), never to a money or audit record."""
    money = {t.Invoice, t.InvoiceLine, t.Payment, t.PaymentAllocation, t.AuditEvent, t.Job}
    referencing = {
        table
        for table in t.TABLES
        for fk in table._meta.foreign_key_columns
        if fk._foreign_key_meta.resolved_references is t.PortalAccount
    }
    assert {t.Session, t.AuthToken} <= referencing
    assert not referencing & money

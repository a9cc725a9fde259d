"""Notification templates: placeholders checked (an unknown one or an unbalanced brace is
refused, naming it) and filled in; a preview with a real customer's data; the invoice
email sent from the office carries the business's real portal sign-in link."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from portal.db import office_notifications as notes
from portal.db.tables import (
    AuditEvent,
    Customer,
    Invoice,
    NotificationTemplate,
    OutboxEmail,
    Tenant,
)
from portal.demo import ADMIN_EMAIL, DEMO_HOST
from portal.mail import notifications
from portal.mail.backends import SMTPBackend
from portal.mail.worker import deliver_due
from portal.testing import free_port
from tests.support.businesses import import_business
from tests.support.http import csrf_from

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}
INVOICE = notes.KINDS["invoice_email"]


# --- placeholders -------------------------------------------------------------------------------


def test_placeholders_are_filled_in():
    values = {"CustomerName": "Jane Doe", "InvoiceNumber": "INV-7", "AmountDue": "$12.50"}
    text = "Hi {CustomerName}, invoice {InvoiceNumber} is {AmountDue}. {{braces}} stay."
    assert notes.render(text, INVOICE.placeholders, values) == (
        "Hi Jane Doe, invoice INV-7 is $12.50. {braces} stay."
    )


@pytest.mark.parametrize(
    "text,message",
    [
        ("Hello {CustomerNme}", "Unknown placeholder {CustomerNme}."),
        ("Pay {AmountDue} by {Deadline}", "Unknown placeholder {Deadline}."),
        ("Hello {CustomerName", "Unbalanced brace: the “{” in “{CustomerName” has no closing “}”"),
        (
            "Hello CustomerName}",
            "Unbalanced brace: the “}” in “Hello CustomerName}” has no opening",
        ),
        ("Empty {} here", "Empty placeholder “{}”"),
        ("Nested {{CustomerName}", "Unbalanced brace"),
    ],
)
def test_unknown_placeholder_or_unbalanced_brace_is_refused_naming_it(text, message):
    checked = notes.check(INVOICE, "Subject", text)
    assert not checked.ok and message in checked.problems["body"]


def test_placeholders_are_per_email():
    confirmed = notes.KINDS["booking_confirmed"]
    assert notes.check(confirmed, "Booked", "Arriving {ArrivalWindow} on {AppointmentDate}").ok
    problem = notes.check(confirmed, "Booked", "Invoice {InvoiceNumber}").problems["body"]
    assert "Unknown placeholder {InvoiceNumber}. This email can use {CustomerPortalLink}" in problem
    assert "{ArrivalWindow}" in problem


def test_subject_is_one_line_and_both_parts_are_needed():
    assert notes.check(INVOICE, "", "Body").problems == {"subject": "Enter a subject."}
    # A line break in the subject (it would end the email's Subject header) is folded away,
    # in what is saved and in what the form shows again.
    folded = notes.check(INVOICE, "Two\nlines\u2028here", "One\r\ntwo")
    assert folded.ok and folded.clean == notes.Wording("Two lines here", "One\ntwo")
    assert folded.values == {"subject": "Two lines here", "body": "One\ntwo"}
    assert notes.check(INVOICE, "Subject", "  ").problems == {"body": "Enter the email's text."}


def test_every_default_wording_is_valid_and_links_to_the_portal():
    for kind in notes.KINDS.values():
        assert notes.check(kind, kind.subject, kind.body).problems == {}, kind.key
        assert "{CustomerPortalLink}" in kind.body, kind.key


def test_html_body_escapes_text_and_makes_links_clickable():
    html = notifications.body_html(
        "Hi <b>Jane</b>\nline two\n\nGo to http://x.localhost:8000/sign-in."
    )
    assert "&lt;b&gt;Jane&lt;/b&gt;<br>" in html
    assert '<a href="http://x.localhost:8000/sign-in" style="color:#0f4c81">' in html
    assert "</a>.</p>" in html


# --- editing in the office ----------------------------------------------------------------------


async def post(client, path: str, data: dict[str, Any], **kw):
    token = await csrf_from(client, "/office/notifications")
    return await client.post(path, data={"_csrf_token": token, **data}, **kw)


async def stored(key: str) -> dict[str, Any] | None:
    tenant = await Tenant.select(Tenant.id).where(Tenant.host == DEMO_HOST).first().run()
    return (
        await NotificationTemplate.select()
        .where((NotificationTemplate.tenant == tenant["id"]) & (NotificationTemplate.key == key))
        .first()
        .run()
    )


async def test_list_and_default_wording(admin):
    page = await admin.get("/office/notifications")
    for title in ("Invoice email", "Booking received", "Booking confirmed"):
        assert title in page.text
    editor = await admin.get("/office/notifications/invoice_email")
    assert "The default wording" in editor.text
    assert "Invoice {InvoiceNumber} from {BusinessName}" in editor.text
    assert (await admin.get("/office/notifications/nope")).status_code == 404


async def test_preview_uses_a_real_customer(admin):
    latest = (
        await Invoice.select(Invoice.number, Invoice.customer.name.as_alias("name"))
        .where(Invoice.balance_cents > 0)
        .order_by(Invoice.invoice_date, ascending=False)
        .order_by(Invoice.id, ascending=False)
        .first()
        .run()
    )
    page = await admin.get("/office/notifications/invoice_email")
    assert f"Preview with {latest['name']}&#39;s invoice {latest['number']}." in page.text
    assert f"Invoice {latest['number']} from XYZ Services" in page.text
    assert "http://xyzplumbing.localhost:8000/sign-in" in page.text
    # A draft is previewed without being saved.
    draft = {
        "subject": "Draft for {CustomerName}",
        "body": "Owed: {AmountDue}\n{CustomerPortalLink}",
    }
    preview = await post(admin, "/office/notifications/invoice_email/preview", draft, headers=HX)
    assert preview.status_code == 200
    assert f"Draft for {latest['name']}" in preview.text
    assert "nothing is saved until you press Save" in preview.text
    assert await stored("invoice_email") is None


async def test_bad_wording_is_refused_and_nothing_is_saved(admin):
    bad = {"subject": "Invoice {InvoiceNumber}", "body": "Hi {FirstName}, {CustomerPortalLink}"}
    response = await post(admin, "/office/notifications/invoice_email", bad, headers=HX)
    assert response.status_code == 422
    assert "Unknown placeholder {FirstName}." in response.text
    assert "Hi {FirstName}, {CustomerPortalLink}</textarea>" in response.text  # kept to fix
    assert await stored("invoice_email") is None
    plain = await post(admin, "/office/notifications/invoice_email", bad)
    assert plain.status_code == 422 and plain.text.startswith("<!doctype html>")


async def test_save_and_reset_wording(office):
    wording = {
        "subject": "Your bill {InvoiceNumber}",
        "body": "Dear {CustomerName},\r\n{AmountDue} is due {DueDate}.\r\nPay: {CustomerPortalLink}",
    }
    saved = await post(office, "/office/notifications/booking_received", {
        "subject": "Got it", "body": "Thanks {CustomerName}: {ServiceType}. {CustomerPortalLink}",
    })  # fmt: skip
    assert saved.status_code == 303
    assert (await stored("booking_received"))["subject"] == "Got it"
    reset = await post(office, "/office/notifications/booking_received/reset", {})
    assert reset.headers["location"] == "/office/notifications/booking_received?done=reset"
    assert await stored("booking_received") is None
    response = await post(office, "/office/notifications/invoice_email", wording, headers=HX)
    assert response.status_code == 200 and "Saved." in response.text
    row = await stored("invoice_email")
    assert (
        row["body"]
        == "Dear {CustomerName},\n{AmountDue} is due {DueDate}.\nPay: {CustomerPortalLink}"
    )


# --- Email invoice ------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


async def jane_invoice() -> dict[str, Any]:
    jane = await Customer.select(Customer.id).where(Customer.external_id == "C-1001").first().run()
    row = (
        await Invoice.select()
        .where((Invoice.customer == jane["id"]) & (Invoice.balance_cents > 0))
        .order_by(Invoice.invoice_date)
        .first()
        .run()
    )
    return row


def text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode()
    raise AssertionError("no text part")


async def test_email_invoice_sends_the_real_portal_link(admin, settings, smtp):
    inbox, port = smtp
    # The business's own wording is used.
    await post(admin, "/office/notifications/invoice_email", {
        "subject": "Invoice {InvoiceNumber} is ready",
        "body": "Hello {CustomerName}, {AmountDue} due {DueDate}.\nSign in: {CustomerPortalLink}",
    })  # fmt: skip
    invoice = await jane_invoice()
    page = await admin.get(f"/office/customers/{invoice['customer']}")
    assert f'aria-label="Email invoice {invoice["number"]}"' in page.text
    response = await post(
        admin,
        f"/office/customers/{invoice['customer']}/invoices/{invoice['id']}/email",
        {"to": "jane@example.com"},
        headers=HX,
    )
    assert response.status_code == 200
    assert (
        f"The invoice email is on its way: invoice {invoice['number']} to jane@example.com."
        in response.text
    )
    row = (
        await OutboxEmail.select()
        .where(OutboxEmail.subject == f"Invoice {invoice['number']} is ready")
        .first()
        .run()
    )
    assert row["to_addr"] == "jane@example.com"
    trail = (
        await AuditEvent.select()
        .where((AuditEvent.invoice == invoice["id"]) & (AuditEvent.action == "emailed"))
        .run()
    )
    assert trail and trail[0]["actor"] == ADMIN_EMAIL

    await deliver_due(settings, SMTPBackend(f"smtp://127.0.0.1:{port}"))
    [message] = [
        m for m in inbox.messages if m["Subject"] == f"Invoice {invoice['number']} is ready"
    ]
    assert message["To"] == "jane@example.com"
    body = text_of(message)
    assert "Sign in: http://xyzplumbing.localhost:8000/sign-in" in body
    amount = f"${invoice['balance_cents'] // 100:,}.{invoice['balance_cents'] % 100:02d}"
    assert f"Hello Jane Doe, {amount} due" in body


async def test_email_invoice_refuses_other_addresses_and_other_customers_invoices(admin):
    invoice = await jane_invoice()
    before = await OutboxEmail.count().run()
    wrong_to = await post(
        admin,
        f"/office/customers/{invoice['customer']}/invoices/{invoice['id']}/email",
        {"to": "stranger@example.com"},
    )
    assert (
        wrong_to.status_code == 422 and "Choose one of the customer&#39;s emails." in wrong_to.text
    )
    bob = await Customer.select(Customer.id).where(Customer.external_id == "C-1002").first().run()
    not_bobs = await post(
        admin,
        f"/office/customers/{bob['id']}/invoices/{invoice['id']}/email",
        {"to": "bob@example.com"},
    )
    assert not_bobs.status_code == 404
    await import_business("mailbiz")
    theirs = await Customer.select(Customer.id).where(Customer.external_id == "C1").first().run()
    assert (await admin.get(f"/office/customers/{theirs['id']}")).status_code == 404
    assert await OutboxEmail.count().run() == before

"""Issue 11.2 — the office sees failed emails, with the reason in words, and retries them.

Office › Emails lists the business's failed emails (recipient, subject, when, attempts,
reason) and its recent ones; staff of either role retry a failed one, with or without
JavaScript; another business's email is a 404. Emailing an invoice says the email is
on its way (it is queued), not that it was sent.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from portal.db import queries
from portal.db import tables as t
from portal.demo import DEMO_HOST, JANE_EMAIL
from portal.mail.backends import SMTPBackend
from portal.mail.outbox import queue_raw
from portal.mail.worker import deliver_due
from portal.testing import MailSink
from tests.conftest import csrf_from, import_business

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}


@pytest.fixture
def sink():
    server = MailSink().start()
    yield server
    server.stop()


async def clear_outbox() -> None:
    await t.OutboxEmail.delete().where(t.OutboxEmail.id > 0).run()


async def outbox_row(row_id: int) -> dict[str, Any]:
    return await t.OutboxEmail.select().where(t.OutboxEmail.id == row_id).first().run()


async def post(client, path: str, data: dict[str, Any], page: str = "/office/emails", **kw):
    token = await csrf_from(client, page)
    return await client.post(path, data={"_csrf_token": token, **data}, **kw)


# --- the Emails page -----------------------------------------------


async def failed_email(settings, tenant: dict[str, Any], to: str, subject: str, reason: str) -> int:
    """An email the worker gave up on, with its reason."""
    row_id = await queue_raw(settings, tenant, to, subject, "Hello")
    await (
        t.OutboxEmail.update(
            {
                t.OutboxEmail.status: "failed",
                t.OutboxEmail.attempts: 1,
                t.OutboxEmail.last_error: reason,
            }
        )
        .where(t.OutboxEmail.id == row_id)
        .run()
    )
    return row_id


def retry_button(to: str, subject: str) -> str:
    return f'aria-label="Retry the email to {to}: {subject}"'


async def test_office_sees_failed_emails_with_the_reason_and_only_its_own(
    app, demo, admin, settings
):
    await clear_outbox()
    await import_business("otherfail")
    mine = await queries.tenant_by_host(DEMO_HOST)
    theirs = await queries.tenant_by_host("otherfail")
    reason = "The mail server refused it for good: 550 No such mailbox"
    await failed_email(
        settings, mine, "gone@example.com", "Invoice INV-9 from XYZ Services", reason
    )
    await failed_email(settings, theirs, "secret@otherfail.example", "Their private email", reason)
    await queue_raw(settings, mine, "fine@example.com", "On its way", "Hi")
    nav = await admin.get("/office/settings")
    assert 'href="/office/emails"' in nav.text
    page = await admin.get("/office/emails")
    assert page.status_code == 200
    text = page.text
    assert "gone@example.com" in text and "Invoice INV-9 from XYZ Services" in text
    assert "550 No such mailbox" in text
    assert retry_button("gone@example.com", "Invoice INV-9 from XYZ Services") in text
    assert "fine@example.com" in text and "Waiting to be sent" in text  # recent emails
    assert "secret@otherfail.example" not in text and "Their private email" not in text


@pytest.mark.parametrize("role", ["admin", "office"])
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
async def test_staff_retry_a_failed_email_and_it_is_delivered(
    app, demo, admin, office, settings, sink, role, htmx
):
    await clear_outbox()
    client = admin if role == "admin" else office
    tenant = await queries.tenant_by_host(DEMO_HOST)
    reason = "The mail server refused it for good: 550 No such mailbox"
    row_id = await failed_email(settings, tenant, "retry@example.com", "Please retry", reason)
    response = await post(
        client,
        f"/office/emails/{row_id}/retry",
        {},
        page="/office/emails",
        headers=HX if htmx else None,
    )
    if htmx:
        assert response.status_code == 200
        assert "<html" not in response.text
        assert "The email to retry@example.com is on its way again." in response.text
    else:
        assert response.status_code == 303
        assert response.headers["location"] == "/office/emails?done=retried"
    row = await outbox_row(row_id)
    assert row["status"] == "pending" and row["attempts"] == 0
    assert await deliver_due(settings, SMTPBackend(sink.url)) == {
        "sent": 1,
        "retry": 0,
        "failed": 0,
    }
    assert len(sink.to("retry@example.com")) == 1
    # Retrying again (a second click, an old page): a message, nothing sent twice.
    again = await post(client, f"/office/emails/{row_id}/retry", {}, page="/office/emails")
    assert again.status_code == 409
    assert "was already sent" in again.text
    assert (await outbox_row(row_id))["status"] == "sent"


async def test_another_business_email_cannot_be_retried(app, demo, admin, settings):
    await clear_outbox()
    await import_business("retryother")
    theirs = await queries.tenant_by_host("retryother")
    row_id = await failed_email(settings, theirs, "x@retryother.example", "Theirs", "550 refused")
    response = await post(admin, f"/office/emails/{row_id}/retry", {}, page="/office/emails")
    missing = await post(admin, "/office/emails/2000000000/retry", {}, page="/office/emails")
    assert response.status_code == missing.status_code == 404
    assert (await outbox_row(row_id))["status"] == "failed"


async def test_emailing_an_invoice_says_it_is_on_its_way_not_sent(app, demo, admin):
    jane = await t.Customer.select().where(t.Customer.external_id == "C-1001").first().run()
    invoice = (
        await t.Invoice.select()
        .where((t.Invoice.customer == jane["id"]) & (t.Invoice.balance_cents > 0))
        .first()
        .run()
    )
    path = f"/office/customers/{jane['id']}/invoices/{invoice['id']}/email"
    page = f"/office/customers/{jane['id']}"
    fragment = await post(admin, path, {"to": JANE_EMAIL}, page=page, headers=HX)
    assert fragment.status_code == 200
    assert "was sent" not in fragment.text
    assert f"The invoice email is on its way: invoice {invoice['number']} to {JANE_EMAIL}." in (
        fragment.text
    )
    assert 'href="/office/emails"' in fragment.text
    plain = await post(admin, path, {"to": JANE_EMAIL}, page=page)
    assert plain.status_code == 303
    followed = await admin.get(plain.headers["location"])
    assert "The invoice email is on its way." in followed.text and "was sent" not in followed.text
    assert re.search(r'href="/office/emails"', followed.text)

"""Issue 11.2 — one bad email never blocks the others.

A line separator (U+2028, NEL, form feed…) in a business name, customer name or
template subject is cleaned wherever it enters (office forms, `portal import`) and
again when the message is built; the worker handles each email on its own, never makes
more attempts than its cap, fails an email that can never be built at once with the
reason, and the office sees failed emails (with the reason) and can retry them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from portal.db import queries
from portal.db import tables as t
from portal.demo import DEMO_HOST, JANE_EMAIL
from portal.mail.backends import SMTPBackend, build_message
from portal.mail.worker import deliver_due
from portal.testing import MailSink
from tests.conftest import csrf_from, new_business_data

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}
# The characters of the review: each made the email package raise inside the worker.
BREAKS = {"line separator": "\u2028", "NEL": "\x85", "form feed": "\x0c"}


@pytest.fixture
def sink():
    server = MailSink().start()
    yield server
    server.stop()


def later(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


async def clear_outbox() -> None:
    await t.OutboxEmail.delete().where(t.OutboxEmail.id > 0).run()


async def outbox_row(row_id: int) -> dict[str, Any]:
    return await t.OutboxEmail.select().where(t.OutboxEmail.id == row_id).first().run()


async def legacy_row(tenant: dict[str, Any], **fields: Any) -> int:
    """An outbox row written before this fix (no cleaning on the way in)."""
    values = {
        "tenant": tenant["id"],
        "message_id": f"<{uuid.uuid4().hex}@localhost>",
        "to_addr": "legacy@example.com",
        "from_name": tenant["name"],
        "reply_to": "",
        "subject": "Legacy",
        "text_body": "Hello",
        "html_body": "",
        "next_attempt_at": datetime.now(UTC) - timedelta(minutes=5),  # first in line
        **fields,
    }
    rows = await t.OutboxEmail.insert(t.OutboxEmail(**values)).run()
    return rows[0]["id"]


async def post(client, path: str, data: dict[str, Any], page: str = "/office/settings", **kw):
    token = await csrf_from(client, page)
    return await client.post(path, data={"_csrf_token": token, **data}, **kw)


# --- headers are built from cleaned text ----------------------------------------------------------


@pytest.mark.parametrize("char", BREAKS.values(), ids=BREAKS.keys())
def test_headers_are_built_from_cleaned_text(settings, char):
    row = {
        "from_name": f"XYZ{char}Services",
        "to_addr": "jane@example.com",
        "reply_to": "help@xyzservices.example",
        "subject": f"Invoice INV-7{char}from XYZ{char}Services",
        "message_id": "<fixed@localhost>",
        "text_body": f"Hello{char}Jane",
        "html_body": "",
    }
    message = build_message(row, settings)
    assert message["From"] == "XYZ Services <portal@localhost>"
    assert message["Subject"] == "Invoice INV-7 from XYZ Services"
    assert b"\r\nBcc" not in bytes(message)


async def test_business_name_is_cleaned_in_the_office_settings(app, demo, admin):
    before = await queries.tenant_by_host(DEMO_HOST)
    try:
        name = "XYZ\u2028Plumbing\x0cand\x85Heating\x1e Co"
        response = await post(admin, "/office/settings/name", {"name": name}, headers=HX)
        assert response.status_code == 200 and "Saved" in response.text
        after = await queries.tenant_by_host(DEMO_HOST)
        assert after["name"] == "XYZ Plumbing and Heating Co"
    finally:
        await (
            t.Tenant.update({t.Tenant.name: before["name"]})
            .where(t.Tenant.id == before["id"])
            .run()
        )


async def test_template_subject_is_cleaned_and_its_email_is_delivered(
    app, demo, admin, settings, sink
):
    await clear_outbox()
    page = "/office/notifications/invoice_email"
    subject = "Invoice {InvoiceNumber}\u2028from\x85{BusinessName}\x0c(please pay)"
    body = "Hello {CustomerName},\nsee {CustomerPortalLink}"
    saved = await post(admin, page, {"subject": subject, "body": body}, page=page)
    assert saved.status_code == 303, saved.text[:300]
    tenant = await queries.tenant_by_host(DEMO_HOST)
    stored = (
        await t.NotificationTemplate.select()
        .where(
            (t.NotificationTemplate.tenant == tenant["id"])
            & (t.NotificationTemplate.key == "invoice_email")
        )
        .first()
        .run()
    )
    try:
        assert stored["subject"] == "Invoice {InvoiceNumber} from {BusinessName} (please pay)"
        jane = await t.Customer.select().where(t.Customer.external_id == "C-1001").first().run()
        invoice = (
            await t.Invoice.select()
            .where((t.Invoice.customer == jane["id"]) & (t.Invoice.balance_cents > 0))
            .first()
            .run()
        )
        sent = await post(
            admin,
            f"/office/customers/{jane['id']}/invoices/{invoice['id']}/email",
            {"to": JANE_EMAIL},
            page=f"/office/customers/{jane['id']}",
        )
        assert sent.status_code == 303
        assert await deliver_due(settings, SMTPBackend(sink.url)) == {
            "sent": 1,
            "retry": 0,
            "failed": 0,
        }
        [message] = sink.to(JANE_EMAIL)
        assert message["Subject"] == f"Invoice {invoice['number']} from XYZ Services (please pay)"
    finally:
        await t.NotificationTemplate.delete().where(t.NotificationTemplate.id == stored["id"]).run()


async def test_names_are_cleaned_by_the_importer(app, demo):
    data = new_business_data("linebreaks")
    data["business"]["name"] = "Bright\u2028water\x0cPlumbing"
    data["staff"][0]["name"] = "Bea\x85Boss"
    data["customers"][0]["name"] = "Pat\u2029Lee\x0b Jr"
    data["customers"][0]["locations"][0]["street"] = "9 Elm\u2028Row"
    from portal.db.importer import import_file

    tenant_id = await import_file(json.dumps(data))
    tenant = await t.Tenant.select().where(t.Tenant.id == tenant_id).first().run()
    assert tenant["name"] == "Bright water Plumbing"
    staff = await t.StaffUser.select().where(t.StaffUser.tenant == tenant_id).run()
    assert {s["name"] for s in staff} == {"Bea Boss", "Dan Desk"}
    [customer] = await t.Customer.select().where(t.Customer.tenant == tenant_id).run()
    assert customer["name"] == "Pat Lee Jr"
    [location] = await t.Location.select().where(t.Location.tenant == tenant_id).run()
    assert location["street"] == "9 Elm Row"


async def test_a_name_of_nothing_but_line_breaks_is_refused_by_the_importer(app, demo):
    from portal.db.importer import ImportProblem, import_file

    data = new_business_data("onlybreaks")
    data["customers"][0]["name"] = "\u2028\x0c"
    with pytest.raises(ImportProblem, match=r"customers\[0\]\.name"):
        await import_file(json.dumps(data))
    assert not await t.Tenant.exists().where(t.Tenant.host == "onlybreaks").run()

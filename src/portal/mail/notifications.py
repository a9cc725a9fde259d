"""The business's own emails (Office › Notifications): a stored wording filled in with a
customer's values and queued in the outbox, in the transaction of what causes it — an
invoice emailed by the office, a booking confirmed or dismissed (`portal.appointments`).

The wording and its placeholder rules are data (`db/office_notifications.py`); the links
in it and the sending are here, so `db/` never queues an email.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from markupsafe import Markup, escape

from portal.config import Settings
from portal.db import office_customers
from portal.db import office_notifications as notes
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.formatting import format_date, money
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email


def sign_in_link(settings: Settings, tenant: TenantRow) -> str:
    """{CustomerPortalLink}: the business's real portal sign-in page."""
    return portal_url(settings, tenant, "/sign-in")


def common_values(settings: Settings, tenant: TenantRow, customer_name: str) -> dict[str, str]:
    return {
        "CustomerPortalLink": sign_in_link(settings, tenant),
        "CustomerName": customer_name,
        "BusinessName": tenant["name"],
    }


def invoice_values(
    settings: Settings, tenant: TenantRow, customer_name: str, invoice: dict[str, Any]
) -> dict[str, str]:
    """Placeholder values of an invoice email."""
    due: date | None = invoice.get("due_date")
    return {
        **common_values(settings, tenant, customer_name),
        "InvoiceNumber": invoice["number"],
        "AmountDue": money(invoice["balance_cents"], tenant["currency"]),
        "DueDate": format_date(due) if due else "on receipt",
    }


def sample_values(
    settings: Settings, tenant: TenantRow, key: str, customer: dict[str, Any] | None
) -> dict[str, str]:
    """Values for a preview: the customer's real data, with example booking details."""
    name = customer["name"] if customer else "Jane Customer"
    values = common_values(settings, tenant, name)
    invoice = customer.get("invoice") if customer else None
    if invoice:
        values.update(invoice_values(settings, tenant, name, invoice))
    else:
        values.update({"InvoiceNumber": "INV-0000", "AmountDue": money(0), "DueDate": "on receipt"})
    values.update(
        {
            "ServiceType": (tenant["service_types"] or ["Plumbing repair"])[0],
            "ServiceAddress": "12 Oak Street, Springfield",
            "PreferredTimes": "Mon, Dec 7 (morning); Tue, Dec 8 (any time)",
            "AppointmentDate": "Monday, December 7, 2026",
            "ArrivalWindow": "between 8 AM and 12 PM",
        }
    )
    return values


async def queue_notification(
    settings: Settings,
    tenant: TenantRow,
    to: str,
    key: str,
    values: dict[str, str],
) -> int:
    """Queue the business's `key` email to `to` with `values` (call inside the transaction
    that causes it; call `portal.mail.worker.wake()` after commit)."""
    kind = notes.KINDS[key]
    text = await notes.wording(tenant["id"], key)
    subject = notes.render(text["subject"], kind.placeholders, values)
    body = notes.render(text["body"], kind.placeholders, values)
    return await queue_email(
        settings,
        tenant,
        to,
        "notification",
        {"subject": subject, "body": body, "body_html": body_html(body)},
    )


URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")


def body_html(body: str) -> Markup:
    """An email body as HTML: paragraphs at blank lines, line breaks kept, links clickable."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", body.strip()):
        pieces = []
        pos = 0
        for match in URL.finditer(block):
            pieces.append(escape(block[pos : match.start()]))
            url = escape(match.group(0))
            pieces.append(Markup(f'<a href="{url}" style="color:#0f4c81">{url}</a>'))
            pos = match.end()
        pieces.append(escape(block[pos:]))
        html = Markup("").join(pieces).replace("\n", Markup("<br>\n"))
        paragraphs.append(Markup('<p style="margin:0 0 14px">') + html + Markup("</p>"))
    return Markup("\n").join(paragraphs)


async def email_invoice(
    settings: Settings,
    tenant: TenantRow,
    who: dict[str, Any],
    invoice: dict[str, Any],
    to: str,
    staff_email: str,
) -> None:
    """Queue the business's invoice email for `invoice` to `to` (one of the customer's
    emails), and note it in the invoice's audit trail: both or neither. Call
    `portal.mail.worker.wake()` after."""
    values = invoice_values(settings, tenant, who["name"], invoice)
    async with transaction():
        await queue_notification(settings, tenant, to, "invoice_email", values)
        await office_customers.note_invoice_emailed(tenant["id"], invoice, to, staff_email)

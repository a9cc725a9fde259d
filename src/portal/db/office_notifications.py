"""Notification templates: each business's wording for the emails the portal sends, with
placeholders such as `{CustomerPortalLink}`, and defaults when none was saved.

A template is plain text. `{Name}` is a placeholder; `{{` and `}}` write a brace itself.
A template with an unknown placeholder or an unbalanced brace is refused with a message
that names it, so a saved template always renders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from portal.db import activity
from portal.db.engine import transaction
from portal.db.tables import Customer, CustomerEmail, Invoice, NotificationTemplate
from portal.forms import Checked, multi_line, one_line

COMMON = ("CustomerPortalLink", "CustomerName", "BusinessName")
INVOICE = ("InvoiceNumber", "AmountDue", "DueDate")
BOOKING = ("ServiceType", "ServiceAddress")


@dataclass(frozen=True)
class Kind:
    """One kind of email the business can word: its name, placeholders and default text."""

    key: str
    title: str
    purpose: str
    placeholders: tuple[str, ...]
    subject: str
    body: str


KINDS: dict[str, Kind] = {
    k.key: k
    for k in [
        Kind(
            key="invoice_email",
            title="Invoice email",
            purpose="Sent when the office emails an invoice to a customer.",
            placeholders=(*COMMON, *INVOICE),
            subject="Invoice {InvoiceNumber} from {BusinessName}",
            body=(
                "Hello {CustomerName},\n\n"
                "Your invoice {InvoiceNumber} from {BusinessName} is ready. "
                "Amount due: {AmountDue}, due {DueDate}.\n\n"
                "See it and pay online in our customer portal:\n"
                "{CustomerPortalLink}\n\n"
                'New to the portal? Choose "Request an invitation" on that page and use this '
                "email address.\n\n"
                "Thank you for your business,\n"
                "{BusinessName}"
            ),
        ),
        Kind(
            key="booking_received",
            title="Booking received",
            purpose="Sent when a customer requests an appointment in the portal.",
            placeholders=(*COMMON, *BOOKING, "PreferredTimes"),
            subject="We received your appointment request",
            body=(
                "Hello {CustomerName},\n\n"
                "Thank you for your request for {ServiceType} at {ServiceAddress}. "
                "You asked for: {PreferredTimes}.\n\n"
                "We'll confirm a date and arrival window soon. You can follow your request in "
                "our customer portal:\n"
                "{CustomerPortalLink}\n\n"
                "{BusinessName}"
            ),
        ),
        Kind(
            key="booking_confirmed",
            title="Booking confirmed",
            purpose="Sent when the office books a job from a customer's appointment request.",
            placeholders=(*COMMON, *BOOKING, "AppointmentDate", "ArrivalWindow"),
            subject="Your appointment with {BusinessName} is booked",
            body=(
                "Hello {CustomerName},\n\n"
                "Your appointment for {ServiceType} is booked for {AppointmentDate}, "
                "arriving {ArrivalWindow}, at {ServiceAddress}.\n\n"
                "See your appointments and invoices in our customer portal:\n"
                "{CustomerPortalLink}\n\n"
                "{BusinessName}"
            ),
        ),
        Kind(
            key="booking_dismissed",
            title="Booking request closed",
            purpose=(
                "Sent when the office dismisses a customer's appointment request, with the "
                "reason the office gave."
            ),
            placeholders=(*COMMON, *BOOKING, "Reason"),
            subject="About your appointment request",
            body=(
                "Hello {CustomerName},\n\n"
                "We can't book your request for {ServiceType} at {ServiceAddress}.\n\n"
                "{Reason}\n\n"
                "Call us or send a new request in our customer portal:\n"
                "{CustomerPortalLink}\n\n"
                "{BusinessName}"
            ),
        ),
    ]
}

TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|\{|\}")
NAME = re.compile(r"^[A-Za-z]+$")
MAX_SUBJECT = 200
MAX_BODY = 5000


class TemplateProblem(ValueError):
    """A template that cannot be used; the message names the problem."""


def _after(text: str, at: int) -> str:
    """The word starting at `at` (at most 20 characters), to name where a brace is."""
    return text[at : at + 20].split()[0]


def _before(text: str, end: int) -> str:
    """Whole words ending at `end` (about 20 characters), to name where a brace is."""
    start = max(0, end - 20)
    piece = text[start:end]
    if start > 0 and " " in piece:
        piece = piece.split(" ", 1)[1]
    return piece.rsplit("\n", 1)[-1]


def parse(text: str, allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """Split a template into ("text", s) and ("field", name) parts; raises `TemplateProblem`."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in TOKEN.finditer(text):
        if match.start() > pos:
            parts.append(("text", text[pos : match.start()]))
        token = match.group(0)
        if token == "{{":
            parts.append(("text", "{"))
        elif token == "}}":
            parts.append(("text", "}"))
        elif token == "{":
            raise TemplateProblem(
                f"Unbalanced brace: the “{{” in “{_after(text, match.start())}” has no closing "
                "“}”. Write {{ for a brace itself."
            )
        elif token == "}":
            raise TemplateProblem(
                f"Unbalanced brace: the “}}” in “{_before(text, match.end())}” "
                "has no opening “{”. Write }} for a brace itself."
            )
        else:
            name = match.group(1).strip()
            if not name:
                raise TemplateProblem(
                    "Empty placeholder “{}”: put a placeholder's name between the braces, "
                    "or write {{ and }} for braces themselves."
                )
            if name not in allowed:
                known = ", ".join("{" + p + "}" for p in allowed)
                what = f"{{{match.group(1)}}}" if NAME.match(name) else f"“{token}”"
                raise TemplateProblem(f"Unknown placeholder {what}. This email can use {known}.")
            parts.append(("field", name))
        pos = match.end()
    if pos < len(text):
        parts.append(("text", text[pos:]))
    return parts


@dataclass(frozen=True)
class Wording:
    """A checked subject and body, as they are saved."""

    subject: str
    body: str


def _placeholder_problem(kind: Kind, text: str) -> str | None:
    try:
        parse(text, kind.placeholders)
    except TemplateProblem as exc:
        return str(exc)
    return None


def clean_subject(kind: Kind, value: str) -> tuple[str, str | None]:
    """(subject, problem) for a typed subject: folded onto one line (a line separator in it
    would break the email's Subject header), at most `MAX_SUBJECT` characters, only `kind`'s
    placeholders."""
    subject = one_line(value[: MAX_SUBJECT * 2])
    if not subject.strip():
        return subject, "Enter a subject."
    if len(subject) > MAX_SUBJECT:
        return subject, f"Use at most {MAX_SUBJECT} characters (this has {len(subject)})."
    return subject, _placeholder_problem(kind, subject)


def clean_body(kind: Kind, value: str) -> tuple[str, str | None]:
    """(body, problem) for a typed email text: one kind of line break, at most `MAX_BODY`
    characters, only `kind`'s placeholders."""
    body = multi_line(value[: MAX_BODY * 2])
    if not body.strip():
        return body, "Enter the email's text."
    if len(body) > MAX_BODY:
        return body, f"Use at most {MAX_BODY:,} characters (this has {len(body):,})."
    return body, _placeholder_problem(kind, body)


def check(kind: Kind, subject: str, body: str) -> Checked[Wording]:
    """Check a typed subject and body (`forms.Checked`): the wording to save, the values to
    show again (as cleaned), the problems by field."""
    clean_subject_text, subject_problem = clean_subject(kind, subject)
    clean_body_text, body_problem = clean_body(kind, body)
    problems = {
        field: problem
        for field, problem in (("subject", subject_problem), ("body", body_problem))
        if problem
    }
    return Checked(
        Wording(clean_subject_text, clean_body_text),
        problems=problems,
        values={"subject": clean_subject_text, "body": clean_body_text},
    )


def render(text: str, allowed: tuple[str, ...], values: dict[str, str]) -> str:
    """Fill a template's placeholders with `values` (a checked template always renders)."""
    return "".join(
        value if part == "text" else values.get(value, "") for part, value in parse(text, allowed)
    )


# --- stored templates ----------------------------------------------------------------------------


async def wording(tenant_id: int, key: str) -> dict[str, Any]:
    """The business's subject and body for `key`: saved ones, else the defaults."""
    kind = KINDS[key]
    row = (
        await NotificationTemplate.select(
            NotificationTemplate.subject,
            NotificationTemplate.body,
            NotificationTemplate.updated_at,
        )
        .where((NotificationTemplate.tenant == tenant_id) & (NotificationTemplate.key == key))
        .first()
        .run()
    )
    if row is None:
        return {"subject": kind.subject, "body": kind.body, "custom": False, "updated_at": None}
    return {**row, "custom": True}


async def customised_keys(tenant_id: int) -> dict[str, datetime]:
    """Which kinds this business has reworded, with when."""
    rows = (
        await NotificationTemplate.select(NotificationTemplate.key, NotificationTemplate.updated_at)
        .where(NotificationTemplate.tenant == tenant_id)
        .run()
    )
    return {r["key"]: r["updated_at"] for r in rows}


async def save(
    tenant_id: int,
    key: str,
    subject: str,
    body: str,
    actor: activity.Actor = activity.SYSTEM,
) -> None:
    """Store the business's wording (checked by the caller with `check`), with the old
    and new wording in the activity log."""
    moment = datetime.now(UTC)
    async with transaction():
        before = await wording(tenant_id, key)
        await _store(tenant_id, key, subject, body, moment)
        old = f"{before['subject']}\n\n{before['body']}"
        new = f"{subject}\n\n{body}"
        if old != new:
            await activity.record(tenant_id, actor, "template.changed", KINDS[key].title, old, new)


async def _store(tenant_id: int, key: str, subject: str, body: str, moment: datetime) -> None:
    await NotificationTemplate.raw(
        """INSERT INTO notification_template (tenant, key, subject, body, updated_at)
        VALUES ({}, {}, {}, {}, {})
        ON CONFLICT (tenant, key) DO UPDATE
        SET subject = excluded.subject, body = excluded.body, updated_at = excluded.updated_at""",
        tenant_id,
        key,
        subject,
        body,
        moment,
    ).run()


async def reset(tenant_id: int, key: str, actor: activity.Actor = activity.SYSTEM) -> None:
    """Go back to the default wording (the wording it replaces in the activity log)."""
    async with transaction():
        before = await wording(tenant_id, key)
        deleted = await (
            NotificationTemplate.delete()
            .where((NotificationTemplate.tenant == tenant_id) & (NotificationTemplate.key == key))
            .returning(NotificationTemplate.id)
            .run()
        )
        if deleted:
            kind = KINDS[key]
            await activity.record(
                tenant_id,
                actor,
                "template.reset",
                kind.title,
                f"{before['subject']}\n\n{before['body']}",
                f"{kind.subject}\n\n{kind.body}",
            )


# --- preview ---------------------------------------------------------------------------------------


async def preview_customer(tenant_id: int, key: str) -> dict[str, Any] | None:
    """A real customer to preview a template with: for the invoice email, the customer of
    the latest open invoice (with it); otherwise the latest customer with an email."""
    if key == "invoice_email":
        row = (
            await Invoice.select(
                Invoice.number,
                Invoice.balance_cents,
                Invoice.total_cents,
                Invoice.due_date,
                Invoice.customer.id.as_alias("customer_id"),
                Invoice.customer.name.as_alias("customer_name"),
            )
            .where((Invoice.tenant == tenant_id) & (Invoice.balance_cents > 0))
            .order_by(Invoice.invoice_date, ascending=False)
            .order_by(Invoice.id, ascending=False)
            .first()
            .run()
        )
        if row is not None:
            return {"id": row["customer_id"], "name": row["customer_name"], "invoice": row}
    row = (
        await Customer.select(Customer.id, Customer.name)
        .where(
            (Customer.tenant == tenant_id)
            & Customer.id.is_in(
                CustomerEmail.select(CustomerEmail.customer).where(
                    CustomerEmail.tenant == tenant_id
                )
            )
        )
        .order_by(Customer.id)
        .first()
        .run()
    )
    return {**row, "invoice": None} if row else None

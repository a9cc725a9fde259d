"""`portal import FILE.json`: bring one business's records in, all or nothing.

The format is documented in docs/import-format.md. Checking happens in two
steps before anything is written: msgspec checks shapes and types (its error
names the JSON path), then `_check_references` checks ids, references and
rules. Writing happens in one transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import msgspec
from email_validator import EmailNotValidError, validate_email
from piccolo.table import Table

from portal.auth.passwords import hash_password, is_password_hash
from portal.auth.policy import password_problem
from portal.db import engine as db_engine
from portal.db import tables as t
from portal.forms import clean_host, multi_line, one_line
from portal.logos import LogoFiles, read_logo

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Cents = Annotated[int, msgspec.Meta(ge=0, le=100_000_000_00)]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
# Checked in words by the office's own host rule (`_check_host`), not by a pattern here.
HostName = Annotated[str, msgspec.Meta(max_length=200)]
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
HiddenStatus = Literal["canceled", "expired", "suspended"]


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for import records: unknown fields are an error, not silently dropped."""


class PortalSettings(Struct, kw_only=True):
    enabled: bool = False
    legal_accepted_by: str = ""
    legal_accepted_at: UtcTime | None = None
    scheduler_enabled: bool = False
    service_types: list[Annotated[str, msgspec.Meta(min_length=1, max_length=80)]] = []
    memberships_enabled: bool = False
    membership_statuses: list[HiddenStatus] = []
    recurring_service_message: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    payment_account: Annotated[str, msgspec.Meta(max_length=80)] = ""
    payments_enabled: bool = False


class Business(Struct, kw_only=True):
    host: HostName
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    email: str = ""
    phone: Annotated[str, msgspec.Meta(max_length=40)] = ""
    time_zone: str = "America/Chicago"
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] = "USD"
    logo_png_base64: str | None = None
    portal: PortalSettings = msgspec.field(default_factory=PortalSettings)


class BusinessUnitIn(Struct, kw_only=True):
    id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    invoices_downloadable: bool = True


class StaffIn(Struct, kw_only=True):
    email: str
    name: Annotated[str, msgspec.Meta(max_length=120)] = ""
    role: Literal["admin", "office"] = "office"
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=128)] | None = None
    password_hash: str | None = None
    # Neither: an invited member who has not chosen a password yet (signs in after
    # "Forgot your password?"). Set: a member who may not sign in (an administrator
    # disabled them).
    disabled_at: UtcTime | None = None


class LocationIn(Struct, kw_only=True):
    id: Id
    name: Annotated[str, msgspec.Meta(max_length=120)] = ""
    street: Text
    city: Annotated[str, msgspec.Meta(max_length=100)] = ""
    state: Annotated[str, msgspec.Meta(max_length=40)] = ""
    zip: Annotated[str, msgspec.Meta(max_length=20)] = ""


class PortalAccountIn(Struct, kw_only=True):
    email: str
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=128)] | None = None
    password_hash: str | None = None


class CustomerIn(Struct, kw_only=True):
    id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    kind: Literal["residential", "commercial"] = "residential"
    phone: Annotated[str, msgspec.Meta(max_length=40)] = ""
    emails: list[str] = []
    locations: list[LocationIn] = []
    portal_account: PortalAccountIn | None = None


class JobIn(Struct, kw_only=True):
    number: Id
    customer: Id
    location: Id
    business_unit: Id
    summary: Annotated[str, msgspec.Meta(max_length=300)] = ""
    status: Literal["scheduled", "in_progress", "completed", "canceled"] = "completed"
    scheduled_start: UtcTime | None = None
    scheduled_end: UtcTime | None = None
    completed_at: UtcTime | None = None


class LineIn(Struct, kw_only=True):
    description: Text
    quantity: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 1.0
    unit_price_cents: Cents


# The field `date` below would hide the type inside the class body.
Day = date


class InvoiceIn(Struct, kw_only=True):
    number: Id
    job: Id
    date: Day
    due_date: Day | None = None
    summary: Annotated[str, msgspec.Meta(max_length=300)] = ""
    lines: list[LineIn] = []
    # "void": the business no longer bills it. It owes nothing, never shows as open and
    # cannot be paid; it may carry no money (payments refunded first).
    status: Literal["issued", "void"] = "issued"
    # What is still owed when the business says it is less than the total less the
    # payments (paid outside the portal); left out, it is exactly that.
    balance_cents: Cents | None = None
    # The business's own PDF of the invoice, shown instead of the one the portal draws.
    pdf_base64: str | None = None


class AllocationIn(Struct, kw_only=True):
    invoice: Id
    amount_cents: Annotated[int, msgspec.Meta(gt=0)]
    refunded_cents: Annotated[int, msgspec.Meta(ge=0)] = 0  # given back: owed again


class RefundIn(Struct, kw_only=True):
    amount_cents: Annotated[int, msgspec.Meta(gt=0)]
    status: Literal["pending", "succeeded", "failed"] = "succeeded"
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""
    source: Literal["office", "gateway"] = "office"
    actor: Annotated[str, msgspec.Meta(max_length=254)] = ""  # the staff member's email
    reference: Annotated[str, msgspec.Meta(max_length=80)] = ""  # the gateway's refund id
    failure_reason: Annotated[str, msgspec.Meta(max_length=200)] = ""
    created_at: UtcTime
    completed_at: UtcTime | None = None


class PaymentIn(Struct, kw_only=True):
    reference: Id
    customer: Id
    paid_at: UtcTime  # when it went through (or, pending or failed, when it started)
    card_brand: Annotated[str, msgspec.Meta(max_length=20)] = ""
    card_last4: Annotated[str, msgspec.Meta(pattern=r"^([0-9]{4})?$")] = ""
    allocations: list[AllocationIn]
    status: Literal["succeeded", "pending", "failed"] = "succeeded"
    failure_reason: Annotated[str, msgspec.Meta(max_length=200)] = ""
    refunded_at: UtcTime | None = None  # the charge was given back in full
    refunds: list[RefundIn] = []
    # The payment account it was made on: a pending one is settled, and a refund made,
    # through it (`reference` is that gateway's own id of the payment).
    payment_account: Annotated[str, msgspec.Meta(max_length=80)] = ""


class VisitIn(Struct, kw_only=True):
    date: date
    window_start: Clock = "08:00"
    window_end: Clock = "12:00"
    description: Annotated[str, msgspec.Meta(max_length=200)] = ""
    status: Literal["upcoming", "completed", "canceled"] = "upcoming"


class CardIn(Struct, kw_only=True):
    brand: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    last4: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}$")]


class MembershipIn(Struct, kw_only=True):
    id: Id
    customer: Id
    location: Id
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    status: Literal["active", "canceled", "expired", "suspended"] = "active"
    start_date: date
    end_date: date | None = None
    card: CardIn | None = None
    visits: list[VisitIn] = []


class AppointmentIn(Struct, kw_only=True):
    id: Id
    customer: Id
    location: Id
    starts_at: UtcTime
    ends_at: UtcTime
    service_type: Annotated[str, msgspec.Meta(max_length=80)] = ""
    status: Literal["scheduled", "in_progress", "completed", "canceled"] = "scheduled"
    job: Id | None = None  # the job it is for (the same customer's), by number


class ImportFile(Struct, kw_only=True):
    format: Literal["portal-import/1"]
    business: Business
    business_units: list[BusinessUnitIn] = []
    staff: list[StaffIn] = []
    customers: list[CustomerIn] = []
    jobs: list[JobIn] = []
    invoices: list[InvoiceIn] = []
    payments: list[PaymentIn] = []
    memberships: list[MembershipIn] = []
    appointments: list[AppointmentIn] = []


class ImportProblem(Exception):
    """A problem in the import file; the message names the record and the field."""


def email_address(value: str, where: str) -> str:
    """`value` as a valid, lower-cased email address, or ImportProblem naming `where`."""
    return _email(value, where)


def _email(value: str, where: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ImportProblem(f"{where}: {value!r} is not a valid email address ({exc})") from None


def parse(raw: bytes | str) -> ImportFile:
    """Decode and type-check an import file (no database access)."""
    try:
        data = msgspec.json.decode(raw, type=ImportFile)
    except msgspec.ValidationError as exc:
        raise ImportProblem(_friendly_path(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise ImportProblem(f"the file is not valid JSON: {exc}") from None
    _clean_text(data)
    _check_references(data)
    return data


def _tidy(record: Any, field: str, where: str, *, required: bool = False) -> None:
    value = one_line(getattr(record, field))
    if required and not value:
        raise ImportProblem(f"{where}.{field}: has no text (only spaces or line breaks)")
    setattr(record, field, value)


def clean_unit(u: BusinessUnitIn, where: str) -> None:
    """A business unit's one-line text, as the office forms fold it (raises ImportProblem)."""
    _tidy(u, "name", where, required=True)


def clean_customer(c: CustomerIn, where: str) -> None:
    """A customer's and its locations' one-line text (raises ImportProblem)."""
    _tidy(c, "name", where, required=True)
    _tidy(c, "phone", where)
    for j, loc in enumerate(c.locations):
        here = f"{where}.locations[{j}]"
        _tidy(loc, "street", here, required=True)
        for field in ("name", "city", "state", "zip"):
            _tidy(loc, field, here)


def clean_job(j: JobIn, where: str) -> None:
    """A job's one-line text (raises ImportProblem)."""
    _tidy(j, "summary", where)


def clean_invoice(inv: InvoiceIn, where: str) -> None:
    """An invoice's and its lines' one-line text (raises ImportProblem)."""
    _tidy(inv, "summary", where)
    for k, line in enumerate(inv.lines):
        _tidy(line, "description", f"{where}.lines[{k}]", required=True)


def clean_appointment(a: AppointmentIn, where: str) -> None:
    """An appointment's one-line text (raises ImportProblem)."""
    _tidy(a, "service_type", where)


def clean_membership(m: MembershipIn, where: str) -> None:
    """A membership's and its visits' one-line text (raises ImportProblem)."""
    _tidy(m, "type", where, required=True)
    for k, v in enumerate(m.visits):
        _tidy(v, "description", f"{where}.visits[{k}]")


def _clean_text(data: ImportFile) -> None:
    """Fold line breaks and control characters in one-line text (names, addresses,
    summaries) to spaces, as the office forms do: such text ends up in email headers and
    page headings. A required field left empty by this is a problem. The sync API cleans
    its records with the same functions."""
    b = data.business
    _tidy(b, "name", "business", required=True)
    _tidy(b, "phone", "business")
    b.portal.service_types = [one_line(name) for name in b.portal.service_types]
    if not all(b.portal.service_types):
        raise ImportProblem("business.portal.service_types: a service type has no text")
    b.portal.recurring_service_message = multi_line(b.portal.recurring_service_message)
    for i, u in enumerate(data.business_units):
        clean_unit(u, f"business_units[{i}]")
    for i, s in enumerate(data.staff):
        _tidy(s, "name", f"staff[{i}]")
    for i, c in enumerate(data.customers):
        clean_customer(c, f"customers[{i}]")
    for i, j in enumerate(data.jobs):
        clean_job(j, f"jobs[{i}]")
    for i, inv in enumerate(data.invoices):
        clean_invoice(inv, f"invoices[{i}]")
    for i, m in enumerate(data.memberships):
        clean_membership(m, f"memberships[{i}]")
    for i, a in enumerate(data.appointments):
        clean_appointment(a, f"appointments[{i}]")


def friendly_path(message: str) -> str:
    """msgspec's validation message with its JSON path first (see `_friendly_path`)."""
    return _friendly_path(message)


def _friendly_path(message: str) -> str:
    """Turn msgspec's "... - at `$.customers[0].kind`" into "customers[0].kind: ..."."""
    match = re.search(r"^(.*) - at `\$\.?(.*)`$", message)
    if not match:
        return message
    problem, path = match.groups()
    problem = problem.replace("Object missing required field", "missing required field")
    return f"{path or 'top level'}: {problem}"


def _check_password(
    password: str | None, password_hash: str | None, business_name: str, email: str, where: str
) -> None:
    """The same password policy as the portal's own forms; a hash must be an argon2id
    hash (anything else stored verbatim would be a password nobody can sign in with)."""
    problem = password and password_problem(password, business_name=business_name, email=email)
    if problem:
        raise ImportProblem(f"{where}.password: {problem}")
    if password_hash is not None and not is_password_hash(password_hash):
        raise ImportProblem(
            f"{where}.password_hash: not an argon2id password hash "
            "(give the password instead, or a hash starting with $argon2id$)"
        )


def _check_host(host: str) -> None:
    """The office's host rule, word for word: reserved names, punycode and upper case are
    refused here exactly as on Settings › Customer Portal."""
    cleaned, problem = clean_host(host)
    if problem is None and cleaned != host:
        problem = "Use only lowercase letters, digits and hyphens, for example xyz-plumbing."
    if problem:
        raise ImportProblem(f"business.host: {host!r}: {problem}")


def _unique(items: list[Any], key: str, section: str) -> dict[str, int]:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        value = getattr(item, key)
        if value in seen:
            raise ImportProblem(
                f"{section}[{i}].{key}: {value!r} is used twice (also {section}[{seen[value]}])"
            )
        seen[value] = i
    return seen


def _check_references(data: ImportFile) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    b = data.business
    _check_host(b.host)
    try:
        ZoneInfo(b.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImportProblem(f"business.time_zone: unknown time zone {b.time_zone!r}") from None
    if b.email:
        _email(b.email, "business.email")
    if b.logo_png_base64 is not None:
        try:
            base64.b64decode(b.logo_png_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ImportProblem("business.logo_png_base64: not valid base64") from None
    if b.portal.legal_accepted_at and not b.portal.legal_accepted_by:
        raise ImportProblem(
            "business.portal.legal_accepted_by: required when legal_accepted_at is set"
        )
    if b.portal.enabled and not b.portal.legal_accepted_at:
        raise ImportProblem("business.portal.enabled: the legal agreement must be accepted first")
    if b.portal.payments_enabled and not b.portal.payment_account:
        raise ImportProblem("business.portal.payments_enabled: needs a payment_account")

    units = _unique(data.business_units, "id", "business_units")
    _unique(data.business_units, "name", "business_units")
    staff_emails: dict[str, int] = {}
    for i, s in enumerate(data.staff):
        email = _email(s.email, f"staff[{i}].email")
        if email in staff_emails:
            raise ImportProblem(f"staff[{i}].email: {email!r} is used twice")
        staff_emails[email] = i
        _check_password(s.password, s.password_hash, b.name, email, f"staff[{i}] ({email})")
    customers = _unique(data.customers, "id", "customers")
    location_owner: dict[str, str] = {}
    for i, c in enumerate(data.customers):
        where = f"customers[{i}] ({c.id})"
        for j, e in enumerate(c.emails):
            _email(e, f"{where}.emails[{j}]")
        for j, loc in enumerate(c.locations):
            if loc.id in location_owner:
                raise ImportProblem(f"{where}.locations[{j}].id: {loc.id!r} is used twice")
            location_owner[loc.id] = c.id
        if c.portal_account is not None:
            acct = _email(c.portal_account.email, f"{where}.portal_account.email")
            if acct not in {e.lower() for e in c.emails}:
                raise ImportProblem(
                    f"{where}.portal_account.email: {acct!r} is not one of the customer's emails"
                )
            if not (c.portal_account.password or c.portal_account.password_hash):
                raise ImportProblem(f"{where}.portal_account: needs password or password_hash")
            _check_password(
                c.portal_account.password,
                c.portal_account.password_hash,
                b.name,
                acct,
                f"{where}.portal_account",
            )

    jobs = _unique(data.jobs, "number", "jobs")
    job_customer: dict[str, str] = {}
    for i, job in enumerate(data.jobs):
        where = f"jobs[{i}] ({job.number})"
        if job.customer not in customers:
            raise ImportProblem(f"{where}.customer: unknown customer {job.customer!r}")
        if job.location not in location_owner:
            raise ImportProblem(f"{where}.location: unknown location {job.location!r}")
        if location_owner[job.location] != job.customer:
            raise ImportProblem(f"{where}.location: {job.location!r} belongs to another customer")
        if job.business_unit not in units:
            raise ImportProblem(
                f"{where}.business_unit: unknown business unit {job.business_unit!r}"
            )
        check_job(job, where)
        job_customer[job.number] = job.customer

    invoices = _unique(data.invoices, "number", "invoices")
    for i, inv in enumerate(data.invoices):
        if inv.job not in jobs:
            raise ImportProblem(f"invoices[{i}] ({inv.number}).job: unknown job {inv.job!r}")
    _unique(data.payments, "reference", "payments")
    paid: dict[str, int] = {}  # by succeeded payments, less what was refunded
    held: dict[str, int] = {}  # by pending payments
    for i, p in enumerate(data.payments):
        where = f"payments[{i}] ({p.reference})"
        if p.customer not in customers:
            raise ImportProblem(f"{where}.customer: unknown customer {p.customer!r}")
        if not p.allocations:
            raise ImportProblem(f"{where}.allocations: at least one allocation is needed")
        for k, a in enumerate(p.allocations):
            if a.invoice not in invoices:
                raise ImportProblem(
                    f"{where}.allocations[{k}].invoice: unknown invoice {a.invoice!r}"
                )
            inv = data.invoices[invoices[a.invoice]]
            if job_customer[inv.job] != p.customer:
                raise ImportProblem(
                    f"{where}.allocations[{k}].invoice: {a.invoice!r} belongs to another customer"
                )
            if a.refunded_cents > a.amount_cents:
                raise ImportProblem(
                    f"{where}.allocations[{k}].refunded_cents: more than its amount_cents"
                )
            if p.status == "succeeded":
                paid[a.invoice] = paid.get(a.invoice, 0) + a.amount_cents - a.refunded_cents
            elif p.status == "pending":
                held[a.invoice] = held.get(a.invoice, 0) + a.amount_cents
        if sum(r.amount_cents for r in p.refunds if r.status == "succeeded") > sum(
            a.amount_cents for a in p.allocations
        ):
            raise ImportProblem(f"{where}.refunds: more was refunded than the payment's amount")
    for i, inv in enumerate(data.invoices):
        total = invoice_total(inv)
        where = f"invoices[{i}] ({inv.number})"
        if inv.status == "void" and (paid.get(inv.number, 0) or held.get(inv.number, 0)):
            raise ImportProblem(
                f"{where}.status: a void invoice cannot have payments on it "
                f"({paid.get(inv.number, 0) + held.get(inv.number, 0)} cents); refund them first"
            )
        if inv.balance_cents is not None and inv.balance_cents > total:
            raise ImportProblem(f"{where}.balance_cents: more than the total ({total} cents)")
        if inv.pdf_base64 is not None:
            invoice_pdf(inv.pdf_base64, where)
        if paid.get(inv.number, 0) > total:
            raise ImportProblem(
                f"invoices[{i}] ({inv.number}): payments ({paid[inv.number]} cents) exceed the total "
                f"({total} cents)"
            )
    _unique(data.memberships, "id", "memberships")
    for i, m in enumerate(data.memberships):
        where = f"memberships[{i}] ({m.id})"
        if m.customer not in customers:
            raise ImportProblem(f"{where}.customer: unknown customer {m.customer!r}")
        if location_owner.get(m.location) != m.customer:
            raise ImportProblem(
                f"{where}.location: unknown location {m.location!r} for this customer"
            )
        check_membership(m, where)
    _unique(data.appointments, "id", "appointments")
    for i, appt in enumerate(data.appointments):
        where = f"appointments[{i}] ({appt.id})"
        if appt.customer not in customers:
            raise ImportProblem(f"{where}.customer: unknown customer {appt.customer!r}")
        if location_owner.get(appt.location) != appt.customer:
            raise ImportProblem(
                f"{where}.location: unknown location {appt.location!r} for this customer"
            )
        if appt.job is not None and job_customer.get(appt.job) != appt.customer:
            raise ImportProblem(f"{where}.job: unknown job {appt.job!r} for this customer")
        check_appointment(appt, where)


def check_appointment(a: AppointmentIn, where: str) -> None:
    """An appointment's own rules: it ends after it starts, within a few days."""
    if a.ends_at <= a.starts_at:
        raise ImportProblem(f"{where}.ends_at: must be after starts_at")
    if (a.ends_at - a.starts_at).days >= 14:
        raise ImportProblem(f"{where}.ends_at: an appointment lasts less than 14 days")


def check_job(j: JobIn, where: str) -> None:
    """A job's own rules (its references are checked by the caller)."""
    if j.status == "completed" and j.completed_at is None:
        raise ImportProblem(f"{where}.completed_at: required when status is completed")


def check_membership(m: MembershipIn, where: str) -> None:
    """A membership's own rules: dates in order, each visit's window in order."""
    if m.end_date and m.end_date < m.start_date:
        raise ImportProblem(f"{where}.end_date: before start_date")
    for k, v in enumerate(m.visits):
        if v.window_end <= v.window_start:
            raise ImportProblem(f"{where}.visits[{k}].window_end: must be after window_start")


def invoice_pdf(encoded: str, where: str) -> bytes:
    """An invoice's own PDF from base64, or ImportProblem naming `where`: a PDF file."""
    try:
        pdf = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImportProblem(f"{where}.pdf_base64: not valid base64") from None
    if not pdf.startswith(b"%PDF-"):
        raise ImportProblem(f"{where}.pdf_base64: not a PDF file (it does not start with %PDF-)")
    return pdf


def expected_balance(total: int, paid: int, balance_cents: int | None) -> int:
    """What an invoice still owes: its total less what was paid (net of refunds), or less
    when the business says so (`balance_cents`); never below 0."""
    balance = max(total - paid, 0)
    return balance if balance_cents is None else min(balance, balance_cents)


def invoice_total(inv: InvoiceIn) -> int:
    """Total of an invoice's lines in cents (quantity × unit price, rounded half up)."""
    return sum(line_amount(line) for line in inv.lines)


def line_amount(line: LineIn) -> int:
    return int(round(line.quantity * line.unit_price_cents + 1e-9))


CHUNK = 400


async def _insert(table: type[Table], rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        await table.insert(*[table(**row) for row in chunk]).run()


async def _ids(table: type[Table], tenant_id: int, key: str) -> dict[str, int]:
    meta = table._meta
    rows = (
        await table.select(meta.primary_key, meta.get_column_by_name(key))
        .where(meta.get_column_by_name("tenant") == tenant_id)
        .run()
    )
    return {r[key]: r["id"] for r in rows}


async def _logo(encoded: str) -> LogoFiles:
    """The business's logo as the office's upload makes it: 50 px high, with its width and
    a copy 100 px high for 2× screens when the image is that large."""
    logo, problem = await read_logo(base64.b64decode(encoded), "logo.png", "image/png")
    if logo is None:
        raise ImportProblem(f"business.logo_png_base64: {problem}")
    return logo


async def import_data(data: ImportFile) -> int:
    """Write a checked import file in one transaction; returns the new business's id."""
    b = data.business
    # Hash passwords before the transaction: hashing is slow and needs no lock.
    staff_hashes = [
        s.password_hash or (await hash_password(s.password) if s.password else "")
        for s in data.staff
    ]
    account_hashes = {
        c.id: c.portal_account.password_hash or await hash_password(c.portal_account.password or "")
        for c in data.customers
        if c.portal_account is not None
    }
    logo = await _logo(b.logo_png_base64) if b.logo_png_base64 else None
    async with db_engine.transaction():
        if await t.Tenant.exists().where(t.Tenant.host == b.host).run():
            raise ImportProblem(f"business.host: {b.host!r} is already used by another business")
        portal = b.portal
        rows = await t.Tenant.insert(
            t.Tenant(
                host=b.host,
                name=b.name,
                email=b.email.lower(),
                phone=b.phone,
                time_zone=b.time_zone,
                currency=b.currency,
                logo=logo.png if logo else None,
                logo_2x=logo.png_2x or None if logo else None,
                logo_width=logo.width if logo else 0,
                logo_sharp=bool(logo and logo.png_2x),
                logo_content_type="image/png" if logo else "",
                logo_version=1 if logo else 0,
                legal_accepted_at=portal.legal_accepted_at,
                legal_accepted_by=portal.legal_accepted_by,
                portal_enabled=portal.enabled,
                scheduler_enabled=portal.scheduler_enabled,
                service_types=json.dumps(portal.service_types),
                memberships_enabled=portal.memberships_enabled,
                membership_statuses=json.dumps(sorted(set(portal.membership_statuses))),
                recurring_service_message=portal.recurring_service_message,
                payment_account_id=portal.payment_account,
                payments_enabled=portal.payments_enabled,
            )
        ).run()
        tenant_id: int = rows[0]["id"]
        tid = {"tenant": tenant_id}

        await _insert(
            t.BusinessUnit,
            [
                {**tid, "name": u.name, "invoices_downloadable": u.invoices_downloadable}
                for u in data.business_units
            ],
        )
        unit_ids_by_name = await _ids(t.BusinessUnit, tenant_id, "name")
        unit_ids = {u.id: unit_ids_by_name[u.name] for u in data.business_units}
        # The file's business unit ids are kept (the table has no column for them): the
        # sync API refers to units by them, and `portal export` writes them back.
        await _insert(
            t.SyncRecord,
            [
                {**tid, "kind": "business_unit", "external_id": u.id, "row_id": unit_ids[u.id]}
                for u in data.business_units
            ],
        )
        await _insert(
            t.StaffUser,
            [
                {
                    **tid,
                    "email": s.email.lower(),
                    "name": s.name,
                    "role": s.role,
                    "password_hash": h,
                    "disabled_at": s.disabled_at,
                }
                for s, h in zip(data.staff, staff_hashes, strict=True)
            ],
        )
        await _insert(
            t.Customer,
            [
                {**tid, "external_id": c.id, "name": c.name, "kind": c.kind, "phone": c.phone}
                for c in data.customers
            ],
        )
        customer_ids = await _ids(t.Customer, tenant_id, "external_id")
        await _insert(
            t.CustomerEmail,
            [
                {**tid, "customer": customer_ids[c.id], "email": e.lower()}
                for c in data.customers
                for e in dict.fromkeys(x.lower() for x in c.emails)
            ],
        )
        await _insert(
            t.Location,
            [
                {
                    **tid,
                    "customer": customer_ids[c.id],
                    "external_id": loc.id,
                    "name": loc.name,
                    "street": loc.street,
                    "city": loc.city,
                    "state": loc.state,
                    "zip": loc.zip,
                }
                for c in data.customers
                for loc in c.locations
            ],
        )
        location_ids = await _ids(t.Location, tenant_id, "external_id")
        now = datetime.now(UTC)
        await _insert(
            t.PortalAccount,
            [
                {
                    **tid,
                    "email": c.portal_account.email.lower(),
                    "password_hash": account_hashes[c.id],
                    "confirmed_at": now,
                    "password_changed_at": now,
                }
                for c in data.customers
                if c.portal_account is not None
            ],
        )
        await _insert(
            t.Job,
            [
                {
                    **tid,
                    "customer": customer_ids[j.customer],
                    "location": location_ids[j.location],
                    "business_unit": unit_ids[j.business_unit],
                    "number": j.number,
                    "summary": j.summary,
                    "status": j.status,
                    "scheduled_start": j.scheduled_start,
                    "scheduled_end": j.scheduled_end,
                    "completed_at": j.completed_at,
                }
                for j in data.jobs
            ],
        )
        job_ids = await _ids(t.Job, tenant_id, "number")
        jobs_by_number = {j.number: j for j in data.jobs}
        invoices_by_number = {inv.number: inv for inv in data.invoices}
        paid: dict[str, int] = {}
        for p in data.payments:
            for a in p.allocations:
                if p.status == "succeeded":
                    paid[a.invoice] = paid.get(a.invoice, 0) + a.amount_cents - a.refunded_cents
        invoice_rows = []
        for inv in data.invoices:
            job = jobs_by_number[inv.job]
            total = invoice_total(inv)
            invoice_rows.append(
                {
                    **tid,
                    "customer": customer_ids[job.customer],
                    "job": job_ids[inv.job],
                    "location": location_ids[job.location],
                    "business_unit": unit_ids[job.business_unit],
                    "number": inv.number,
                    "invoice_date": inv.date,
                    "due_date": inv.due_date,
                    "summary": inv.summary or job.summary,
                    "total_cents": total,
                    "balance_cents": 0
                    if inv.status == "void"
                    else expected_balance(total, paid.get(inv.number, 0), inv.balance_cents),
                    "status": inv.status,
                }
            )
        await _insert(t.Invoice, invoice_rows)
        invoice_ids = await _ids(t.Invoice, tenant_id, "number")
        await _insert(
            t.InvoiceDocument,
            [
                {
                    **tid,
                    "invoice": invoice_ids[inv.number],
                    "pdf": invoice_pdf(inv.pdf_base64, inv.number),
                }
                for inv in data.invoices
                if inv.pdf_base64 is not None
            ],
        )
        await _insert(
            t.InvoiceLine,
            [
                {
                    **tid,
                    "invoice": invoice_ids[inv.number],
                    "position": n,
                    "description": line.description,
                    "quantity": line.quantity,
                    "unit_price_cents": line.unit_price_cents,
                    "amount_cents": line_amount(line),
                }
                for inv in data.invoices
                for n, line in enumerate(inv.lines)
            ],
        )
        await _insert(
            t.Payment,
            [
                {
                    **tid,
                    "customer": customer_ids[p.customer],
                    "amount_cents": sum(a.amount_cents for a in p.allocations),
                    "kind": "full",
                    "status": p.status,
                    "failure_reason": p.failure_reason,
                    "refunded_at": p.refunded_at,
                    "refunded_cents": sum(a.refunded_cents for a in p.allocations),
                    "idempotency_key": f"import:{p.reference}",
                    "gateway": "import",
                    "payment_account_id": p.payment_account,
                    "gateway_ref": p.reference,
                    "card_brand": p.card_brand,
                    "card_last4": p.card_last4,
                    "source": "import",
                    "created_at": p.paid_at,
                    "completed_at": p.paid_at if p.status != "pending" else None,
                }
                for p in data.payments
            ],
        )
        payment_rows = (
            await t.Payment.select(t.Payment.id, t.Payment.gateway_ref)
            .where((t.Payment.tenant == tenant_id) & (t.Payment.gateway == "import"))
            .run()
        )
        payment_ids = {r["gateway_ref"]: r["id"] for r in payment_rows}
        await _insert(
            t.PaymentAllocation,
            [
                {
                    **tid,
                    "payment": payment_ids[p.reference],
                    "invoice": invoice_ids[a.invoice],
                    "amount_cents": a.amount_cents,
                    "refunded_cents": a.refunded_cents,
                }
                for p in data.payments
                for a in p.allocations
            ],
        )
        await _insert(
            t.PaymentRefund,
            [
                {
                    **tid,
                    "payment": payment_ids[p.reference],
                    "amount_cents": r.amount_cents,
                    "reason": r.reason,
                    "status": r.status,
                    "source": r.source,
                    "actor": r.actor,
                    "gateway_refund_id": r.reference,
                    "failure_reason": r.failure_reason,
                    "created_at": r.created_at,
                    "completed_at": r.completed_at,
                }
                for p in data.payments
                for r in p.refunds
            ],
        )
        await _insert(
            t.AuditEvent,
            [
                {
                    **tid,
                    "job": job_ids[invoices_by_number[a.invoice].job],
                    "invoice": invoice_ids[a.invoice],
                    "actor": "Imported record",
                    "action": "payment",
                    "detail": f"Payment {p.reference} applied to invoice {a.invoice}",
                    "amount_cents": a.amount_cents,
                    "reference": p.reference,
                    "created_at": p.paid_at,
                }
                for p in data.payments
                if p.status == "succeeded"
                for a in p.allocations
            ],
        )
        await _insert(
            t.Membership,
            [
                {
                    **tid,
                    "customer": customer_ids[m.customer],
                    "location": location_ids[m.location],
                    "external_id": m.id,
                    "type_name": m.type,
                    "status": m.status,
                    "start_date": m.start_date,
                    "end_date": m.end_date,
                    "card_brand": m.card.brand if m.card else "",
                    "card_last4": m.card.last4 if m.card else "",
                }
                for m in data.memberships
            ],
        )
        membership_ids = await _ids(t.Membership, tenant_id, "external_id")
        await _insert(
            t.Visit,
            [
                {
                    **tid,
                    "membership": membership_ids[m.id],
                    "visit_date": v.date,
                    "window_start": v.window_start,
                    "window_end": v.window_end,
                    "description": v.description,
                    "status": v.status,
                }
                for m in data.memberships
                for v in m.visits
            ],
        )
        await _insert(
            t.Appointment,
            [
                {
                    **tid,
                    "customer": customer_ids[a.customer],
                    "location": location_ids[a.location],
                    "external_id": a.id,
                    "service_type": a.service_type,
                    "status": a.status,
                    "starts_at": a.starts_at,
                    "ends_at": a.ends_at,
                    "job": job_ids[a.job] if a.job is not None else None,
                }
                for a in data.appointments
            ],
        )
    return tenant_id


async def import_file(raw: bytes | str) -> int:
    """Parse, check and import a file's contents; raises `ImportProblem` naming the problem."""
    return await import_data(parse(raw))

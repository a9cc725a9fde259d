"""Office › Bookings: customers' appointment requests, booked as jobs or dismissed.

Booking is safe under concurrency: the request is claimed with a conditional update
(`status = 'new'`) inside a write transaction, and the unique index on
`job.booking_request` backs it up, so two staff booking the same request at once make
exactly one job; the other is told who booked it. The transaction is the caller's
(`portal.appointments.book` / `dismiss`), which queues the customer's email in it: this
module only reads and writes rows.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from piccolo.custom_types import Combinable

from portal.db import events
from portal.db.engine import current_engine
from portal.db.rows import TenantRow
from portal.db.tables import (
    AuditEvent,
    BookingRequest,
    BusinessUnit,
    CustomerEmail,
    Job,
    Tenant,
)
from portal.formatting import format_date, format_day

# Arrival windows, in the business's local time: (label, start hour, end hour).
WINDOWS: dict[str, tuple[str, int, int]] = {
    "morning": ("Morning, 8 AM – 12 PM", 8, 12),
    "afternoon": ("Afternoon, 12 PM – 5 PM", 12, 17),
    "any": ("Any time, 8 AM – 5 PM", 8, 17),
}
PREFERENCE_LABELS = {"morning": "morning", "afternoon": "afternoon", "any": "any time"}
PAGE_SIZE = 20


def _hour_text(hour: int) -> str:
    return f"{hour % 12 or 12} {'AM' if hour < 12 else 'PM'}"


def arrival_text(window: str) -> str:
    """ "between 8 AM and 12 PM" for the booking-confirmed email."""
    _, start, end = WINDOWS[window]
    return f"between {_hour_text(start)} and {_hour_text(end)}"


def appointment_text(day: date) -> str:
    """ "Monday, Dec 7, 2026" for the booking-confirmed email."""
    return f"{day:%A}, {format_date(day)}"


def preferred_windows(raw: str) -> list[dict[str, Any]]:
    """A request's preferred windows, readable, skipping anything malformed."""
    try:
        items = json.loads(raw or "[]")
    except ValueError:
        return []
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            day = date.fromisoformat(str(item.get("date", "")))
        except ValueError:
            continue
        window = str(item["window"]) if item.get("window") in WINDOWS else "any"
        out.append({"date": day, "window": window, "label": PREFERENCE_LABELS[window]})
    return out


def preferences_text(windows: list[dict[str, Any]]) -> str:
    """ "Mon, Dec 7, 2026 (morning); Tue, Dec 8, 2026 (any time)" """
    return "; ".join(f"{format_day(w['date'])} ({w['label']})" for w in windows)


def address(row: dict[str, Any], prefix: str = "location_") -> str:
    parts = [row.get(f"{prefix}street", ""), row.get(f"{prefix}city", "")]
    return ", ".join(p for p in parts if p)


COLUMNS = [
    BookingRequest.id,
    BookingRequest.customer,
    BookingRequest.location,
    BookingRequest.account_email,
    BookingRequest.service_type,
    BookingRequest.preferred_windows,
    BookingRequest.notes,
    BookingRequest.status,
    BookingRequest.dismiss_reason,
    BookingRequest.created_at,
    BookingRequest.handled_at,
    BookingRequest.handled_by,
    BookingRequest.customer.name.as_alias("customer_name"),
    BookingRequest.customer.external_id.as_alias("customer_number"),
    BookingRequest.location.name.as_alias("location_name"),
    BookingRequest.location.street.as_alias("location_street"),
    BookingRequest.location.city.as_alias("location_city"),
]


def _row(row: dict[str, Any]) -> dict[str, Any]:
    row["windows"] = preferred_windows(row["preferred_windows"])
    row["address"] = address(row)
    return row


async def list_requests(
    tenant_id: int, status: str = "all", after: int | None = None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], int | None]:
    """Appointment requests, newest first, a page at a time (keyset on created_at, id).

    Returns the page and the id to continue after (None on the last page). The booked
    job's number comes in one more query for the whole page.
    """
    where: Combinable = BookingRequest.tenant == tenant_id
    if status in ("new", "booked", "dismissed"):
        where &= BookingRequest.status == status
    if after is not None:
        mark = (
            await BookingRequest.select(BookingRequest.created_at)
            .where((BookingRequest.tenant == tenant_id) & (BookingRequest.id == after))
            .first()
            .run()
        )
        if mark is not None:
            moment = mark["created_at"]
            where &= (BookingRequest.created_at < moment) | (
                (BookingRequest.created_at == moment) & (BookingRequest.id < after)
            )
    rows = (
        await BookingRequest.select(*COLUMNS)
        .where(where)
        .order_by(BookingRequest.created_at, ascending=False)
        .order_by(BookingRequest.id, ascending=False)
        .limit(limit + 1)
        .run()
    )
    more = len(rows) > limit
    rows = [_row(r) for r in rows[:limit]]
    booked = [r["id"] for r in rows if r["status"] == "booked"]
    jobs = {}
    if booked:
        job_rows = (
            await Job.select(Job.id, Job.booking_request, Job.number, Job.scheduled_start)
            .where((Job.tenant == tenant_id) & Job.booking_request.is_in(booked))
            .run()
        )
        jobs = {j["booking_request"]: j for j in job_rows}
    for r in rows:
        r["job"] = jobs.get(r["id"])
    return rows, (rows[-1]["id"] if more and rows else None)


async def get_request(tenant_id: int, request_id: int) -> dict[str, Any] | None:
    """One appointment request of this business, or None (another business's is None too)."""
    row = (
        await BookingRequest.select(*COLUMNS)
        .where((BookingRequest.tenant == tenant_id) & (BookingRequest.id == request_id))
        .first()
        .run()
    )
    if row is None:
        return None
    row = _row(row)
    row["job"] = (
        await Job.select(Job.id, Job.number, Job.scheduled_start)
        .where((Job.tenant == tenant_id) & (Job.booking_request == request_id))
        .first()
        .run()
    )
    return row


def local_today(tenant: TenantRow) -> date:
    return datetime.now(ZoneInfo(tenant["time_zone"])).date()


def default_slot(tenant: TenantRow, request: dict[str, Any]) -> tuple[str, str]:
    """The first preferred window that is not in the past (date, window), for the form."""
    today = local_today(tenant)
    for w in request["windows"]:
        if w["date"] >= today:
            return w["date"].isoformat(), w["window"]
    return (today + timedelta(days=1)).isoformat(), "morning"


@dataclass(frozen=True)
class Booking:
    """A checked Book-job form (`portal.appointments.check_booking`): what to book."""

    day: date
    window: str
    unit_id: int
    summary: str


def scheduled_times(tenant: TenantRow, day: date, window: str) -> tuple[datetime, datetime]:
    """The job's start and end in UTC, from the business's local date and arrival window."""
    zone = ZoneInfo(tenant["time_zone"])
    _, start, end = WINDOWS[window]
    return (
        datetime.combine(day, time(start), tzinfo=zone).astimezone(UTC),
        datetime.combine(day, time(end), tzinfo=zone).astimezone(UTC),
    )


class AlreadyHandled(Exception):
    """Someone else booked or dismissed the request first."""

    def __init__(self, request: dict[str, Any] | None) -> None:
        self.request = request


def handled_message(request: dict[str, Any] | None, tenant: TenantRow) -> str:
    """Why a request can no longer be booked or dismissed."""
    if request is None:
        return "This request no longer exists."
    who = request["handled_by"] or "someone else"
    when = request["handled_at"]
    when_text = f" ({format_date(when, tenant['time_zone'])})" if when else ""
    if request["status"] == "booked":
        job = request.get("job")
        number = f" as job {job['number']}" if job else ""
        return f"This request was already booked{number} by {who}{when_text}. Nothing was changed."
    return f"This request was already dismissed by {who}{when_text}. Nothing was changed."


async def _next_job_number(tenant_id: int) -> str:
    """The next free job number "J-<n>" (call with the business's numbering locked)."""
    rows = await Job.raw(
        "SELECT number FROM job WHERE tenant = {} AND number LIKE {} "
        "ORDER BY length(number) DESC, number DESC LIMIT 1",
        tenant_id,
        "J-%",
    ).run()
    tail = rows[0]["number"][2:] if rows else ""
    n = int(tail) + 1 if tail.isdigit() else 1001
    while await Job.exists().where((Job.tenant == tenant_id) & (Job.number == f"J-{n}")).run():
        n += 1
    return f"J-{n}"


async def _lock_numbering(tenant_id: int) -> None:
    """Serialize job numbering per business. SQLite's write transaction already does."""
    if current_engine().engine_type != "sqlite":
        await Tenant.raw("SELECT id FROM tenant WHERE id = {} FOR UPDATE", tenant_id).run()


async def book_job(
    tenant: TenantRow, request_id: int, booking: Booking, staff_email: str
) -> tuple[str, dict[str, Any]]:
    """Book a job from a request, inside the caller's transaction (`portal.appointments.book`,
    which emails the customer in it); returns the job number and the request.

    Raises `AlreadyHandled(None)` when the request is not new any more, or when the unique
    index on `job.booking_request` caught a second job for it (roll back then).
    """
    start, end = scheduled_times(tenant, booking.day, booking.window)
    claimed = (
        await BookingRequest.update(
            {
                BookingRequest.status: "booked",
                BookingRequest.handled_at: datetime.now(UTC),
                BookingRequest.handled_by: staff_email,
            }
        )
        .where(
            (BookingRequest.tenant == tenant["id"])
            & (BookingRequest.id == request_id)
            & (BookingRequest.status == "new")
        )
        .returning(BookingRequest.id)
        .run()
    )
    if not claimed:
        raise AlreadyHandled(None)
    request = await get_request(tenant["id"], request_id)
    assert request is not None
    await _lock_numbering(tenant["id"])
    number = await _next_job_number(tenant["id"])
    try:
        rows = await Job.insert(
            Job(
                tenant=tenant["id"],
                customer=request["customer"],
                location=request["location"],
                business_unit=booking.unit_id,
                booking_request=request_id,
                number=number,
                summary=booking.summary,
                status="scheduled",
                scheduled_start=start,
                scheduled_end=end,
            )
        ).run()
    except (sqlite3.IntegrityError, asyncpg.UniqueViolationError) as exc:
        # The unique index on job.booking_request caught a second job for the request.
        if "booking_request" not in str(exc):
            raise
        raise AlreadyHandled(None) from None
    await events.emit(
        tenant["id"],
        "booking.booked",
        {
            "booking_request_id": request_id,
            "customer": await events.customer_source_id(tenant["id"], request["customer"]),
            "job": number,
            "scheduled_start": start.isoformat(),
            "scheduled_end": end.isoformat(),
        },
    )
    await AuditEvent.insert(
        AuditEvent(
            tenant=tenant["id"],
            job=rows[0]["id"],
            actor=staff_email,
            action="booked",
            detail=f"Booked from the customer's appointment request for {request['service_type']}",
        )
    ).run()
    return number, request


async def customer_email(tenant_id: int, request: dict[str, Any]) -> str:
    """Where to email about a request: the account that made it, else the customer's
    first contact email ("" when the record has none)."""
    if request["account_email"]:
        return str(request["account_email"])
    return await _first_email(tenant_id, request["customer"])


async def _first_email(tenant_id: int, customer_id: int) -> str:
    row = (
        await CustomerEmail.select(CustomerEmail.email)
        .where((CustomerEmail.tenant == tenant_id) & (CustomerEmail.customer == customer_id))
        .order_by(CustomerEmail.id)
        .first()
        .run()
    )
    return row["email"] if row else ""


async def dismiss_request(
    tenant: TenantRow, request_id: int, reason: str, staff_email: str
) -> dict[str, Any]:
    """Close a request with a reason, inside the caller's transaction
    (`portal.appointments.dismiss`, which emails the reason in it); returns the request.
    Raises `AlreadyHandled(None)` if it is not new any more."""
    rows = await (
        BookingRequest.update(
            {
                BookingRequest.status: "dismissed",
                BookingRequest.dismiss_reason: reason,
                BookingRequest.handled_at: datetime.now(UTC),
                BookingRequest.handled_by: staff_email,
            }
        )
        .where(
            (BookingRequest.tenant == tenant["id"])
            & (BookingRequest.id == request_id)
            & (BookingRequest.status == "new")
        )
        .returning(BookingRequest.id)
        .run()
    )
    if not rows:
        raise AlreadyHandled(None)
    request = await get_request(tenant["id"], request_id)
    assert request is not None
    await events.emit(
        tenant["id"],
        "booking.dismissed",
        {
            "booking_request_id": request_id,
            "customer": await events.customer_source_id(tenant["id"], request["customer"]),
        },
    )
    return request


async def units(tenant_id: int) -> list[dict[str, Any]]:
    """The business units a job can be booked under."""
    return (
        await BusinessUnit.select(BusinessUnit.id, BusinessUnit.name)
        .where(BusinessUnit.tenant == tenant_id)
        .order_by(BusinessUnit.name)
        .run()
    )


async def latest_request_for_preview(tenant_id: int) -> dict[str, Any] | None:
    """The newest appointment request, to preview booking emails with real data."""
    rows, _ = await list_requests(tenant_id, limit=1)
    return rows[0] if rows else None

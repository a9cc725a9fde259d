"""Appointment requests and their emails: a customer's request from the Scheduler tab,
saved together with its confirmation email or not at all, and the office's answer under
Bookings — a job booked or the request dismissed with a reason, each with its email to the
customer in the same transaction. The rows are `db/bookings.py` and `db/office_bookings.py`;
the emails' wording is the business's (`portal.mail.notifications`)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from portal.config import Settings
from portal.db import bookings, office_bookings
from portal.db.engine import transaction
from portal.db.office_bookings import WINDOWS, AlreadyHandled, Booking
from portal.db.rows import TenantRow
from portal.formatting import day_text
from portal.forms import Checked, count_text, multi_line, one_line, parse_day
from portal.mail.notifications import common_values, queue_notification
from portal.mail.outbox import queue_email

MAX_DAYS_AHEAD = 365  # a job is booked at most this many days ahead
SUMMARY_MAX = 300
REASON_MAX = 500
REASON_READ = 2000  # characters of a dismissal reason read from the form (plus one)

# The customer's request form (the Scheduler tab).
OTHER = "Other"
TIMES_OF_DAY = {"any": "Any time", "morning": "Morning", "afternoon": "Afternoon"}
NOTES_MAX = 1000
REQUEST_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
FORM_UNREADABLE = "This form could not be read. Check your choices and send it again."


async def request_appointment(
    settings: Settings, tenant: TenantRow, new: bookings.NewRequest, email_context: dict[str, Any]
) -> tuple[int | None, bool]:
    """Save the request and queue its confirmation email, together or not at all.

    Returns (request id, created). A second submit of the same form (same
    idempotency key), even one racing the first, creates nothing and returns the
    first request's id; a key that belongs to another customer's request returns
    (None, False).
    """
    async with transaction():
        request_id = await bookings.insert_request(tenant["id"], new)
        if request_id is not None:
            await queue_email(
                settings, tenant, new.account_email, "booking_received", email_context
            )
            return request_id, True
    existing = await bookings.request_by_key(tenant["id"], new.customer_id, new.idempotency_key)
    return existing, False


# --- the customer's request form (the Scheduler tab) -----------------------------------------------


@dataclass
class RequestForm:
    """What the customer typed (kept when the form comes back with problems)."""

    location: str = ""
    service_type: str = ""
    dates: list[str] = field(default_factory=lambda: ["", "", ""])
    windows: list[str] = field(default_factory=lambda: ["any", "any", "any"])
    notes: str = ""
    key: str = field(default_factory=lambda: secrets.token_urlsafe(24))


def read_form(values: dict[str, str]) -> RequestForm:
    """The request form's fields, trimmed to sane lengths (the notes are checked, not cut)."""
    return RequestForm(
        location=values.get("location", "")[:20],
        service_type=values.get("service_type", "")[:200],
        dates=[values.get(f"date_{i}", "")[:40] for i in (1, 2, 3)],
        windows=[values.get(f"window_{i}", "any")[:20] for i in (1, 2, 3)],
        notes=values.get("notes", "").replace("\x00", "").replace("\r\n", "\n").strip(),
        key=values.get("request_key", "")[:100],
    )


def clean_location(
    value: str, locations: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, str | None]:
    """One of the customer's own service locations, by id (another's is not among them)."""
    location = next((loc for loc in locations if str(loc["id"]) == value.strip()), None)
    if location is None:
        if not value:
            return None, "Choose the service location."
        return None, "Choose one of your service locations."
    return location, None


def clean_service_type(value: str, service_types: list[str]) -> tuple[str, str | None]:
    """One of the business's service types, or `OTHER`."""
    return value, None if value in [*service_types, OTHER] else "Choose what the visit is for."


def clean_time_of_day(value: str) -> tuple[str, str | None]:
    """A preferred time of day (`TIMES_OF_DAY`)."""
    return value, None if value in TIMES_OF_DAY else "Choose morning, afternoon or any time."


def clean_preferred_day(value: str, today: date, max_days: int) -> tuple[date | None, str | None]:
    """A preferred date (typed or picked): from today, at most `max_days` ahead."""
    day = parse_day(value)
    if day is None:
        return None, "Enter the date like 2026-12-03."
    if day < today:
        return day, f"That date has passed. Choose {day_text(today, today)} or later."
    last = today + timedelta(days=max_days)
    if day > last:
        return day, (
            f"We take requests up to {max_days} days ahead. "
            f"Choose a date by {day_text(last, today)}."
        )
    return day, None


def clean_notes(value: str, service_type: str) -> tuple[str, str | None]:
    """The notes: up to `NOTES_MAX` characters, and what is needed when the visit is for
    `OTHER`."""
    if len(value) > NOTES_MAX:
        return value, (
            f"Notes can be up to {NOTES_MAX:,} characters; yours have {len(value):,}. "
            "Please shorten them."
        )
    if service_type == OTHER and not value:
        return value, "Tell us in the notes what you need done."
    return value, None


def clean_request_key(value: str) -> tuple[str, str | None]:
    """The form's own idempotency key (problem "form": the form itself is not right)."""
    return value, None if REQUEST_KEY.match(value) else FORM_UNREADABLE


def check_request(
    form: RequestForm,
    locations: list[dict[str, Any]],
    service_types: list[str],
    today: date,
    max_days: int,
) -> Checked[dict[str, Any]]:
    """Check a request (`forms.Checked`): the clean values to save, the form to show again
    (under "form": dates as the date picker writes them), the problems by field; a problem
    means save nothing. The first choice's date is needed, no choice twice."""
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}

    def keep(name: str, problem: str | None) -> None:
        if problem:
            problems[name] = problem

    clean["location"], problem = clean_location(form.location, locations)
    keep("location", problem)
    clean["service_type"], problem = clean_service_type(form.service_type, service_types)
    keep("service_type", problem)
    shown = RequestForm(
        form.location, form.service_type, list(form.dates), list(form.windows), form.notes, form.key
    )
    choices: list[dict[str, str]] = []
    for i, (raw, window) in enumerate(zip(form.dates, form.windows, strict=True), start=1):
        if not raw.strip():
            if i == 1:
                problems["date_1"] = "Choose a date for your first choice."
            continue
        day, day_problem = clean_preferred_day(raw, today, max_days)
        if day is not None:  # shown again as the date picker's format
            shown.dates[i - 1] = day.isoformat()
        keep(f"window_{i}", clean_time_of_day(window)[1])
        if day_problem is None and day is not None:
            choice = {"date": day.isoformat(), "window": window}
            if choice in choices:
                day_problem = "You already chose this date and time of day."
            else:
                choices.append(choice)
        keep(f"date_{i}", day_problem)
    clean["preferred_windows"] = choices
    clean["notes"], problem = clean_notes(form.notes, form.service_type)
    keep("notes", problem)
    keep("form", clean_request_key(form.key)[1])
    return Checked(clean, problems=problems, values={"form": shown})


# --- the office's Book-job and Dismiss forms ------------------------------------------------------


def clean_visit_day(value: str, today: date) -> tuple[date | None, str | None]:
    """The visit's date: from today, within a year (`MAX_DAYS_AHEAD` days)."""
    try:
        day = date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None, "Enter the date of the visit, like 2026-12-07."
    if day < today:
        return day, "Choose today or a later date."
    if day > today + timedelta(days=MAX_DAYS_AHEAD):
        return day, "Choose a date within the next year."
    return day, None


def clean_window(value: str) -> tuple[str, str | None]:
    """An arrival window's key (`office_bookings.WINDOWS`)."""
    return value, None if value in WINDOWS else "Choose an arrival window."


def clean_unit(value: str, units: list[dict[str, Any]]) -> tuple[int | None, str | None]:
    """One of the business's own units, by id (another business's is not among them)."""
    unit_id: int | None = {str(u["id"]): u["id"] for u in units}.get(value)
    return unit_id, None if unit_id is not None else "Choose a business unit."


def clean_summary(value: str) -> tuple[str, str | None]:
    """The job's summary: one line, up to `SUMMARY_MAX` characters."""
    summary = one_line(value)
    if not summary:
        return summary, "Describe the job in a few words."
    if len(summary) > SUMMARY_MAX:
        return summary, f"Use at most {SUMMARY_MAX} characters (this has {len(summary)})."
    return summary, None


def check_booking(
    tenant: TenantRow, form: dict[str, str], units: list[dict[str, Any]]
) -> Checked[Booking | None]:
    """Check a Book-job form (`forms.Checked`): the booking (None while there are
    problems), the form to show again, the problems by field."""
    day, day_problem = clean_visit_day(form.get("date", ""), office_bookings.local_today(tenant))
    window, window_problem = clean_window(form.get("window", ""))
    unit_id, unit_problem = clean_unit(form.get("business_unit", ""), units)
    summary, summary_problem = clean_summary(form.get("summary", ""))
    problems = {
        field: problem
        for field, problem in (
            ("date", day_problem),
            ("window", window_problem),
            ("business_unit", unit_problem),
            ("summary", summary_problem),
        )
        if problem
    }
    booking = None
    if not problems and day is not None and unit_id is not None:
        booking = Booking(day, window, unit_id, summary)
    return Checked(booking, problems=problems, values=dict(form))


def clean_reason(value: str) -> tuple[str, str | None]:
    """Why a request is dismissed (the customer sees it): a few lines, up to 500 characters."""
    reason = multi_line(value)
    if not reason:
        return reason, "Say why the request is dismissed (the customer sees it)."
    if len(reason) > REASON_MAX:
        count = count_text(len(value) if len(value) > REASON_READ else len(reason), REASON_READ)
        return reason, f"Use at most {REASON_MAX} characters (this has {count})."
    return reason, None


async def book(
    settings: Settings, tenant: TenantRow, request_id: int, booking: Booking, staff_email: str
) -> str:
    """Book a job from a request and email the customer the booking, together or not at
    all; returns the job number. Call `portal.mail.worker.wake()` after.

    Raises `AlreadyHandled` (with the request as it is now) when someone else booked or
    dismissed it first: nothing is written.
    """
    try:
        async with transaction():
            number, request = await office_bookings.book_job(
                tenant, request_id, booking, staff_email
            )
            to = await office_bookings.customer_email(tenant["id"], request)
            if to:
                await queue_notification(
                    settings,
                    tenant,
                    to,
                    "booking_confirmed",
                    {
                        **common_values(settings, tenant, request["customer_name"]),
                        "ServiceType": request["service_type"],
                        "ServiceAddress": request["address"],
                        "AppointmentDate": office_bookings.appointment_text(booking.day),
                        "ArrivalWindow": office_bookings.arrival_text(booking.window),
                    },
                )
    except AlreadyHandled:
        raise AlreadyHandled(await office_bookings.get_request(tenant["id"], request_id)) from None
    return number


async def dismiss(
    settings: Settings, tenant: TenantRow, request_id: int, reason: str, staff_email: str
) -> None:
    """Close a request with a reason and email the reason to the customer, together or not
    at all. Raises `AlreadyHandled` (with the request as it is now) if it is not new any
    more. Call `portal.mail.worker.wake()` after."""
    try:
        async with transaction():
            request = await office_bookings.dismiss_request(tenant, request_id, reason, staff_email)
            to = await office_bookings.customer_email(tenant["id"], request)
            if to:
                await queue_notification(
                    settings,
                    tenant,
                    to,
                    "booking_dismissed",
                    {
                        **common_values(settings, tenant, request["customer_name"]),
                        "ServiceType": request["service_type"],
                        "ServiceAddress": request["address"],
                        "Reason": reason,
                    },
                )
    except AlreadyHandled:
        raise AlreadyHandled(await office_bookings.get_request(tenant["id"], request_id)) from None

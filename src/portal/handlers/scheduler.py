"""Scheduler tab: the Web Appointment Scheduler.

A customer requests an appointment (service location, what the visit is for,
one to three preferred dates with a time of day, notes); the office books a
job from the request under Bookings. The tab lists the customer's requests
with their status and their upcoming booked appointments.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException

from portal import appointments
from portal.appointments import (
    FORM_UNREADABLE,
    NOTES_MAX,
    OTHER,
    TIMES_OF_DAY,
    RequestForm,
    check_request,
    read_form,
)
from portal.auth.context import CustomerViewer, TenantDep
from portal.auth.guards import CustomerDep
from portal.db import bookings
from portal.db.rows import TenantRow
from portal.formatting import appointment_text, business_now, day_text, window_text
from portal.forms import record_id
from portal.mail.links import portal_url
from portal.mail.worker import wake
from portal.pages import refuse_customer, tab_page
from portal.web import after_write, form_data, renders_block

CHOICES = ("First choice", "Second choice", "Third choice")


# --- dates and times as customers read them (the shared pieces are in portal/formatting.py) ---


def choice_text(choice: dict[str, str], today: date | None = None) -> str:
    """A preferred date and time of day: "Tue, Dec 3, 2026 · morning"."""
    try:
        day = day_text(date.fromisoformat(choice["date"]), today)
    except (KeyError, ValueError):
        return ""
    return f"{day} · {TIMES_OF_DAY.get(choice.get('window', 'any'), 'Any time').lower()}"


def request_status(row: dict[str, Any], tz: str, today: date) -> tuple[str, str]:
    """(What the customer reads, badge style) for one of their requests."""
    if row["status"] == "dismissed":
        return "Closed", ""
    if row["status"] == "booked":
        if row.get("appointment_start") is not None:  # the business's own booking
            if row["appointment_status"] == "canceled":
                return "Canceled", "bad"
            when = appointment_text(row["appointment_start"], row["appointment_end"], tz, today)
            return f"Booked for {when}", "ok"
        if row["job_status"] == "canceled":
            return "Canceled", "bad"
        if row["job_start"] is not None:
            return (
                f"Booked for {appointment_text(row['job_start'], row['job_end'], tz, today)}",
                "ok",
            )
        return "Booked", "ok"
    return "Requested", "warn"


def _formatters(tenant: TenantRow, today: date) -> dict[str, Any]:
    tz = tenant["time_zone"]
    return {
        "today": today,
        "day_text": lambda d: day_text(d, today),
        "window_text": window_text,
        "choice_text": lambda c: choice_text(c, today),
        "appointment_text": lambda s, e: appointment_text(s, e, tz, today),
        "request_status": lambda r: request_status(r, tz, today),
    }


# --- pages ------------------------------------------------------------------------------------


def _require_scheduler(tenant: TenantRow) -> None:
    if not tenant["scheduler_enabled"]:
        raise NotFoundException()


def _base_context(
    tenant: TenantRow, settings: Any, now: datetime, form: RequestForm | None = None
) -> dict[str, Any]:
    """What every rendering of the Scheduler tab needs, before any list is loaded."""
    today = now.date()
    last = today + timedelta(days=settings.booking_max_days_ahead)
    return {
        **_formatters(tenant, today),
        "form": form or RequestForm(),
        "errors": {},
        "form_error": "",
        "notice": "",
        "windows": TIMES_OF_DAY,
        "choices": CHOICES,
        "other": OTHER,
        "notes_max": NOTES_MAX,
        "service_options": [t for t in tenant["service_types"] if t != OTHER] + [OTHER],
        "min_date": today.isoformat(),
        "max_date": last.isoformat(),
        "last_day": day_text(last, today),
        "locations": [],
        "appointments": [],
        "more_appointments": False,
        "every_appointment": False,
        "requests": bookings.RequestsPage(rows=[], older=None),
        "paged": False,
    }


async def _lists(
    tenant: TenantRow,
    viewer: CustomerViewer,
    now: datetime,
    before: int | None = None,
    every_appointment: bool = False,
) -> dict[str, Any]:
    """The viewed customer's next few upcoming appointments (up to UPCOMING_ALL with
    `every_appointment`) and (a page of) their requests, at the locations the viewer may
    see."""
    customer_id, places = viewer.customer_id, viewer.location_ids
    shown = bookings.UPCOMING_ALL if every_appointment else bookings.UPCOMING_SHOWN
    appointments = await bookings.upcoming_appointments(
        tenant["id"], customer_id, now.astimezone(UTC), places, limit=shown + 1
    )
    return {
        "appointments": appointments[:shown],
        "more_appointments": len(appointments) > shown and not every_appointment,
        "every_appointment": every_appointment,
        "requests": await bookings.requests_for_customer(tenant["id"], customer_id, before, places),
    }


@get("/schedule")
async def schedule(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Scheduler tab: request an appointment, see requests and upcoming appointments."""
    _require_scheduler(tenant)
    now = business_now(tenant)
    context = _base_context(tenant, request.app.state.settings, now)
    if viewer.customer is not None:
        customer_id = viewer.customer["id"]
        context["locations"] = await bookings.customer_locations(
            tenant["id"], customer_id, viewer.location_ids
        )
        before = record_id(request.query_params.get("before"))
        every = request.query_params.get("appointments") == "all"
        context.update(await _lists(tenant, viewer, now, before, every), paged=before is not None)
        requested = record_id(request.query_params.get("requested"))
        saved = next((r for r in context["requests"].rows if r["id"] == requested), None)
        if saved is not None:
            context["notice"] = _received_message(saved)
    return tab_page(request, tenant, viewer, "schedule", context)


def _received_message(row: dict[str, Any]) -> str:
    place = row.get("location_name") or row.get("location_street") or "your location"
    return (
        f"Thank you. We've received your request for {row['service_type']} at {place} "
        "and emailed you a copy. We'll be in touch to book a time; until then it shows "
        "below as Requested."
    )


@post("/schedule")
async def request_appointment(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Save an appointment request (once per form, however often it is sent)."""
    _require_scheduler(tenant)
    settings = request.app.state.settings
    now = business_now(tenant)
    form = read_form(await form_data(request))
    context = _base_context(tenant, settings, now, form)
    if viewer.customer is None:  # the layout explains; nothing to save for
        return tab_page(request, tenant, viewer, "schedule", context, status_code=409)
    if not viewer.can_request:  # billing and view-only grants (issue 16.4)
        return refuse_customer(request, tenant, viewer, "schedule", "request appointments")
    customer_id = viewer.customer["id"]
    context["locations"] = await bookings.customer_locations(
        tenant["id"], customer_id, viewer.location_ids
    )
    checked = check_request(
        form,
        context["locations"],
        tenant["service_types"],
        now.date(),
        settings.booking_max_days_ahead,
    )
    clean, errors, form = checked.clean, dict(checked.problems), checked.values["form"]
    context["form"] = form
    request_id: int | None = None
    if not errors:
        new = bookings.NewRequest(
            customer_id=customer_id,
            location=clean["location"],
            account_email=viewer.session.email,
            service_type=clean["service_type"],
            preferred_windows=clean["preferred_windows"],
            notes=clean["notes"],
            idempotency_key=form.key,
        )
        email = _email_context(settings, tenant, viewer, new)
        request_id, created = await appointments.request_appointment(settings, tenant, new, email)
        if request_id is None:  # the key is another customer's: never show their request
            errors["form"] = FORM_UNREADABLE
        elif created:
            wake()
    if errors:
        if "form" in errors:
            form.key = RequestForm().key
        context.update(errors=errors, form_error=_error_summary(errors))
        if renders_block(request, "request_form") is None:  # the whole page comes back
            context.update(await _lists(tenant, viewer, now))
        return tab_page(
            request, tenant, viewer, "schedule", context, block="request_form", status_code=422
        )

    async def thanks() -> Response[Any]:
        # A fresh form with the thank-you note, and the list of requests brought up to date.
        context.update(await _lists(tenant, viewer, now), form=RequestForm())
        saved = next((r for r in context["requests"].rows if r["id"] == request_id), None)
        context["notice"] = _received_message(saved) if saved else ""
        return tab_page(request, tenant, viewer, "schedule", context, block="request_saved")

    return await after_write(request, f"/schedule?requested={request_id}", thanks)


def _error_summary(errors: dict[str, str]) -> str:
    if "form" in errors:
        return errors["form"]
    count = len(errors)
    return (
        "Please fix the problem below." if count == 1 else f"Please fix the {count} problems below."
    )


def _email_context(
    settings: Any,
    tenant: TenantRow,
    viewer: CustomerViewer,
    new: bookings.NewRequest,
) -> dict[str, Any]:
    loc = new.location
    address = ", ".join(p for p in (loc["street"], loc["city"], loc["state"]) if p)
    return {
        "customer_name": viewer.customer["name"] if viewer.customer else "",
        "service_type": new.service_type,
        "location": f"{loc['name']}: {address}" if loc["name"] else address,
        "choices": [choice_text(c) for c in new.preferred_windows],
        "notes": new.notes,
        "link": portal_url(settings, tenant, "/schedule"),
    }


ROUTES = [schedule, request_appointment]

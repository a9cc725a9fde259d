"""Office › Bookings: customers' appointment requests, newest first; Book job (an inline
form that creates a scheduled job) and Dismiss (with a reason)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal import appointments
from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo
from portal.db import office as office_db
from portal.db import office_bookings as bookings
from portal.db.rows import TenantRow
from portal.forms import record_id
from portal.mail.worker import wake
from portal.pages import office_page
from portal.web import after_write, form_data, renders_block

BOOK_FIELDS = ("date", "window", "business_unit", "summary")
FILTERS = {"all": "All requests", "new": "New", "booked": "Booked", "dismissed": "Dismissed"}


@get("/bookings")
async def bookings_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Appointment requests from the portal's scheduler, newest first; new ones stand out."""
    status = request.query_params.get("status", "all")
    status = status if status in FILTERS else "all"
    after = record_id(request.query_params.get("after"))
    rows, next_after = await bookings.list_requests(tenant["id"], status, after)
    notice = ""
    if request.query_params.get("done") == "booked":
        job = request.query_params.get("job", "")[:32]
        notice = f"Job {job} is booked and the customer was emailed."
    elif request.query_params.get("done") == "dismissed":
        notice = "The request was dismissed and the customer was emailed the reason."
    return await office_page(
        request,
        tenant,
        staff,
        "bookings",
        "office/bookings.html",
        {
            "rows": rows,
            "status": status,
            "filters": FILTERS,
            "after": after,
            "next_after": next_after,
            "notice": notice,
        },
    )


async def _one(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    booking: dict[str, Any],
    *,
    mode: str = "",
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    done: str = "",
    status: int = 200,
) -> Response[Any]:
    """One request: only its card for htmx (swapped in place), else a page around it."""
    units = await bookings.units(tenant["id"]) if mode == "book" else []
    context: dict[str, Any] = {
        "b": booking,
        "mode": mode,
        "form": form or {},
        "errors": errors or {},
        "message": message,
        "done": done,
        "units": units,
        "windows": bookings.WINDOWS,
        "today": bookings.local_today(tenant).isoformat(),
    }
    if done and renders_block(request, "booking"):
        # The menu's count of new requests changes too.
        context["new_count"] = await office_db.new_bookings_count(tenant["id"])
    return await office_page(
        request,
        tenant,
        staff,
        "bookings",
        "office/booking.html",
        context,
        block="booking",
        status_code=status,
    )


async def _request_or_404(tenant: TenantRow, request_id: int) -> dict[str, Any]:
    booking = await bookings.get_request(tenant["id"], request_id)
    if booking is None:
        raise NotFoundException()
    return booking


@get("/bookings/{request_id:int}")
async def booking_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, request_id: FromPath[int]
) -> Response[Any]:
    """One appointment request (also what Cancel shows again)."""
    return await _one(request, tenant, staff, await _request_or_404(tenant, request_id))


@get("/bookings/{request_id:int}/book")
async def book_form(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, request_id: FromPath[int]
) -> Response[Any]:
    """The Book-job form, opened inline in the request's card."""
    booking = await _request_or_404(tenant, request_id)
    if booking["status"] != "new":
        return await _one(
            request, tenant, staff, booking, message=bookings.handled_message(booking, tenant)
        )
    day, window = bookings.default_slot(tenant, booking)
    form = {"date": day, "window": window, "business_unit": "", "summary": booking["service_type"]}
    return await _one(request, tenant, staff, booking, mode="book", form=form)


@post("/bookings/{request_id:int}/book")
async def book(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, request_id: FromPath[int]
) -> Response[Any]:
    """Book a scheduled job from the request; the customer gets a booking-confirmed email."""
    booking = await _request_or_404(tenant, request_id)
    # Missing fields show empty again (a hand-made post may leave any out).
    form = {"date": "", "window": "", "business_unit": "", "summary": ""} | {
        k: v for k, v in (await form_data(request)).items() if k in BOOK_FIELDS
    }
    units = await bookings.units(tenant["id"])
    checked = appointments.check_booking(tenant, form, units)
    if checked.clean is None:
        return await _one(
            request,
            tenant,
            staff,
            booking,
            mode="book",
            form=checked.values,
            errors=checked.problems,
            status=422,
        )
    settings = request.app.state.settings
    try:
        number = await appointments.book(settings, tenant, request_id, checked.clean, staff.email)
    except bookings.AlreadyHandled as exc:
        current = exc.request or booking
        return await _one(
            request,
            tenant,
            staff,
            current,
            message=bookings.handled_message(exc.request, tenant),
            status=409,
        )
    wake()

    async def booked() -> Response[Any]:
        row = await _request_or_404(tenant, request_id)
        done = f"Job {number} is booked and the customer was emailed."
        return await _one(request, tenant, staff, row, done=done)

    return await after_write(request, f"/office/bookings?done=booked&job={number}", booked)


@get("/bookings/{request_id:int}/dismiss")
async def dismiss_form(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, request_id: FromPath[int]
) -> Response[Any]:
    """The Dismiss form (a reason), opened inline in the request's card."""
    booking = await _request_or_404(tenant, request_id)
    if booking["status"] != "new":
        return await _one(
            request, tenant, staff, booking, message=bookings.handled_message(booking, tenant)
        )
    return await _one(request, tenant, staff, booking, mode="dismiss")


@post("/bookings/{request_id:int}/dismiss")
async def dismiss(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, request_id: FromPath[int]
) -> Response[Any]:
    """Close a request with a reason."""
    booking = await _request_or_404(tenant, request_id)
    form = await form_data(request)
    reason, problem = appointments.clean_reason(
        form.get("reason", "")[: appointments.REASON_READ + 1]
    )
    if problem:
        return await _one(
            request,
            tenant,
            staff,
            booking,
            mode="dismiss",
            form={"reason": reason},
            errors={"reason": problem},
            status=422,
        )
    try:
        await appointments.dismiss(
            request.app.state.settings, tenant, request_id, reason, staff.email
        )
    except bookings.AlreadyHandled as exc:
        return await _one(
            request,
            tenant,
            staff,
            exc.request or booking,
            message=bookings.handled_message(exc.request, tenant),
            status=409,
        )
    wake()

    async def dismissed() -> Response[Any]:
        row = await _request_or_404(tenant, request_id)
        done = "The request was dismissed and the customer was emailed the reason."
        return await _one(request, tenant, staff, row, done=done)

    return await after_write(request, "/office/bookings?done=dismissed", dismissed)


ROUTES = [bookings_page, booking_page, book_form, book, dismiss_form, dismiss]

"""Office › Notifications: the business's wording of the emails the portal sends (invoice
email, booking received, booking confirmed), with placeholders and a preview made with a
real customer's data."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo
from portal.db import activity
from portal.db import office_bookings as bookings
from portal.db import office_notifications as notes
from portal.db.rows import TenantRow
from portal.forms import Checked
from portal.mail import notifications
from portal.pages import office_page
from portal.web import after_write, form_data, see_other


@get("/notifications")
async def notifications_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """The emails the business can word, and which ones it has reworded."""
    custom = await notes.customised_keys(tenant["id"])
    return await office_page(
        request,
        tenant,
        staff,
        "notifications",
        "office/notifications.html",
        {"kinds": list(notes.KINDS.values()), "custom": custom},
    )


def _kind(key: str) -> notes.Kind:
    kind = notes.KINDS.get(key)
    if kind is None:
        raise NotFoundException()
    return kind


async def _preview_values(
    request: Request[Any, Any, Any], tenant: TenantRow, kind: notes.Kind
) -> tuple[dict[str, str], str]:
    """Values for the preview, from real records, and a note saying whose they are."""
    settings = request.app.state.settings
    if kind.key.startswith("booking"):
        latest = await bookings.latest_request_for_preview(tenant["id"])
        if latest is not None:
            day, window = bookings.default_slot(tenant, latest)
            values = {
                **notifications.common_values(settings, tenant, latest["customer_name"]),
                "ServiceType": latest["service_type"],
                "ServiceAddress": latest["address"],
                "PreferredTimes": bookings.preferences_text(latest["windows"]) or "no preference",
                "AppointmentDate": bookings.appointment_text(date.fromisoformat(day)),
                "ArrivalWindow": bookings.arrival_text(window),
            }
            return values, f"Preview with {latest['customer_name']}'s latest appointment request."
    who = await notes.preview_customer(tenant["id"], kind.key)
    values = notifications.sample_values(settings, tenant, kind.key, who)
    if who is None:
        return values, "Preview with example data (this business has no customers yet)."
    if who.get("invoice"):
        return values, f"Preview with {who['name']}'s invoice {who['invoice']['number']}."
    return values, f"Preview with {who['name']}'s details (the booking details are examples)."


async def _editor(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    kind: notes.Kind,
    *,
    subject: str | None = None,
    body: str | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    block: str = "region",
    status: int = 200,
) -> Response[Any]:
    stored = await notes.wording(tenant["id"], kind.key)
    subject = stored["subject"] if subject is None else subject
    body = stored["body"] if body is None else body
    errors = errors or {}
    preview = None
    note = ""
    if not errors:
        values, note = await _preview_values(request, tenant, kind)
        preview = {
            "subject": notes.render(subject, kind.placeholders, values),
            "body": notes.render(body, kind.placeholders, values),
        }
    return await office_page(
        request,
        tenant,
        staff,
        "notifications",
        "office/notification.html",
        {
            "kind": kind,
            "subject": subject,
            "body": body,
            "custom": stored["custom"],
            "updated_at": stored["updated_at"],
            "errors": errors,
            "notice": notice,
            "preview": preview,
            "preview_note": note,
        },
        block=block,
        status_code=status,
    )


NOTICES = {
    "saved": "Saved. This wording is used from now on.",
    "reset": "Back to the default wording.",
}


@get("/notifications/{key:str}")
async def edit_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, key: FromPath[str]
) -> Response[Any]:
    """Edit one email's subject and text, with a preview."""
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    return await _editor(request, tenant, staff, _kind(key), notice=notice)


async def _checked(request: Request[Any, Any, Any], kind: notes.Kind) -> Checked[notes.Wording]:
    form = await form_data(request)
    return notes.check(kind, form.get("subject", ""), form.get("body", ""))


@post("/notifications/{key:str}")
async def save(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, key: FromPath[str]
) -> Response[Any]:
    """Save the wording; an unknown placeholder or unbalanced brace is refused, naming it."""
    kind = _kind(key)
    checked = await _checked(request, kind)
    wording = checked.clean
    if not checked.ok:
        return await _editor(
            request,
            tenant,
            staff,
            kind,
            subject=wording.subject,
            body=wording.body,
            errors=checked.problems,
            block="editor",
            status=422,
        )
    await notes.save(tenant["id"], key, wording.subject, wording.body, activity.Actor(staff.email))
    return await after_write(
        request,
        f"/office/notifications/{key}?done=saved",
        lambda: _editor(request, tenant, staff, kind, notice=NOTICES["saved"], block="editor"),
    )


@post("/notifications/{key:str}/preview")
async def preview(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, key: FromPath[str]
) -> Response[Any]:
    """Show the draft filled in with a real customer's data (nothing is saved)."""
    kind = _kind(key)
    checked = await _checked(request, kind)
    return await _editor(
        request,
        tenant,
        staff,
        kind,
        subject=checked.clean.subject,
        body=checked.clean.body,
        errors=checked.problems,
        notice=""
        if checked.problems
        else "This is a preview: nothing is saved until you press Save.",
        block="editor",
        status=200 if checked.ok else 422,
    )


@post("/notifications/{key:str}/reset")
async def reset(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, key: FromPath[str]
) -> Response[Any]:
    """Go back to the default wording."""
    _kind(key)
    await notes.reset(tenant["id"], key, activity.Actor(staff.email))
    return see_other(request, f"/office/notifications/{key}?done=reset")


ROUTES = [notifications_page, edit_page, save, preview, reset]

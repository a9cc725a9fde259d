"""Office pages under /office/: staff sign-in and sign-out, the office start page, and the
helpers every office page renders with. The office areas themselves live in
`office_settings.py`, `office_bookings.py`, `office_customers.py` and
`office_notifications.py`.

Office pages are not behind the portal-open guard: staff must reach them to open
the portal in the first place.
"""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import TenantDep, signed_in
from portal.auth.guards import StaffDep, safe_next
from portal.auth.passwords import LaneBusy, hash_password, needs_rehash
from portal.auth.sessions import end_session, start_session
from portal.auth.signin import (
    TOO_SLOW,
    TooSlow,
    bounded,
    check_password,
    check_sign_in_form,
    client_of,
    refusal,
    sign_in_limits,
)
from portal.db import office as office_db
from portal.db import office_alerts
from portal.db.rows import TenantRow
from portal.web import after_write, form_data, render, see_other

# --- sign in / out ---------------------------------------------------------------------------

SIGN_IN_NOTICES = {
    "signed-out": "You're signed out.",
    "moved": "The portal moved to this address. Sign in again to carry on.",
}


def _sign_in_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return render(
        request,
        "office/sign_in.html",
        {"tenant": tenant, "email": "", "notice": "", "errors": {}, "form_error": "", **context},
        block="form",
        status_code=status,
        headers=headers,
    )


@get("/sign-in")
async def sign_in_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """The office sign-in page (separate from the customers' sign-in)."""
    next_path = _office_next(request.query_params.get("next"))
    if await signed_in(request, "staff"):
        return see_other(request, next_path)
    notice = SIGN_IN_NOTICES.get(request.query_params.get("done", ""), "")
    return _sign_in_page(request, tenant, {"next": next_path, "notice": notice})


def _office_next(value: str | None) -> str:
    """Where to go after signing in: an office page, never a customer page or another site."""
    path = safe_next(value, "/office/settings")
    return path if path.startswith("/office/") else "/office/settings"


@post("/sign-in")
async def sign_in(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    form = await form_data(request)
    next_path = _office_next(form.get("next"))
    checked = check_sign_in_form(form)
    email = checked.values["email"]
    context: dict[str, Any] = {"next": next_path, "email": email}
    if checked.clean is None:
        return _sign_in_page(request, tenant, {**context, "errors": checked.problems}, 422)
    password = checked.clean.password
    client = client_of(request)

    async def lookup() -> tuple[dict[str, Any] | None, str | None]:
        # An unknown email still costs one verify, so the answer's timing tells nothing.
        staff = await office_db.staff_by_email(tenant["id"], email)
        return staff, staff["password_hash"] if staff else None

    response = see_other(request, next_path)
    try:
        async with bounded(request.app.state.settings.sign_in_deadline_seconds):
            limits = sign_in_limits("staff-signin", email, client)
            check, staff = await check_password(tenant["id"], limits, client, password, lookup)
            if check.right and staff is not None:
                if needs_rehash(staff["password_hash"]):
                    with contextlib.suppress(LaneBusy):  # upgraded at a quieter sign-in
                        new_hash = await hash_password(password, client)
                        await office_db.update_staff_hash(staff["id"], new_hash)
                await start_session(
                    request, response, tenant_id=tenant["id"], kind="staff", staff_id=staff["id"]
                )
    except TooSlow:
        check, staff = TOO_SLOW, None
    if not check.right or staff is None:
        status, message, headers = refusal(check)
        return _sign_in_page(request, tenant, {**context, "form_error": message}, status, headers)
    return response


@post("/sign-out")
async def sign_out(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    response = see_other(request, "/office/sign-in?done=signed-out")
    await end_session(request, response)
    return response


@get("/")
async def office_home(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """The office's start page is Settings › Customer Portal (new bookings show in the menu)."""
    return see_other(request, "/office/settings")


@post("/alerts/{alert_id:int}/seen")
async def mark_alert_seen(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, alert_id: FromPath[int]
) -> Response[Any]:
    """A staff member marks an alert as seen: it leaves the top of the office pages.
    htmx swaps the alerts region; without JavaScript, back to the page it was on."""
    if not await office_alerts.mark_seen(tenant["id"], alert_id, staff.email):
        raise NotFoundException()
    back = safe_next((await form_data(request)).get("next"), "/office/settings")

    async def alerts() -> Response[Any]:
        return render(
            request,
            "office/_alerts.html",
            {
                "tenant": tenant,
                "alerts": await office_alerts.unseen(tenant["id"]),
                "alerts_back": "/office/settings",
            },
            block="alerts",
        )

    return await after_write(
        request, back if back.startswith("/office/") else "/office/settings", alerts
    )


ROUTES = [sign_in_page, sign_in, sign_out, office_home, mark_alert_seen]

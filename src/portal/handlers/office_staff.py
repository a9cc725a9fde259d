"""Office › Staff and "Your password": every staff member changes their own password; an
administrator sends a staff member a password-reset link; the link's page (signed out)
sets the new password. Adding, disabling and changing staff are for a later issue: the
Staff page is where they will go.

Passwords follow the customers' policy (auth/policy.py via auth/staff.py). A changed or
reset password signs the staff member out everywhere else.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth import links, throttle
from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.passwords import LaneBusy, hash_password
from portal.auth.policy import normalize
from portal.auth.sessions import SessionInfo, end_other_sessions, start_session
from portal.auth.signin import BUSY, MAX_FIELD, check_password, client_of, email_limit, refusal
from portal.auth.staff import staff_password_problem
from portal.db import office as office_db
from portal.db import staff as staff_db
from portal.mail.worker import wake
from portal.pages import ROLE_NAMES, is_admin, office_page, refuse
from portal.web import after_write, form_data, render, see_other

PASSWORD_NOTICES = {
    "changed": "Your password was changed. Your other devices were signed out.",
    "reset": "Your new password is saved and you're signed in. Other devices were signed out.",
}


# --- your password -------------------------------------------------------------------------


async def _password_page(
    request: Request,
    tenant: dict[str, Any],
    staff: SessionInfo,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return await office_page(
        request,
        tenant,
        staff,
        "password",
        "office/password.html",
        {"errors": {}, "notice": "", "form_error": "", **context},
        block="form" if request.method == "POST" else "region",
        status_code=status,
        headers=headers,
    )


@get("/password")
async def password_page(request: Request, tenant: TenantDep, staff: StaffDep) -> Response:
    """Your password: change it (current password, then the new one)."""
    notice = PASSWORD_NOTICES.get(request.query_params.get("done", ""), "")
    return await _password_page(request, tenant, staff, {"notice": notice})


@post("/password")
async def change_password(request: Request, tenant: TenantDep, staff: StaffDep) -> Response:
    form = await form_data(request)
    current = normalize(form.get("current_password", "")[:MAX_FIELD])
    new = normalize(form.get("new_password", "")[:MAX_FIELD])
    member = await office_db.staff_by_email(tenant["id"], staff.email)
    client = client_of(request)
    # Guessing the current password counts against the same limit as signing in.
    check = await check_password(
        tenant["id"],
        [email_limit("staff-signin", staff.email)],
        client,
        member["password_hash"] if member else None,
        current,
    )
    if not check.right or member is None:
        status, message, headers = refusal(check)
        if status == 422:
            errors = {"current_password": "That isn't your current password."}
            return await _password_page(request, tenant, staff, {"errors": errors}, 422)
        context = {"form_error": message}
        return await _password_page(request, tenant, staff, context, status, headers)
    problem = staff_password_problem(new, tenant, staff.email)
    if problem:
        errors = {"new_password": problem}
        return await _password_page(request, tenant, staff, {"errors": errors}, 422)
    try:
        new_hash = await hash_password(new, client)
    except LaneBusy as busy:
        headers = {"Retry-After": str(busy.retry_after)}
        context = {"form_error": BUSY}
        return await _password_page(request, tenant, staff, context, 503, headers)
    await staff_db.change_password(member["id"], new_hash)
    await end_other_sessions(staff_id=member["id"], keep_session_id=staff.id)
    notice = PASSWORD_NOTICES["changed"]
    return await after_write(
        request,
        "/office/password?done=changed",
        lambda: _password_page(request, tenant, staff, {"notice": notice}),
    )


# --- Staff: the list, and reset links --------------------------------------------------------


async def _staff_page(
    request: Request,
    tenant: dict[str, Any],
    staff: SessionInfo,
    notice: str = "",
    *,
    block: str = "region",
) -> Response:
    return await office_page(
        request,
        tenant,
        staff,
        "staff",
        "office/staff.html",
        {
            "members": await staff_db.staff_list(tenant["id"]),
            "role_names": ROLE_NAMES,
            "notice": notice,
            "hours": request.app.state.settings.reset_token_hours,
        },
        block=block,
    )


@get("/staff")
async def staff_page(request: Request, tenant: TenantDep, staff: StaffDep) -> Response:
    """The business's staff; administrators send password-reset links from here."""
    sent = request.query_params.get("sent", "")
    notice = ""
    if sent.isascii() and sent.isdigit() and len(sent) <= 10:
        member = await staff_db.staff_member(tenant["id"], int(sent))
        if member is not None:
            notice = _sent_notice(request, member)
    return await _staff_page(request, tenant, staff, notice)


def _sent_notice(request: Request, member: dict[str, Any]) -> str:
    hours = request.app.state.settings.reset_token_hours
    return (
        f"We've sent a password reset link to {member['email']}. It works once, for "
        f"{hours} hour{'s' if hours != 1 else ''}; their current password works until then."
    )


@post("/staff/{staff_id:int}/reset-link")
async def send_reset_link(
    request: Request, tenant: TenantDep, staff: StaffDep, staff_id: FromPath[int]
) -> Response:
    """Email a staff member a link to choose a new password (administrators only)."""
    if not is_admin(staff):
        return await refuse(
            request,
            tenant,
            staff,
            "Only an administrator can send password reset links.",
            section="staff",
            back="/office/staff",
        )
    member = await staff_db.staff_member(tenant["id"], staff_id)
    if member is None:
        raise NotFoundException()
    settings = request.app.state.settings
    await links.send_reset_link(
        settings, tenant, member, {"name": staff.name, "email": staff.email}
    )
    wake()
    return await after_write(
        request,
        f"/office/staff?sent={member['id']}",
        lambda: _staff_page(request, tenant, staff, _sent_notice(request, member), block="members"),
    )


# --- the reset link's page (signed out) ------------------------------------------------------


def _reset_page(
    request: Request,
    tenant: dict[str, Any],
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "office/reset.html",
        {
            "tenant": tenant,
            "errors": {},
            "problem": None,
            "token": "",
            "email": "",
            "form_error": "",
            **context,
        },
        block="form",
        status_code=status,
        headers=headers,
    )


def _link_problem(request: Request, tenant: dict[str, Any], problem: str) -> Response:
    return _reset_page(request, tenant, {"problem": problem}, 404 if problem == "unknown" else 410)


@get("/reset")
async def reset_page(request: Request, tenant: TenantDep) -> Response:
    """Choose a new password. Opening the link does not use it up (mail scanners open
    links); the form's button does."""
    token = request.query_params.get("token", "")
    link = await links.check_reset_link(tenant["id"], token)
    if link.problem:
        return _link_problem(request, tenant, link.problem)
    return _reset_page(request, tenant, {"token": token, "email": link.email})


@post("/reset")
async def reset(request: Request, tenant: TenantDep) -> Response:
    form = await form_data(request)
    token = form.get("token", "")[: staff_db.MAX_TOKEN_LENGTH + 1]
    password = normalize(form.get("password", "")[:MAX_FIELD])
    link = await links.check_reset_link(tenant["id"], token)
    if link.problem:
        return _link_problem(request, tenant, link.problem)
    problem = staff_password_problem(password, tenant, link.email)
    if problem:
        context = {"token": token, "email": link.email, "errors": {"password": problem}}
        return _reset_page(request, tenant, context, 422)
    try:
        password_hash = await hash_password(password, client_of(request))
    except LaneBusy as busy:
        context = {"token": token, "email": link.email, "form_error": BUSY}
        return _reset_page(request, tenant, context, 503, {"Retry-After": str(busy.retry_after)})
    used = await links.use_reset_link(tenant["id"], token, password_hash)
    if used.problem:
        return _link_problem(request, tenant, used.problem)
    await throttle.clear(tenant["id"], email_limit("staff-signin", used.email).key)
    await end_other_sessions(staff_id=used.staff_id)
    response = see_other(request, "/office/password?done=reset")
    await start_session(
        request, response, tenant_id=tenant["id"], kind="staff", staff_id=used.staff_id
    )
    return response


ROUTES = [password_page, change_password, staff_page, send_reset_link, reset_page, reset]

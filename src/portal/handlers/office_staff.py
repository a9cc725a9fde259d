"""Office › Staff and "Your password": every staff member changes their own password; an
administrator adds staff (who choose their first password from an emailed link), changes
roles, disables and re-enables staff and sends password-reset links; the link's page
(signed out) sets the new password. The last active administrator cannot be disabled or
made office staff (db/staff.py).

Passwords follow the customers' policy (auth/policy.py via auth/staff.py). A changed or
reset password signs the staff member out everywhere else.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal import logs
from portal.auth import links, throttle
from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.passwords import LaneBusy, hash_password
from portal.auth.policy import normalize
from portal.auth.sessions import SessionInfo, end_other_sessions, start_session
from portal.auth.signin import (
    BUSY,
    MAX_FIELD,
    TOO_SLOW,
    TooSlow,
    bounded,
    check_password,
    client_of,
    email_limit,
    refusal,
)
from portal.auth.staff import add_staff as add_staff_member
from portal.auth.staff import check_new_staff, staff_password_problem
from portal.db import activity
from portal.db import office as office_db
from portal.db import staff as staff_db
from portal.db.rows import TenantRow
from portal.mail.worker import wake
from portal.pages import ROLE_NAMES, is_admin, office_page, refuse
from portal.web import after_write, form_data, render, see_other

PASSWORD_NOTICES = {
    "changed": "Your password was changed. Your other devices were signed out.",
    "reset": "Your new password is saved and you're signed in. Other devices were signed out.",
}


# --- your password -------------------------------------------------------------------------


async def _password_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
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
async def password_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Your password: change it (current password, then the new one)."""
    notice = PASSWORD_NOTICES.get(request.query_params.get("done", ""), "")
    return await _password_page(request, tenant, staff, {"notice": notice})


@post("/password")
async def change_password(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    form = await form_data(request)
    current = normalize(form.get("current_password", "")[:MAX_FIELD])
    new = normalize(form.get("new_password", "")[:MAX_FIELD])
    client = client_of(request)

    async def lookup() -> tuple[dict[str, Any] | None, str | None]:
        member = await office_db.staff_by_email(tenant["id"], staff.email)
        return member, member["password_hash"] if member else None

    # Guessing the current password counts against the same limit as signing in.
    limits = [email_limit("staff-signin", staff.email)]
    try:
        async with bounded(request.app.state.settings.sign_in_deadline_seconds):
            check, member = await check_password(tenant["id"], limits, client, current, lookup)
    except TooSlow:
        check, member = TOO_SLOW, None
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
    logs.event(
        "password.changed", "password changed", tenant=tenant["id"], actor=staff.actor, area="staff"
    )
    await end_other_sessions(staff_id=member["id"], keep_session_id=staff.id)
    notice = PASSWORD_NOTICES["changed"]
    return await after_write(
        request,
        "/office/password?done=changed",
        lambda: _password_page(request, tenant, staff, {"notice": notice}),
    )


# --- Staff: the list, and reset links --------------------------------------------------------


async def _staff_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    notice: str = "",
    *,
    block: str = "region",
    problem: str = "",
    new: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response[Any]:
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
            "problem": problem,
            "new": new or {"name": "", "email": "", "role": "office"},
            "errors": errors or {},
            "hours": request.app.state.settings.reset_token_hours,
        },
        block=block,
        status_code=status,
    )


# What the Staff page says after a change, by `?done=` (with `?member=<id>`).
DONE = {
    "added": "{who} was added. We've emailed {email} a link to choose a password.",
    "role": "{who} is now {role}.",
    "disabled": "{who} is disabled: signed out everywhere, and cannot sign in.",
    "enabled": "{who} can sign in again.",
}


def _done_notice(done: str, member: dict[str, Any]) -> str:
    return DONE[done].format(
        who=staff_db.who(member),
        email=member["email"],
        role="an administrator" if member["role"] == "admin" else "office staff",
    )


def _id(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 10 else None


@get("/staff")
async def staff_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """The business's staff; administrators add staff, change roles, disable and re-enable
    staff and send password-reset links from here."""
    params = request.query_params
    sent, done, member_id = _id(params.get("sent", "")), params.get("done", ""), None
    if done in DONE:
        member_id = _id(params.get("member", ""))
    notice = ""
    wanted = sent or member_id
    member = await staff_db.staff_member(tenant["id"], wanted) if wanted else None
    if member is not None:
        notice = _sent_notice(request, member) if sent else _done_notice(done, member)
    return await _staff_page(request, tenant, staff, notice)


async def _admins_only(
    request: Request[Any, Any, Any], tenant: TenantRow, staff: SessionInfo
) -> Response[Any] | None:
    if is_admin(staff):
        return None
    return await refuse(
        request,
        tenant,
        staff,
        "Only an administrator can add or change staff.",
        section="staff",
        back="/office/staff",
    )


async def _changed(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    done: str,
    member_id: int,
) -> Response[Any]:
    """After a change: htmx swaps the staff list with the notice; without JavaScript, back
    to the Staff page, which says what changed."""

    async def fragment() -> Response[Any]:
        member = await staff_db.staff_member(tenant["id"], member_id)
        notice = _done_notice(done, member) if member else ""
        return await _staff_page(request, tenant, staff, notice, block="members")

    return await after_write(request, f"/office/staff?done={done}&member={member_id}", fragment)


async def _refused_change(
    request: Request[Any, Any, Any], tenant: TenantRow, staff: SessionInfo, message: str
) -> Response[Any]:
    """A change that cannot be made: the staff list again with why; nothing changed."""
    return await _staff_page(request, tenant, staff, block="members", problem=message, status=409)


@post("/staff")
async def add_staff(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Add a staff member: they get an email with a link to choose their password."""
    refusal = await _admins_only(request, tenant, staff)
    if refusal:
        return refusal
    checked = check_new_staff(await form_data(request))
    problems, new = dict(checked.problems), checked.clean
    member: dict[str, Any] | None = None
    if new is not None:
        try:
            member = await add_staff_member(
                request.app.state.settings,
                tenant,
                name=new.name,
                email=new.email,
                role=new.role,
                added_by={"name": staff.name, "email": staff.email},
            )
        except staff_db.StaffProblem as problem:
            problems["email"] = str(problem)
    if member is None:
        return await _staff_page(
            request,
            tenant,
            staff,
            block="members",
            new=checked.values,
            errors=problems,
            status=422,
        )
    wake()
    logs.event(
        "staff.added",
        "staff member added",
        tenant=tenant["id"],
        actor=staff.actor,
        staff_member=member["id"],
        role=member["role"],
    )
    return await _changed(request, tenant, staff, "added", member["id"])


@post("/staff/{staff_id:int}/role")
async def change_role(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, staff_id: FromPath[int]
) -> Response[Any]:
    """Make a staff member an administrator or office staff (never the last active
    administrator office staff)."""
    refusal = await _admins_only(request, tenant, staff)
    if refusal:
        return refusal
    role = (await form_data(request)).get("role", "")
    try:
        changed = await staff_db.set_role(tenant["id"], staff_id, role, activity.Actor(staff.email))
    except LookupError:
        raise NotFoundException() from None
    except staff_db.StaffProblem as problem:
        return await _refused_change(request, tenant, staff, str(problem))
    if changed is not None:
        logs.event(
            "staff.role_changed",
            "staff member's role changed",
            tenant=tenant["id"],
            actor=staff.actor,
            staff_member=staff_id,
            role=role,
        )
    return await _changed(request, tenant, staff, "role", staff_id)


async def _set_disabled(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    staff_id: int,
    disabled: bool,
) -> Response[Any]:
    refusal = await _admins_only(request, tenant, staff)
    if refusal:
        return refusal
    try:
        await staff_db.set_disabled(tenant["id"], staff_id, disabled, activity.Actor(staff.email))
    except LookupError:
        raise NotFoundException() from None
    except staff_db.StaffProblem as problem:
        return await _refused_change(request, tenant, staff, str(problem))
    done = "disabled" if disabled else "enabled"
    logs.event(
        f"staff.{done}",
        f"staff member {'disabled' if disabled else 're-enabled'}",
        tenant=tenant["id"],
        actor=staff.actor,
        staff_member=staff_id,
    )
    return await _changed(request, tenant, staff, done, staff_id)


@post("/staff/{staff_id:int}/disable")
async def disable_staff(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, staff_id: FromPath[int]
) -> Response[Any]:
    """Disable a staff member: signed out everywhere, and they cannot sign in."""
    return await _set_disabled(request, tenant, staff, staff_id, True)


@post("/staff/{staff_id:int}/enable")
async def enable_staff(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, staff_id: FromPath[int]
) -> Response[Any]:
    """Let a disabled staff member sign in again."""
    return await _set_disabled(request, tenant, staff, staff_id, False)


def _sent_notice(request: Request[Any, Any, Any], member: dict[str, Any]) -> str:
    hours = request.app.state.settings.reset_token_hours
    return (
        f"We've sent a password reset link to {member['email']}. It works once, for "
        f"{hours} hour{'s' if hours != 1 else ''}; their current password works until then."
    )


@post("/staff/{staff_id:int}/reset-link")
async def send_reset_link(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, staff_id: FromPath[int]
) -> Response[Any]:
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
    if member["disabled_at"] is not None:
        message = f"{staff_db.who(member)} is disabled: enable them first."
        return await _refused_change(request, tenant, staff, message)
    settings = request.app.state.settings
    await links.send_reset_link(
        settings, tenant, member, {"name": staff.name, "email": staff.email}
    )
    wake()
    logs.event(
        "staff.reset_link_sent",
        "password reset link sent to a staff member",
        tenant=tenant["id"],
        actor=staff.actor,
        staff_member=member["id"],
    )
    return await after_write(
        request,
        f"/office/staff?sent={member['id']}",
        lambda: _staff_page(request, tenant, staff, _sent_notice(request, member), block="members"),
    )


# --- the reset link's page (signed out) ------------------------------------------------------


def _reset_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
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


def _link_problem(
    request: Request[Any, Any, Any], tenant: TenantRow, problem: str
) -> Response[Any]:
    return _reset_page(request, tenant, {"problem": problem}, 404 if problem == "unknown" else 410)


@get("/reset")
async def reset_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """Choose a new password. Opening the link does not use it up (mail scanners open
    links); the form's button does."""
    token = request.query_params.get("token", "")
    link = await links.check_reset_link(tenant["id"], token)
    if link.problem:
        return _link_problem(request, tenant, link.problem)
    return _reset_page(request, tenant, {"token": token, "email": link.email})


@post("/reset")
async def reset(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
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


ROUTES = [
    password_page,
    change_password,
    staff_page,
    add_staff,
    change_role,
    disable_staff,
    enable_staff,
    send_reset_link,
    reset_page,
    reset,
]

"""Customer accounts: sign in and out, request an invitation, confirm (create a
password), forgot and reset password, change password, switch customer record."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from litestar import Request, Response, get, post

from portal import logs
from portal.auth import account_requests, links, throttle
from portal.auth.context import TenantDep, signed_in, viewer_for
from portal.auth.guards import CustomerDep, safe_next
from portal.auth.passwords import LaneBusy, hash_password, needs_rehash
from portal.auth.policy import normalize, password_problem
from portal.auth.sessions import (
    end_other_sessions,
    end_session,
    session_for_token,
    set_active_customer,
)
from portal.auth.signin import (
    BUSY,
    MAX_FIELD,
    TOO_SLOW,
    WINDOW,
    TooSlow,
    bounded,
    check_password,
    check_sign_in_form,
    client_of,
    email_limit,
    refusal,
    sign_in_limits,
)
from portal.auth.signins import SignedIn, security_notice, sign_in_customer
from portal.auth.throttle import Limit
from portal.db import accounts
from portal.db.passkeys import passkeys_of
from portal.db.rows import TenantRow
from portal.forms import clean_email, one_line
from portal.mail.worker import wake
from portal.pages import inline_logo, invoices_page
from portal.web import after_write, form_data, render, renders_block, see_other

HOUR = timedelta(hours=1)
# A link's page never tells another site its token (the page's own links, its logo).
NO_REFERRER = {"Referrer-Policy": "no-referrer"}


async def _page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """A signed-out page (`auth/<template>.html`), or its form for htmx. A page opened
    (GET) carries its logo inside it when the logo is small: most often a first visit."""
    logo = ""
    if request.method == "GET" and renders_block(request, "form") is None:
        logo = await inline_logo(request, tenant)
    return render(
        request,
        f"auth/{template}.html",
        {"tenant": tenant, "inline_logo": logo, **context},
        block="form",
        status_code=status,
        headers=headers,
    )


async def _throttled(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    template: str,
    context: dict[str, Any],
    wait: int,
) -> Response[Any]:
    message = f"Too many attempts. Please try again in {throttle.minutes_text(wait)}."
    return await _page(
        request,
        tenant,
        template,
        {**context, "form_error": message},
        429,
        {"Retry-After": str(wait)},
    )


async def _busy(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    template: str,
    context: dict[str, Any],
    wait: int,
) -> Response[Any]:
    """503 with Retry-After, the form kept and the message in it (htmx 4 swaps a 503)."""
    context = {**context, "form_error": BUSY}
    return await _page(request, tenant, template, context, 503, {"Retry-After": str(wait)})


# --- sign in / out ---------------------------------------------------------------------------


@get("/sign-in")
async def sign_in_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """The sign-in page, with the business's contact details and the way to register."""
    next_path = safe_next(request.query_params.get("next"))
    if await signed_in(request, "customer"):
        return see_other(request, next_path)
    notice = {"signed-out": "You're signed out."}.get(request.query_params.get("done", ""), "")
    return await _page(request, tenant, "sign_in", _sign_in_context(next_path, "", notice))


def _sign_in_context(next_path: str, email: str, notice: str = "") -> dict[str, Any]:
    return {
        "next": next_path,
        "email": email,
        "notice": notice,
        "link_minutes": links.SIGN_IN_LINK_MINUTES,
    }


@post("/sign-in")
async def sign_in(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    form = await form_data(request)
    next_path = safe_next(form.get("next"))
    checked = check_sign_in_form(form)
    email = checked.values["email"]
    context = _sign_in_context(next_path, email)
    if checked.clean is None:
        return await _page(request, tenant, "sign_in", {**context, "errors": checked.problems}, 422)
    password = checked.clean.password
    client = client_of(request)

    async def lookup() -> tuple[dict[str, Any] | None, str | None]:
        # An unknown email still costs one verify, so the answer's timing tells nothing.
        account = await accounts.sign_in_account(tenant["id"], email)
        usable = account is not None and account["confirmed"]
        return account, account["password_hash"] if account is not None and usable else None

    settings = request.app.state.settings
    started: SignedIn | None = None
    try:
        async with bounded(settings.sign_in_deadline_seconds):
            check, account = await check_password(
                tenant["id"], sign_in_limits("signin", email, client), client, password, lookup
            )
            if check.right and account is not None:
                if needs_rehash(account["password_hash"]):
                    with contextlib.suppress(LaneBusy):  # upgraded at a quieter sign-in
                        new_hash = await hash_password(password, client)
                        await accounts.update_hash(account["id"], new_hash)
                started = await sign_in_customer(request, tenant, account, "password")
    except TooSlow:
        check, started = TOO_SLOW, None
    if not check.right or started is None:
        status, message, headers = refusal(check)
        context["form_error"] = message
        return await _page(request, tenant, "sign_in", context, status, headers)
    token = started.token

    async def invoices_now() -> Response[Any]:
        # One round trip on a slow connection: answer with the Invoices page itself,
        # swapped in for the whole body, instead of a redirect and a second request.
        info = await session_for_token(request, tenant["id"], token)
        if info is None:
            return see_other(request, next_path)
        return await invoices_page(
            request,
            tenant,
            viewer_for(info),
            block=None,
            headers={"HX-Retarget": "body", "HX-Reswap": "outerHTML", "HX-Push-Url": "/invoices"},
        )

    if next_path == "/invoices":
        response = await after_write(request, next_path, invoices_now)
    else:
        response = see_other(request, next_path)
    return started.attach(response)


@post("/sign-out")
async def sign_out(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    response = see_other(request, "/sign-in?done=signed-out")
    await end_session(request, response)
    return response


# --- request an invitation -> confirmation email -> create password -----------------------------


def _sent_message(tenant: TenantRow) -> str:
    phone = tenant["phone"] or tenant["email"]
    return (
        f"If this email is on your account with {tenant['name']}, we've sent you a link. "
        f"Not arriving? Call us at {phone} to check the email on your account."
    )


async def _email_request(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    template: str,
    kind: str,
    context: dict[str, Any] | None = None,
) -> Response[Any]:
    """Invitation, reset and sign-in-link requests: one answer whatever the email,
    throttled."""
    form = await form_data(request)
    email, problem = clean_email(form.get("email", ""))
    context = {**(context or {}), "email": email}
    if problem:
        return await _page(
            request, tenant, template, {**context, "errors": {"email": problem}}, 422
        )
    # The same statements whatever the email (issue 11.5): count, record, answer. The
    # worker looks the email up and decides what to send.
    counted = await throttle.count(
        tenant["id"],
        [
            Limit(f"{kind}:email:{email}", 5, HOUR),
            Limit(f"{kind}:client:{client_of(request)}", 20, WINDOW),
        ],
    )
    if counted.wait:
        return await _throttled(request, tenant, template, context, counted.wait)
    await account_requests.record(tenant["id"], kind, email)
    wake()
    if template == "sign_in":  # the sign-in form stays, with the answer above it
        return await _page(request, tenant, template, {**context, "notice": _sent_message(tenant)})
    return await _page(request, tenant, template, {**context, "sent": _sent_message(tenant)})


@post("/sign-in/link")
async def request_sign_in_link(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """The sign-in form's "Email me a sign-in link": one answer for every email."""
    form = await form_data(request)
    context = _sign_in_context(safe_next(form.get("next")), "")
    return await _email_request(request, tenant, "sign_in", "signin", context)


@get("/sign-in/email")
async def sign_in_link_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """The emailed sign-in link's page: opening it uses nothing; its button signs in."""
    return await _link_page(request, tenant, "signin")


@post("/sign-in/email")
async def sign_in_with_link(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    form = await form_data(request)
    used = await links.use_sign_in_link(tenant["id"], form.get("token", "")[:200])
    if used.problem:
        return await _link_problem(request, tenant, used.problem, "signin")
    await throttle.clear(tenant["id"], email_limit("signin", used.email).key)
    account = {"id": used.account_id, "email": used.email}
    started = await sign_in_customer(request, tenant, account, "link")
    return started.attach(see_other(request, "/invoices"))


@get("/invite")
async def invite_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """Request an invitation: the email on the customer's record (or one a customer shared
    their record with, issue 16.4) gets a confirmation link. `?email=` fills the field in
    (the link in a sharing email)."""
    email = one_line(request.query_params.get("email", ""))[:254]
    # Arriving from a sharing email: the page says why they are here.
    return await _page(request, tenant, "invite", {"email": email, "invited": bool(email)})


@post("/invite")
async def invite(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    return await _email_request(request, tenant, "invite", "invite")


@get("/forgot")
async def forgot_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    return await _page(request, tenant, "forgot", {"email": ""})


@post("/forgot")
async def forgot(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    return await _email_request(request, tenant, "forgot", "reset")


LINK_TEMPLATES = {"confirm": "confirm", "reset": "reset", "signin": "sign_in_link"}


async def _link_problem(
    request: Request[Any, Any, Any], tenant: TenantRow, problem: str, purpose: str
) -> Response[Any]:
    """An unknown (404), used or expired (410) link: what happened and a way to a new one."""
    status = 404 if problem == "unknown" else 410
    context = {"problem": problem, "purpose": purpose}
    return await _page(request, tenant, "link_problem", context, status)


async def _link_page(
    request: Request[Any, Any, Any], tenant: TenantRow, purpose: str
) -> Response[Any]:
    """An emailed link's page. A GET only looks the token up, never uses it: mail scanners
    (Safe Links and the like) open every link, and the person must still find it working."""
    token = request.query_params.get("token", "")
    check = await links.check_link(tenant["id"], purpose, token)
    if check.problem:
        return await _link_problem(request, tenant, check.problem, purpose)
    context = {"token": token, "email": check.email}
    return await _page(request, tenant, LINK_TEMPLATES[purpose], context, headers=NO_REFERRER)


async def _use_link(
    request: Request[Any, Any, Any], tenant: TenantRow, purpose: str
) -> Response[Any]:
    form = await form_data(request)
    token = form.get("token", "")[:200]
    password = normalize(form.get("password", "")[:MAX_FIELD])
    check = await links.check_link(tenant["id"], purpose, token)
    if check.problem:
        return await _link_problem(request, tenant, check.problem, purpose)
    problem = password_problem(password, business_name=tenant["name"], email=check.email)
    if problem:
        return await _page(
            request,
            tenant,
            purpose,
            {"token": token, "email": check.email, "errors": {"password": problem}},
            422,
        )
    try:
        password_hash = await hash_password(password, client_of(request))
    except LaneBusy as busy:
        context = {"token": token, "email": check.email}
        return await _busy(request, tenant, purpose, context, busy.retry_after)
    used = await links.use_link(tenant["id"], purpose, token, password_hash)
    if used.problem:
        return await _link_problem(request, tenant, used.problem, purpose)
    await throttle.clear(tenant["id"], email_limit("signin", used.email).key)
    if purpose == "reset":
        await end_other_sessions(account_id=used.account_id)
        await security_notice(request.app.state.settings, tenant, used.email, "password")
    account = {"id": used.account_id, "email": used.email}
    started = await sign_in_customer(request, tenant, account, purpose)
    return started.attach(see_other(request, "/invoices"))


@get("/confirm")
async def confirm_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """Create your password (opening the link does not use it up)."""
    return await _link_page(request, tenant, "confirm")


@post("/confirm")
async def confirm(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    return await _use_link(request, tenant, "confirm")


@get("/reset")
async def reset_page(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    return await _link_page(request, tenant, "reset")


@post("/reset")
async def reset(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    return await _use_link(request, tenant, "reset")


# --- signed in: account settings -----------------------------------------------------------------


def _account_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: Any,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return render(
        request,
        "customer/account.html",
        {
            "tenant": tenant,
            "viewer": viewer,
            "tab": "account",
            "errors": {},
            "notice": "",
            **context,
        },
        block="form" if request.method == "POST" else "region",
        status_code=status,
        headers=headers,
    )


@get("/account")
async def account_page(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Your account: change password, and which customer record you are viewing."""
    done = request.query_params.get("done", "")
    notice = {"password": "Your password was changed. Other devices were signed out."}.get(done, "")
    return _account_page(request, tenant, viewer, {"notice": notice})


@post("/account/password")
async def change_password(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    form = await form_data(request)
    current = normalize(form.get("current_password", "")[:MAX_FIELD])
    new = normalize(form.get("new_password", "")[:MAX_FIELD])
    client = client_of(request)

    async def lookup() -> tuple[dict[str, Any] | None, str | None]:
        account = await accounts.account_by_email(tenant["id"], viewer.session.email)
        return account, account["password_hash"] if account else None

    try:
        async with bounded(request.app.state.settings.sign_in_deadline_seconds):
            check, account = await check_password(
                tenant["id"], [email_limit("signin", viewer.session.email)], client, current, lookup
            )
    except TooSlow:
        check, account = TOO_SLOW, None
    if not check.right or account is None:
        status, message, headers = refusal(check)
        if status == 422:
            errors = {"current_password": "That isn't your current password."}
            return _account_page(request, tenant, viewer, {"errors": errors}, 422)
        return _account_page(request, tenant, viewer, {"form_error": message}, status, headers)
    problem = password_problem(new, business_name=tenant["name"], email=viewer.session.email)
    if problem:
        return _account_page(request, tenant, viewer, {"errors": {"new_password": problem}}, 422)
    try:
        new_hash = await hash_password(new, client)
    except LaneBusy as busy:
        headers = {"Retry-After": str(busy.retry_after)}
        return _account_page(request, tenant, viewer, {"form_error": BUSY}, 503, headers)
    await accounts.change_password(account["id"], new_hash)
    logs.event(
        "password.changed",
        "password changed",
        tenant=tenant["id"],
        actor=viewer.session.actor,
        area="customer",
    )
    await end_other_sessions(account_id=account["id"], keep_session_id=viewer.session.id)
    await security_notice(request.app.state.settings, tenant, account["email"], "password")
    return see_other(request, "/account?done=password")


@get("/account/security")
async def security_page(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Security: recent sign-ins, the browsers signed in now (sign out everywhere else)."""
    done = request.query_params.get("done", "")
    notice = {
        "others": "You're signed out everywhere else.",
        "passkey-added": "Your passkey was added. Next time, sign in with it.",
        "passkey-removed": "The passkey was removed.",
    }.get(done, "")
    return await _security_page(request, tenant, viewer, {"notice": notice})


async def _security_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: Any,
    context: dict[str, Any],
    status: int = 200,
) -> Response[Any]:
    account_id = viewer.session.account_id
    return render(
        request,
        "customer/security.html",
        {
            "tenant": tenant,
            "viewer": viewer,
            "tab": "account",
            "notice": "",
            "sign_ins": await accounts.recent_sign_ins(tenant["id"], account_id),
            "sessions": await accounts.active_sessions(tenant["id"], account_id),
            "passkeys": await passkeys_of(tenant["id"], account_id),
            **context,
        },
        status_code=status,
    )


@post("/account/security/sign-out-others")
async def sign_out_others(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Sign out every other browser of this account; this one stays signed in."""
    await end_other_sessions(
        account_id=viewer.session.account_id, keep_session_id=viewer.session.id
    )
    return see_other(request, "/account/security?done=others")


@post("/account/customer")
async def switch_customer(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """View another customer record that lists this account's email."""
    form = await form_data(request)
    wanted = form.get("customer", "")
    match = next((c for c in viewer.customers if str(c["id"]) == wanted), None)
    if match is not None:
        await set_active_customer(viewer.session.id, match["id"])
    return see_other(request, safe_next(form.get("next"), "/invoices"))


ROUTES = [
    sign_in_page,
    sign_in,
    sign_out,
    request_sign_in_link,
    sign_in_link_page,
    sign_in_with_link,
    invite_page,
    invite,
    forgot_page,
    forgot,
    confirm_page,
    confirm,
    reset_page,
    reset,
    account_page,
    change_password,
    security_page,
    sign_out_others,
    switch_customer,
]

"""Settings › Customer Portal: the legal agreement first, then each setting saved inline
(htmx posts one setting on change) or the whole form at once (Save, without JavaScript).

Rules: nothing changes before an administrator accepted the legal agreement; only
administrators change the host, the legal agreement and payments; an invalid value
gets a message next to its field and nothing is saved.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from markupsafe import escape

from portal import logos
from portal import settings_form as rules
from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo, end_session
from portal.db import activity, queries, stripe_accounts
from portal.db import office as office_db
from portal.db import office_settings as settings_db
from portal.db.activity import Actor
from portal.db.rows import TenantRow
from portal.mail.links import portal_url
from portal.pages import is_admin, office_page, refuse
from portal.payments import accounts as payment_accounts
from portal.payments import sandbox, stripe_link
from portal.payments.webhooks import WEBHOOK_PATH
from portal.web import after_write, form_data, form_lists, is_htmx, renders_block, see_other

LOCKED_MESSAGE = "An administrator must accept the legal agreement before anything can be changed."
ADMIN_MESSAGE = "Only an administrator can change the host, the legal agreement and payments."
# The page block that shows each setting (its inline save swaps that block).
BLOCKS = {key: f"s_{key}" for key in rules.SETTINGS} | {
    "payments_enabled": "s_payments",
    "logo": "s_logo",
}


def _actor(staff: SessionInfo) -> activity.Actor:
    """The staff member, as the activity log records who changed a setting."""
    return activity.Actor(staff.email)


def current_values(tenant: TenantRow, units: list[dict[str, Any]]) -> dict[str, Any]:
    """What the settings form shows for the business as stored."""
    stored = cast(Mapping[str, Any], tenant)  # the settings are columns of the business
    values = {key: stored[key] for key in rules.SETTINGS if key in stored}
    values["service_types"] = "\n".join(tenant["service_types"])
    values["downloadable_units"] = {u["id"] for u in units if u["invoices_downloadable"]}
    return values


SHARE_LABEL = "Pay your bill and book service online"


def share_snippet(url: str, name: str) -> str:
    """HTML for the business's website: a link to the portal styled as a button."""
    style = (
        "display:inline-block;padding:12px 22px;background:#0f4c81;color:#ffffff;"
        "font:600 16px/1.2 Arial,Helvetica,sans-serif;text-decoration:none;border-radius:6px"
    )
    label = SHARE_LABEL
    title = escape(f"{name} customer portal")
    return f'<a href="{url}" title="{title}" style="{style}">{label}</a>'


async def _page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    *,
    block: str | None = "region",
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    saved: tuple[str, ...] = (),
    notice: str = "",
    form_error: str = "",
    confirm_host: str = "",
) -> Response[Any]:
    units = await queries.business_units(tenant["id"])
    settings = request.app.state.settings
    url = portal_url(settings, tenant, "/")
    shown = current_values(tenant, units)
    shown.update(values or {})
    return await office_page(
        request,
        tenant,
        staff,
        "settings",
        "office/settings.html",
        {
            "form": shown,
            "units": units,
            "errors": errors or {},
            "saved": saved,
            "notice": notice,
            "form_error": form_error,
            "confirm_host": confirm_host,
            "locked": not tenant["legal_accepted_at"],
            "portal_url": url,
            "share_label": SHARE_LABEL,
            "address_for": lambda host: portal_url(settings, host, "/"),
            "snippet": share_snippet(url, tenant["name"]),
            "statuses": rules.HIDDEN_STATUSES,
            "stripe_account": await stripe_accounts.shown(tenant["payment_account_id"]),
            "webhook_url": portal_url(settings, tenant, WEBHOOK_PATH),
            "om": request.app.state.renderer.env.get_template("office/macros.html").module,
        },
        block=block,
        status_code=status,
    )


SAVED_NOTICES = {
    "1": "Your settings were saved.",
    "legal": "Thank you: the legal agreement is accepted. You can now set up your customer portal.",
    "moved": "The portal moved to this address.",
    "unlinked": "The payment account is unlinked. Card pages customers still had open on it "
    "were closed first, so nothing more can be paid into it; payments that had already gone "
    "through were recorded.",
    "stripe": "The Stripe account is linked. Turn on card payments when you are ready.",
    "keys": "The Stripe keys were replaced.",
}


@get("/settings")
async def settings_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Settings › Customer Portal."""
    notice = SAVED_NOTICES.get(request.query_params.get("saved", ""), "")
    return await _page(request, tenant, staff, notice=notice)


async def _logo_upload(request: Request[Any, Any, Any]) -> UploadFile | None:
    """The uploaded logo file, if one was chosen."""
    try:
        form = await request.form()
    except Exception:  # a malformed body: treated as no file
        return None
    upload = form.get("logo")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    return upload


async def _read_logo(upload: UploadFile) -> tuple[bytes, str | None]:
    data = await upload.read(logos.MAX_LOGO_BYTES + 1)
    size: int | None = None
    if len(data) > logos.MAX_LOGO_BYTES:  # too big: find its real size for the message
        size = upload.file.seek(0, os.SEEK_END)  # the whole upload is already spooled
    return await logos.read_logo(data, upload.filename or "", upload.content_type or "", size)


async def _moved(request: Request[Any, Any, Any], new_host: str) -> Response[Any]:
    """After the host changed, the office follows the portal to its new address (signing
    in again there: a session belongs to the address it was made on)."""
    settings = request.app.state.settings
    target = portal_url(
        settings, new_host, "/office/sign-in?done=moved&next=/office/settings%3Fsaved%3Dmoved"
    )
    response = see_other(request, target)
    await end_session(request, response)
    return response


async def _refusal(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    keys: list[str] | tuple[str, ...],
) -> Response[Any] | None:
    """A 403 response when this staff member may not change `keys` now, else None."""
    if not tenant["legal_accepted_at"]:
        return await refuse(request, tenant, staff, LOCKED_MESSAGE)
    if not is_admin(staff) and any(k in rules.ADMIN_ONLY for k in keys):
        return await refuse(request, tenant, staff, ADMIN_MESSAGE)
    return None


# --- saving -------------------------------------------------------------------------------------


@post("/settings")
async def save_all(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Save the whole form (the Save button, without JavaScript): all or nothing."""
    form = await form_lists(request)
    admin = is_admin(staff)
    keys = [k for k in rules.SETTINGS if admin or k not in rules.ADMIN_ONLY]
    # Office staff's form has no admin-only fields (they are disabled): sending one is forged.
    sent_admin_only = [k for k in rules.ADMIN_ONLY if k in form]
    refusal = await _refusal(request, tenant, staff, keys + sent_admin_only)
    if refusal:
        return refusal
    units = await queries.business_units(tenant["id"])
    checked = rules.clean_form(keys, form, tenant, units)
    changes, values, errors = checked.clean, checked.values, checked.problems
    upload = await _logo_upload(request)
    png = b""
    if upload is not None:
        png, problem = await _read_logo(upload)
        if problem:
            errors["logo"] = problem
    if not errors:
        try:
            await settings_db.save(
                tenant["id"],
                changes,
                actor=Actor(staff.email),
                redirect_days=request.app.state.settings.host_redirect_days,
            )
        except settings_db.HostTaken:
            errors["host"] = settings_db.HOST_TAKEN_MESSAGE
    if errors:
        return await _page(
            request,
            tenant,
            staff,
            block="settings_form",
            status=422,
            values=values,
            errors=errors,
            form_error="Nothing was saved. Please correct the fields marked below.",
        )
    if png:
        await settings_db.save_logo(tenant["id"], png, _actor(staff))
    if "host" in changes.columns:
        return await _moved(request, changes.columns["host"])
    return see_other(request, "/office/settings?saved=1")


async def _after_one(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    key: str,
    errors: dict[str, str],
    values: dict[str, Any],
) -> Response[Any]:
    """The answer to an inline save: the setting's block with "Saved" or its error.
    Without JavaScript (a plain form post), back to the page."""
    if errors:
        return await _page(
            request,
            tenant,
            staff,
            block=BLOCKS[key],
            status=422,
            values=values,
            errors=errors,
        )

    async def saved() -> Response[Any]:
        fresh = await office_db.tenant_by_id(tenant["id"])
        return await _page(request, fresh, staff, block=BLOCKS[key], saved=(key,))

    return await after_write(request, "/office/settings?saved=1", saved)


@post("/settings/legal")
async def accept_legal(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """An administrator accepts the legal agreement (recorded with who and when)."""
    if not is_admin(staff):
        return await refuse(
            request, tenant, staff, "Only an administrator can accept the legal agreement."
        )
    form = await form_lists(request)
    if not form.get("agree"):
        return await _page(
            request,
            tenant,
            staff,
            block="legal",
            status=422,
            errors={"agree": "Tick the box to accept the agreement."},
        )
    await settings_db.accept_legal(tenant["id"], staff.email)
    return see_other(request, "/office/settings?saved=legal")


@post("/settings/logo")
async def upload_logo(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Upload a new logo (inline, or the page's Save without JavaScript)."""
    refusal = await _refusal(request, tenant, staff, ["logo"])
    if refusal:
        return refusal
    upload = await _logo_upload(request)
    if upload is None:
        png, problem = logos.process_logo(b"")
    else:
        png, problem = await _read_logo(upload)
    if problem:
        return await _after_one(request, tenant, staff, "logo", {"logo": problem}, {})
    await settings_db.save_logo(tenant["id"], png, _actor(staff))
    return await _after_one(request, tenant, staff, "logo", {}, {})


@post("/settings/logo/remove")
async def remove_logo(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    refusal = await _refusal(request, tenant, staff, ["logo"])
    if refusal:
        return refusal
    await settings_db.remove_logo(tenant["id"], _actor(staff))
    return await _after_one(request, tenant, staff, "logo", {}, {})


@post("/settings/payments/link")
async def link_payments(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Link the portal's one payment account (a new sandbox account for now)."""
    refusal = await _refusal(request, tenant, staff, ["payments_enabled"])
    if refusal:
        return refusal
    linked = await settings_db.link_payment_account(
        tenant["id"], sandbox.new_account_id(), _actor(staff)
    )
    errors = {} if linked else {"payments_enabled": "A payment account is already linked."}
    return await _after_one(request, tenant, staff, "payments_enabled", errors, {})


@post("/settings/payments/unlink")
async def unlink_payments(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Unlink the payment account, closing the card pages still open on it first."""
    refusal = await _refusal(request, tenant, staff, ["payments_enabled"])
    if refusal:
        return refusal
    await payment_accounts.unlink(request.app.state.settings, tenant, _actor(staff))

    async def unlinked() -> Response[Any]:
        fresh = await office_db.tenant_by_id(tenant["id"])
        return await _page(
            request,
            fresh,
            staff,
            block=BLOCKS["payments_enabled"],
            saved=("payments_enabled",),
            notice=SAVED_NOTICES["unlinked"],
        )

    return await after_write(request, "/office/settings?saved=unlinked", unlinked)


async def _check_move(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    form: dict[str, list[str]],
    changes: settings_db.Changes,
    values: dict[str, Any],
    errors: dict[str, str],
) -> Response[Any]:
    """A new host typed in (htmx): check it first, and only a name that can be used is
    offered as a move, confirmed in place ("Move portal" posts it again with `move`).
    "Keep the current address" shows the stored host again. Nothing is saved here."""
    new_host = changes.columns.get("host")
    if not errors and new_host and await settings_db.host_taken(tenant["id"], new_host):
        errors["host"] = settings_db.HOST_TAKEN_MESSAGE
    if errors:
        return await _after_one(request, tenant, staff, "host", errors, values)
    if form.get("keep") or not new_host:
        return await _page(request, tenant, staff, block=BLOCKS["host"])
    return await _page(
        request, tenant, staff, block=BLOCKS["host"], values=values, confirm_host=new_host
    )


@post("/settings/{key:str}")
async def save_one(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, key: FromPath[str]
) -> Response[Any]:
    """Save one setting (htmx posts it when its field changes)."""
    if key not in rules.SETTINGS:
        raise NotFoundException()
    refusal = await _refusal(request, tenant, staff, [key])
    if refusal:
        return refusal
    form = await form_lists(request)
    units = await queries.business_units(tenant["id"])
    checked = rules.clean_form([key], form, tenant, units)
    changes, values, errors = checked.clean, checked.values, checked.problems
    # With JavaScript a new host is checked and the move asked about in place first; the
    # page's Save (JavaScript off) saves it at once.
    if key == "host" and renders_block(request, BLOCKS["host"]) and not form.get("move"):
        return await _check_move(request, tenant, staff, form, changes, values, errors)
    if not errors:
        try:
            await settings_db.save(
                tenant["id"],
                changes,
                actor=Actor(staff.email),
                redirect_days=request.app.state.settings.host_redirect_days,
            )
        except settings_db.HostTaken:
            errors["host"] = settings_db.HOST_TAKEN_MESSAGE
    if not errors and "host" in changes.columns:
        return await _moved(request, changes.columns["host"])
    return await _after_one(request, tenant, staff, key, errors, values)


# --- linking a Stripe account (portal.payments.stripe_link) --------------------------------------

LINKED = "The Stripe account is linked. Turn on card payments when you are ready."
KEYS_REPLACED = "The Stripe keys were replaced."


@post("/settings/payments/stripe")
async def link_stripe(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Check the pasted keys with Stripe, then store them sealed and link the account."""
    refusal = await _refusal(request, tenant, staff, ["payments_enabled"])
    if refusal:
        return refusal
    was_linked = bool(tenant["payment_account_id"])
    result = await stripe_link.link(
        request.app.state.settings, tenant, staff.email, await form_data(request)
    )
    block = BLOCKS["payments_enabled"] if is_htmx(request) else None
    if result.errors:
        return await _page(request, tenant, staff, block=block, status=422, errors=result.errors)
    if not is_htmx(request):
        return see_other(request, "/office/settings?saved=" + ("keys" if was_linked else "stripe"))
    fresh = await office_db.tenant_by_id(tenant["id"])
    notice = KEYS_REPLACED if was_linked else LINKED
    return await _page(request, fresh, staff, block=block, notice=notice)


ROUTES = [
    link_stripe,
    settings_page,
    save_all,
    accept_legal,
    upload_logo,
    remove_logo,
    link_payments,
    unlink_payments,
    save_one,
]

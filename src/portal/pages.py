"""The page layouts handlers render with — a tab of the customer area, a page of the
office (with its menu and alerts), the office's refusal page — and the Invoices tab,
which its handler and the htmx sign-in both answer with. Handlers import these; no
handler imports another handler.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from litestar import Request, Response

from portal.auth.context import CustomerViewer
from portal.auth.sessions import SessionInfo
from portal.db import invoices as invoices_db
from portal.db import office as office_db
from portal.db import office_alerts, queries
from portal.db.rows import TenantRow
from portal.forms import record_id
from portal.payments import service
from portal.web import render, renders_block

ROLE_NAMES = {"admin": "Administrator", "office": "Office"}

# A signed-out page is most often a first visit on an empty cache, where the logo as a
# file costs one more round trip (and, on HTTP/1.1, a new connection) after the page. A
# logo up to this size comes inside the page instead; a larger one stays a file.
INLINE_LOGO_MAX_BYTES = 8 * 1024


async def inline_logo(request: Request[Any, Any, Any], tenant: TenantRow) -> str:
    """The business's logo as a `data:` URL for a signed-out page — its 2× copy when it
    has one small enough (sharp on phones, scaled down elsewhere), else the 1× one — or
    "" when it has no logo or it is too large. Read once per app and logo version."""
    version = tenant["logo_version"]
    if not version:
        return ""
    cache: dict[tuple[int, int], str] = request.app.state.inline_logos
    key = (tenant["id"], version)
    found = cache.get(key)
    if found is None:
        found = ""
        for sharp in (True, False) if tenant["logo_sharp"] else (False,):
            image = await queries.tenant_logo(tenant["id"], sharp=sharp)
            if image is not None and len(image[0]) <= INLINE_LOGO_MAX_BYTES:
                found = f"data:{image[1]};base64,{b64encode(image[0]).decode()}"
                break
        if len(cache) >= 1000:  # many businesses on one server: start again
            cache.clear()
        cache[key] = found
    return found


def tab_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: CustomerViewer,
    tab: str,
    context: dict[str, Any],
    *,
    template: str | None = None,
    block: str | None = "region",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """Render a page of the customer area (`customer/<tab>.html` unless `template` is given):
    the whole page, or its "region" block for an htmx tab switch."""
    return render(
        request,
        template or f"customer/{tab}.html",
        {"tenant": tenant, "viewer": viewer, "tab": tab, **context},
        block=block,
        status_code=status_code,
        headers=headers,
    )


def refuse_customer(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: CustomerViewer,
    tab: str,
    wanted: str,
) -> Response[Any]:
    """The 403 page for what the viewer's grant does not allow (issue 16.4): "Your access
    to <customer> is <role words>: ask <owner email> …". Nothing was changed. An htmx
    request gets the tab's region, retargeted to the whole of it."""
    customer = viewer.customer["name"] if viewer.customer else ""
    ask = viewer.owner_email or "the account's owner"
    message = (
        f"Your access to {customer} is {viewer.access_words}: ask {ask} if you need to {wanted}."
    )
    return tab_page(
        request,
        tenant,
        viewer,
        tab,
        {"message": message},
        template="customer/refused.html",
        status_code=403,
        headers={"HX-Retarget": "#portal", "HX-Reswap": "innerHTML"},
    )


# --- the office ---------------------------------------------------------------------------------


def is_admin(staff: SessionInfo) -> bool:
    return staff.role == "admin"


async def office_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    section: str,
    template: str,
    context: dict[str, Any],
    *,
    block: str | None = "region",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """Render an office page: the whole page for a plain request, `block` for htmx.

    The menu (with the count of new bookings) is drawn only when the layout is.
    """
    draws_menu = renders_block(request, block) in (None, "region")
    new_bookings = await office_db.new_bookings_count(tenant["id"]) if draws_menu else 0
    alerts = await office_alerts.unseen(tenant["id"]) if draws_menu else []
    return render(
        request,
        template,
        {
            "tenant": tenant,
            "staff": staff,
            "is_admin": is_admin(staff),
            "role_name": ROLE_NAMES.get(staff.role, staff.role),
            "section": section,
            "new_bookings": new_bookings,
            "alerts": alerts,
            **context,
        },
        block=block,
        status_code=status_code,
        headers=headers,
    )


async def refuse(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    message: str,
    *,
    section: str = "settings",
    back: str = "/office/settings",
) -> Response[Any]:
    """A 403 page inside the office layout: the request was refused and nothing changed.

    An htmx request gets the page's region, retargeted to the whole office region,
    so the refusal is never squeezed into a small part of the page. Alerts marked as
    seen here lead `back` too (the refused URL may take only a POST).
    """
    return await office_page(
        request,
        tenant,
        staff,
        section,
        "office/refused.html",
        {"message": message, "back": back, "alerts_back": back},
        status_code=403,
        headers={"HX-Retarget": "#office", "HX-Reswap": "innerHTML"},
    )


# --- the Invoices tab ----------------------------------------------------------------------------


async def settle_lost_callbacks(
    request: Request[Any, Any, Any], tenant: TenantRow, viewer: CustomerViewer
) -> None:
    """Settle the viewed customer's payments still pending at the gateway, when the
    session read flagged one (a lost callback must not leave a paid invoice unpaid)."""
    if viewer.customer and viewer.customer["pending_payments"]:
        await service.reconcile_customer(request.app.state.settings, tenant, viewer.customer["id"])


async def invoices_context(
    tenant: TenantRow,
    viewer: CustomerViewer,
    *,
    selected: list[int] | None = None,
    amount: str = "",
    message: str = "",
    notice: str = "",
    errors: dict[str, str] | None = None,
    start: invoices_db.Cursor | None = None,
    before: invoices_db.Cursor | None = None,
) -> dict[str, Any]:
    """What the Invoices tab shows: a page of the viewed customer's open invoices (the
    first, or from `start` on, or the one `before`) and the pay form. Chosen invoices
    (`selected`) that are not on that page bring the page of the oldest of them."""
    page = invoices_db.OpenInvoices()
    if viewer.customer:
        customer_id, places = viewer.customer["id"], viewer.location_ids
        page = await invoices_db.open_invoices(
            tenant["id"], customer_id, places, start=start, before=before
        )
        shown = {row["id"] for row in page.rows}
        if selected and not shown.issuperset(selected):
            # E.g. "Pay this invoice" on an invoice further down the list, or a failed
            # payment's invoices: show the page that starts with the oldest chosen one.
            chosen = await invoices_db.customer_invoices(
                tenant["id"], customer_id, list(selected), places
            )
            payable = [i for i in chosen if i["payable"]]
            if payable:
                first = payable[0]  # customer_invoices: oldest first
                page = await invoices_db.open_invoices(
                    tenant["id"],
                    customer_id,
                    places,
                    start=invoices_db.Cursor(first["invoice_date"], first["id"]),
                )
    return {
        "page": page,
        "rows": page.rows,
        "open_count": page.open_count,
        "total_due": page.total_due,
        "selected": set(selected or []),
        "amount": amount,
        "key": service.new_key(),
        "message": message,
        "notice": notice,
        "errors": errors or {},
        "call_us": service.call_us(tenant),
    }


async def invoices_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: CustomerViewer,
    *,
    block: str | None = "region",
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """The Invoices tab (also rendered whole as the answer to an htmx sign-in)."""
    await settle_lost_callbacks(request, tenant, viewer)
    params = request.query_params
    selected = [i for i in map(record_id, params.getall("select", [])) if i]
    start = invoices_db.Cursor.parse(params.get("from"))
    before = invoices_db.Cursor.parse(params.get("before"))
    retry = record_id(params.get("retry"))
    failed = (
        await service.failed_payment(tenant, viewer.customer["id"], retry, viewer.location_ids)
        if retry and viewer.customer
        else None
    )
    if failed is not None:
        context = await invoices_context(
            tenant,
            viewer,
            selected=failed.selected,
            amount=failed.amount,
            message=failed.message,
            start=start,
            before=before,
        )
    else:
        context = await invoices_context(
            tenant, viewer, selected=selected, start=start, before=before
        )
    if block == "region" and request.headers.get("HX-Target", "").endswith("#pay-form"):
        block = "form"  # "Next 25 invoices" / "Previous" swap the list and its pay form only
    return tab_page(request, tenant, viewer, "invoices", context, block=block, headers=headers)

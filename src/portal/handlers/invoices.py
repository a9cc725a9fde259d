"""Invoices tab (pay online), History tab (invoices by service location), one invoice
(HTML and PDF), and a payment's page (receipt, or where it stands)."""

from __future__ import annotations

import re
from typing import Any

import anyio
from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import CustomerViewer, TenantDep
from portal.auth.guards import CustomerDep
from portal.db import invoices as invoices_db
from portal.db import office_money, queries
from portal.db import payments as payments_db
from portal.db.rows import TenantRow
from portal.forms import record_id
from portal.pages import (
    invoices_context,
    invoices_page,
    refuse_customer,
    settle_lost_callbacks,
    tab_page,
)
from portal.payments import service
from portal.pdf import invoice_pdf
from portal.web import form_lists, see_other


def _customer_id(viewer: CustomerViewer) -> int:
    """The customer record being viewed; an account with none sees no records (404)."""
    if viewer.customer is None:
        raise NotFoundException()
    return viewer.customer["id"]


def _file_name(number: str) -> str:
    """An invoice number made safe for a download's file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", number)[:60] or "invoice"


@get("/invoices")
async def invoices(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Invoices tab: unpaid invoices for completed jobs, oldest first, to pay online, a
    page at a time (`?from=<cursor>`: the page starting at that invoice, `?before=`: the
    page before it). `?select=<id>` ticks an invoice (and shows its page);
    `?retry=<payment>` explains a failed payment."""
    return await invoices_page(request, tenant, viewer)


@post("/invoices/pay")
async def pay(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Pay in full (one or more invoices) or part of one invoice: on to the card page."""
    customer_id = _customer_id(viewer)
    if not viewer.can_pay:  # a view-only grant (issue 16.4): refused, nothing changes
        return refuse_customer(request, tenant, viewer, "invoices", "pay invoices")
    values = await form_lists(request)
    form = service.read_pay_form(values)
    if not form.ok:  # a tampered form names no invoice
        raise NotFoundException()
    outcome = await service.begin(
        request.app.state.settings,
        tenant,
        customer_id,
        viewer.session.email,
        form.clean,
        viewer.location_ids,
    )
    if outcome.not_found:
        raise NotFoundException()
    if outcome.redirect:
        return see_other(request, outcome.redirect)  # htmx: HX-Redirect, a real page load
    context = await invoices_context(
        tenant,
        viewer,
        selected=outcome.selected,
        amount=form.clean.amount,
        message=outcome.message,
        errors=outcome.errors,
        start=invoices_db.Cursor.parse((values.get("from") or [""])[0]),  # the page it was on
    )
    return tab_page(request, tenant, viewer, "invoices", context, block="form", status_code=422)


@get("/payments/{payment_id:int}")
async def payment_page(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    payment_id: FromPath[int],
) -> Response[Any]:
    """Where the gateway sends the customer back: the receipt, a failed payment's
    message (on the Invoices tab, to try again), or a payment not finished yet."""
    customer_id = _customer_id(viewer)
    payment = await payments_db.receipt(tenant["id"], customer_id, payment_id, viewer.location_ids)
    if payment is None:
        raise NotFoundException()
    checkout = None
    if payment["status"] == "pending":
        checkout = await service.refresh(request.app.state.settings, tenant, payment)
        payment = await payments_db.receipt(
            tenant["id"], customer_id, payment_id, viewer.location_ids
        )
        assert payment is not None
    if payment["status"] == "failed":
        return see_other(request, f"/invoices?retry={payment_id}")
    return tab_page(
        request,
        tenant,
        viewer,
        "invoices",
        {"payment": payment, "checkout": checkout},
        template="customer/receipt.html",
    )


@get("/history")
async def history(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """History tab: invoices (paid and unpaid, never $0) by service location, newest first.
    `?location=<id>` shows one location, a page at a time (`older`/`newer` cursors)."""
    context: dict[str, Any] = {"history": None}
    await settle_lost_callbacks(request, tenant, viewer)
    if viewer.customer:
        params = request.query_params
        raw_location = params.get("location") or ""
        if raw_location:
            location_id = record_id(raw_location)
            found = (
                await invoices_db.location_history(
                    tenant["id"],
                    viewer.customer["id"],
                    location_id,
                    older=invoices_db.Cursor.parse(params.get("older")),
                    newer=invoices_db.Cursor.parse(params.get("newer")),
                    location_ids=viewer.location_ids,
                )
                if location_id
                else None
            )
            if found is None:
                raise NotFoundException()
            context["history"] = found
        else:
            context["history"] = await invoices_db.history(
                tenant["id"], viewer.customer["id"], viewer.location_ids
            )
    return tab_page(request, tenant, viewer, "history", context)


@get("/invoices/{invoice_id:int}")
async def invoice_page(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    invoice_id: FromPath[int],
) -> Response[Any]:
    """One invoice: lines, totals, payments and its audit trail, under the tab the customer
    came from (`?from=invoices`, else History)."""
    invoice = await invoices_db.invoice_detail(
        tenant["id"], _customer_id(viewer), invoice_id, viewer.location_ids
    )
    if invoice is None:
        raise NotFoundException()
    await office_money.note_viewed(tenant["id"], invoice, viewer.session.email)
    tab = "invoices" if request.query_params.get("from") == "invoices" else "history"
    return _invoice_view(request, tenant, viewer, invoice, tab)


def _invoice_view(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: CustomerViewer,
    invoice: dict[str, Any],
    tab: str,
    *,
    download_refused: str = "",
    status_code: int = 200,
) -> Response[Any]:
    return tab_page(
        request,
        tenant,
        viewer,
        tab,
        {
            "invoice": invoice,
            "call_us": service.call_us(tenant),
            "download_refused": download_refused,
        },
        template="customer/invoice.html",
        status_code=status_code,
    )


def download_refused(tenant: TenantRow) -> str:
    """Why an invoice's PDF is not offered: its business unit's invoices don't download."""
    contact = tenant.get("phone") or tenant.get("email") or ""
    ask = f" — call us at {contact} for a copy." if contact else " — call us for a copy."
    return "This invoice can't be downloaded here" + ask


@get("/invoices/{invoice_id:int}/pdf")
async def invoice_pdf_download(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    invoice_id: FromPath[int],
) -> Response[Any]:
    """The invoice as a PDF, only for business units the office allowed (else 404: the
    invoice's page, saying why and whom to call)."""
    invoice = await invoices_db.invoice_detail(
        tenant["id"], _customer_id(viewer), invoice_id, viewer.location_ids
    )
    if invoice is None:
        raise NotFoundException()
    if not invoice["downloadable"]:
        return _invoice_view(
            request,
            tenant,
            viewer,
            invoice,
            "history",
            download_refused=download_refused(tenant),
            status_code=404,
        )
    # The business's own PDF (pushed through the sync API) when there is one.
    body = await invoices_db.business_pdf(tenant["id"], invoice_id)
    if body is None:
        logo = await queries.tenant_logo(tenant["id"])
        body = await anyio.to_thread.run_sync(invoice_pdf, tenant, invoice, logo)
    return Response(
        body,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{_file_name(invoice["number"])}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )


ROUTES = [invoices, pay, payment_page, history, invoice_page, invoice_pdf_download]

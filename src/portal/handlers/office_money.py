"""The office sees the money: an invoice's page and a job's page with their audit trail
(invoiced, emailed, payment started, paid, processing, failed, refunded), refunds by an
administrator, and the Payments page (filters, totals, CSV export)."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.db import office_money
from portal.db.rows import TenantRow
from portal.pages import is_admin, office_page, refuse
from portal.payments import refunds
from portal.web import VARY, form_data, is_htmx, see_other

STATUS_LABELS = [
    ("succeeded", "Paid"),
    ("processing", "Processing (bank debit)"),
    ("pending", "Waiting for the customer"),
    ("failed", "Failed"),
    ("refunded", "Refunded (all or part)"),
]
REFUND_ADMIN_ONLY = "Only an administrator can refund a payment."


async def _invoice_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: Any,
    invoice_id: int,
    *,
    block: str | None = "region",
    status: int = 200,
    notice: str = "",
    error: str = "",
    errors: dict[int, dict[str, str]] | None = None,
) -> Response[Any]:
    invoice = await office_money.invoice_page(tenant["id"], invoice_id)
    if invoice is None:
        raise NotFoundException()
    return await office_page(
        request,
        tenant,
        staff,
        "payments",
        "office/invoice.html",
        {
            "invoice": invoice,
            "trail": invoice["trail"],
            "notice": notice,
            "error": error,
            "errors": errors or {},
        },
        block=block,
        status_code=status,
    )


@get("/invoices/{invoice_id:int}")
async def invoice_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, invoice_id: FromPath[int]
) -> Response[Any]:
    """An invoice with each payment and refund and its audit trail."""
    notice = (
        "The refund was made. The customer was emailed."
        if request.query_params.get("refunded")
        else ""
    )
    return await _invoice_page(request, tenant, staff, invoice_id, notice=notice)


@get("/jobs/{job_id:int}")
async def job_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, job_id: FromPath[int]
) -> Response[Any]:
    """A job with its invoices and the audit trail of all of them."""
    job = await office_money.job_page(tenant["id"], job_id)
    if job is None:
        raise NotFoundException()
    return await office_page(request, tenant, staff, "payments", "office/job.html", {"job": job})


@post("/payments/{payment_id:int}/refund")
async def refund_payment(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, payment_id: FromPath[int]
) -> Response[Any]:
    """An administrator refunds all or part of a payment, with a reason."""
    form = await form_data(request)
    invoice_id = form.get("invoice", "")
    if not invoice_id.isdigit() or len(invoice_id) > 9:
        raise NotFoundException()
    if not await office_money.pays_invoice(tenant["id"], payment_id, int(invoice_id)):
        raise NotFoundException()  # another business's, or not this invoice's payment
    if not is_admin(staff):
        return await refuse(request, tenant, staff, REFUND_ADMIN_ONLY)
    outcome = await refunds.refund(
        request.app.state.settings,
        tenant,
        staff.email,
        payment_id,
        form.get("amount", ""),
        form.get("reason", ""),
    )
    if outcome.not_found:
        raise NotFoundException()
    block = "region" if is_htmx(request) else None  # the trail changes too
    if outcome.done:
        if not is_htmx(request):
            return see_other(request, f"/office/invoices/{invoice_id}?refunded=1")
        return await _invoice_page(
            request, tenant, staff, int(invoice_id), block=block, notice=outcome.message
        )
    return await _invoice_page(
        request,
        tenant,
        staff,
        int(invoice_id),
        block=block,
        status=422,
        error=outcome.message,
        errors={payment_id: outcome.errors} if outcome.errors else None,
    )


def read_filters(query: Any) -> tuple[office_money.PaymentFilters, str]:
    """The Payments page's filters from the query string; a bad one is named, ignored."""
    problems = []
    dates: dict[str, date | None] = {}
    for key in ("from", "to"):
        raw = (query.get(key) or "").strip()
        try:
            dates[key] = date.fromisoformat(raw) if raw else None
        except ValueError:
            dates[key] = None
            problems.append(f"“{raw[:20]}” is not a date (use the date picker or YYYY-MM-DD).")
    status = query.get("status") or ""
    method = query.get("method") or ""
    if status not in office_money.STATUSES:
        status = ""
    if method not in office_money.METHODS:
        method = ""
    filters = office_money.PaymentFilters(dates["from"], dates["to"], status, method)
    return filters, " ".join(problems)


@get("/payments")
async def payments_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Every portal payment, newest first, with filters and totals."""
    filters, problem = read_filters(request.query_params)
    raw_before = request.query_params.get("before", "")
    before = int(raw_before) if raw_before.isdigit() and len(raw_before) < 10 else None
    rows, totals = await office_money.payments(tenant, filters, before)
    more = len(rows) > office_money.PAGE_SIZE
    rows = rows[: office_money.PAGE_SIZE]
    return await office_page(
        request,
        tenant,
        staff,
        "payments",
        "office/payments.html",
        {
            "rows": rows,
            "totals": totals,
            "filters": filters,
            "query": filters.query(),
            "statuses": STATUS_LABELS,
            "filter_error": problem,
            "next_before": rows[-1]["id"] if more else None,
        },
    )


CSV_COLUMNS = [
    "payment",
    "started_at",
    "completed_at",
    "customer",
    "email",
    "invoices",
    "method",
    "status",
    "amount",
    "refunded",
    "reference",
    "test_mode",
]


@get("/payments.csv")
async def payments_csv(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """The filtered payments as CSV (all of them, newest first; amounts in dollars)."""
    from portal.payments.gateway import is_test_mode

    filters, _ = read_filters(request.query_params)
    rows, _ = await office_money.payments(tenant, filters, limit=100_000)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for p in rows:
        writer.writerow(
            [
                p["id"],
                p["created_at"].isoformat() if p["created_at"] else "",
                _iso(office_money._utc(p["completed_at"])),
                _cell(p["customer_name"]),
                _cell(p["account_email"]),
                " ".join(i["number"] for i in p["invoices"]),
                _cell(f"{p['card_brand']} {p['card_last4']}".strip()),
                p["state"],
                f"{p['amount_cents'] / 100:.2f}",
                f"{p['refunded_cents'] / 100:.2f}",
                p["gateway_ref"],
                "yes" if is_test_mode(p["payment_account_id"]) else "no",
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="payments.csv"',
            "Vary": VARY,
        },
    )


def _iso(moment: Any) -> str:
    return moment.isoformat() if moment else ""


def _cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


ROUTES = [invoice_page, job_page, refund_payment, payments_page, payments_csv]

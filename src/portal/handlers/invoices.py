"""Invoices tab (pay online) and History tab (invoices by service location)."""

from __future__ import annotations

from litestar import Request, Response, get

from portal.auth.guards import CustomerDep
from portal.handlers.customer import tab_page
from portal.tenancy import TenantDep


@get("/invoices")
async def invoices(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """Invoices tab: unpaid invoices for completed jobs."""
    return tab_page(request, tenant, viewer, "invoices", {})


@get("/history")
async def history(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """History tab: invoices by service location."""
    return tab_page(request, tenant, viewer, "history", {})


ROUTES = [invoices, history]

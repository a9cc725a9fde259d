"""The customer area: the tab pages (Invoices, History, Memberships, Scheduler)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from portal.auth.guards import CustomerDep, CustomerViewer
from portal.auth.sessions import load_session
from portal.tenancy import TenantDep
from portal.web import render, see_other


def _tab(
    request: Request,
    tenant: dict[str, Any],
    viewer: CustomerViewer,
    tab: str,
    context: dict[str, Any],
) -> Response:
    return render(
        request, f"customer/{tab}.html", {"tenant": tenant, "viewer": viewer, "tab": tab, **context}
    )


@get("/")
async def front_door(request: Request, tenant: TenantDep) -> Response:
    """The portal's address: the Invoices tab when signed in, else the sign-in page."""
    signed_in = await load_session(request, tenant["id"], "customer")
    return see_other(request, "/invoices" if signed_in else "/sign-in")


@get("/invoices")
async def invoices(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """Invoices tab: unpaid invoices for completed jobs."""
    return _tab(request, tenant, viewer, "invoices", {})


@get("/history")
async def history(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """History tab: invoices by service location."""
    return _tab(request, tenant, viewer, "history", {})


@get("/memberships")
async def memberships(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """Memberships (Contracts for commercial customers) tab, when the office enabled it."""
    if not tenant["memberships_enabled"]:
        raise NotFoundException()
    return _tab(request, tenant, viewer, "memberships", {})


@get("/schedule")
async def schedule(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """Scheduler tab: request an appointment, when the office enabled it."""
    if not tenant["scheduler_enabled"]:
        raise NotFoundException()
    return _tab(request, tenant, viewer, "schedule", {})


ROUTES = [front_door, invoices, history, memberships, schedule]

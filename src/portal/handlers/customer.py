"""The customer area: the tab pages (Invoices, History, Memberships, Scheduler)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from portal.tenancy import TenantDep
from portal.web import render

TABS = ("invoices", "history", "memberships", "schedule")


def _tab(request: Request, tenant: dict[str, Any], tab: str, context: dict[str, Any]) -> Response:
    return render(request, f"customer/{tab}.html", {"tenant": tenant, "tab": tab, **context})


@get("/invoices", name="invoices")
async def invoices(request: Request, tenant: TenantDep) -> Response:
    """Invoices tab: unpaid invoices for completed jobs."""
    return _tab(request, tenant, "invoices", {})


@get("/history", name="history")
async def history(request: Request, tenant: TenantDep) -> Response:
    """History tab: invoices by service location."""
    return _tab(request, tenant, "history", {})


@get("/memberships", name="memberships")
async def memberships(request: Request, tenant: TenantDep) -> Response:
    """Memberships (Contracts for commercial customers) tab."""
    return _tab(request, tenant, "memberships", {})


@get("/schedule", name="schedule")
async def schedule(request: Request, tenant: TenantDep) -> Response:
    """Scheduler tab: request an appointment."""
    return _tab(request, tenant, "schedule", {})


ROUTES = [invoices, history, memberships, schedule]

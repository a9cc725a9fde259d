"""Memberships tab (Contracts for commercial customers)."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from portal.auth.guards import CustomerDep
from portal.handlers.customer import tab_page
from portal.tenancy import TenantDep


@get("/memberships")
async def memberships(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """Memberships (Contracts for commercial customers), when the office enabled them."""
    if not tenant["memberships_enabled"]:
        raise NotFoundException()
    return tab_page(request, tenant, viewer, "memberships", {})


ROUTES = [memberships]

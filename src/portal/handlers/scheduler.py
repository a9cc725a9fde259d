"""Scheduler tab: the Web Appointment Scheduler's requests."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from portal.auth.guards import CustomerDep
from portal.handlers.customer import tab_page
from portal.tenancy import TenantDep


@get("/schedule")
async def schedule(request: Request, tenant: TenantDep, viewer: CustomerDep) -> Response:
    """Scheduler tab: request an appointment, when the office turned the scheduler on."""
    if not tenant["scheduler_enabled"]:
        raise NotFoundException()
    return tab_page(request, tenant, viewer, "schedule", {})


ROUTES = [schedule]

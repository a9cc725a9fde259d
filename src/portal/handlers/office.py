"""Office pages under /office/: staff sign-in, Settings › Customer Portal, Bookings,
notification templates, customers."""

from __future__ import annotations

from litestar import Request, Response, get

from portal.auth.guards import StaffDep
from portal.tenancy import TenantDep
from portal.web import render


@get("/")
async def office_home(request: Request, tenant: TenantDep, staff: StaffDep) -> Response:
    """The office's start page."""
    return render(request, "office/home.html", {"tenant": tenant, "staff": staff}, block=None)


ROUTES = [office_home]

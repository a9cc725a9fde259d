"""Office › Webhooks (administrators only): the addresses of the business's own system that
hear about events, each delivery's status and answer, "Retry now", and turning an endpoint
back on after it was turned off for failing. Sending is api/webhooks.py."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo
from portal.db import webhooks as webhooks_db
from portal.db.rows import TenantRow
from portal.mail.worker import wake
from portal.pages import is_admin, office_page, refuse
from portal.web import after_write, form_data

ADMINS_ONLY = "Only an administrator can see and manage webhooks."
NOTICES = {
    "retry": "The delivery will be sent again in a moment.",
    "on": "The endpoint is on again. Deliveries that are waiting go out now.",
    "off": "The endpoint is off: nothing is sent to it until you turn it on.",
}


async def _page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response[Any]:
    return await office_page(
        request,
        tenant,
        staff,
        "webhooks",
        "office/webhooks.html",
        {
            "endpoints": await webhooks_db.endpoints(tenant["id"]),
            "deliveries": await webhooks_db.deliveries(tenant["id"]),
            "errors": {},
            "url": "",
            "new_secret": "",
            "notice": "",
            **(context or {}),
        },
        block="hooks" if request.method == "POST" else "region",
        status_code=status,
    )


@get("/webhooks")
async def webhooks_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Endpoints and the latest deliveries."""
    if not is_admin(staff):
        return await refuse(request, tenant, staff, ADMINS_ONLY, section="webhooks")
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    return await _page(request, tenant, staff, {"notice": notice})


@post("/webhooks")
async def add_endpoint(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Add an endpoint; its signing secret is shown this once."""
    if not is_admin(staff):
        return await refuse(request, tenant, staff, ADMINS_ONLY, section="webhooks")
    form = await form_data(request)
    url, problem = webhooks_db.clean_url(form.get("url", "")[:5000])
    if problem:
        context = {"errors": {"url": problem}, "url": url}
        return await _page(request, tenant, staff, context, status=422)
    _, secret = await webhooks_db.add_endpoint(tenant["id"], url, staff.email)
    return await _page(request, tenant, staff, {"new_secret": secret, "new_url": url})


async def _done(
    request: Request[Any, Any, Any], tenant: TenantRow, staff: SessionInfo, key: str
) -> Response[Any]:
    wake()
    return await after_write(
        request,
        f"/office/webhooks?done={key}",
        lambda: _page(request, tenant, staff, {"notice": NOTICES[key]}),
    )


@post("/webhooks/deliveries/{delivery_id:int}/retry")
async def retry_delivery(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, delivery_id: FromPath[int]
) -> Response[Any]:
    """Send a delivery again now."""
    if not is_admin(staff):
        return await refuse(request, tenant, staff, ADMINS_ONLY, section="webhooks")
    if not await webhooks_db.retry_now(tenant["id"], delivery_id):
        raise NotFoundException()
    return await _done(request, tenant, staff, "retry")


@post("/webhooks/{endpoint_id:int}/{switch:str}")
async def switch_endpoint(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    staff: StaffDep,
    endpoint_id: FromPath[int],
    switch: FromPath[str],
) -> Response[Any]:
    """Turn an endpoint on or off."""
    if not is_admin(staff):
        return await refuse(request, tenant, staff, ADMINS_ONLY, section="webhooks")
    if switch not in ("on", "off"):
        raise NotFoundException()
    if not await webhooks_db.set_enabled(tenant["id"], endpoint_id, switch == "on", staff.email):
        raise NotFoundException()
    return await _done(request, tenant, staff, switch)


ROUTES = [webhooks_page, add_endpoint, retry_delivery, switch_endpoint]

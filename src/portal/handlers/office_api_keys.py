"""Office › API keys (administrators only): make a named key for the business's own system
(shown once), see when each was last used, revoke one. The API itself is `portal/api/`."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo
from portal.db import api_keys
from portal.db.rows import TenantRow
from portal.pages import is_admin, office_page, refuse
from portal.web import after_write, form_data

ADMINS_ONLY = "Only an administrator can see and manage API keys."


async def _keys_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    context: dict[str, Any] | None = None,
    *,
    block: str = "region",
    status: int = 200,
) -> Response[Any]:
    return await office_page(
        request,
        tenant,
        staff,
        "api-keys",
        "office/api_keys.html",
        {
            "keys": await api_keys.keys(tenant["id"]),
            "scopes": api_keys.SCOPES,
            "errors": {},
            "values": {"name": "", "scope": "read"},
            "new_key": "",
            "notice": "",
            **(context or {}),
        },
        block=block,
        status_code=status,
    )


@get("/api-keys")
async def keys_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """The business's API keys and the form that makes one."""
    if not is_admin(staff):
        return await refuse(request, tenant, staff, ADMINS_ONLY, section="api-keys")
    notice = "The key was revoked." if request.query_params.get("done") == "revoked" else ""
    return await _keys_page(request, tenant, staff, {"notice": notice})


@post("/api-keys")
async def create_key(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Make a key and show it, this once (so no redirect: the key is in this answer only)."""
    if not is_admin(staff):
        return await refuse(request, tenant, staff, ADMINS_ONLY, section="api-keys")
    checked = api_keys.check_new_key(await form_data(request))
    block = "keys"  # an htmx form swaps its region; without JavaScript the whole page
    new = checked.clean
    if new is None:
        context = {"errors": checked.problems, "values": checked.values}
        return await _keys_page(request, tenant, staff, context, block=block, status=422)
    _, key = await api_keys.create(tenant["id"], new.name, new.scope, staff.email)
    made = {"new_key": key, "new_name": new.name}
    return await _keys_page(request, tenant, staff, made, block=block)


@post("/api-keys/{key_id:int}/revoke")
async def revoke_key(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, key_id: FromPath[int]
) -> Response[Any]:
    """Revoke a key: the next request made with it is refused."""
    if not is_admin(staff):
        return await refuse(request, tenant, staff, ADMINS_ONLY, section="api-keys")
    key = await api_keys.revoke(tenant["id"], key_id, staff.email)
    if key is None:
        raise NotFoundException()
    notice = f"The key “{key['name']}” was revoked."
    return await after_write(
        request,
        "/office/api-keys?done=revoked",
        lambda: _keys_page(request, tenant, staff, {"notice": notice}, block="keys"),
    )


ROUTES = [keys_page, create_key, revoke_key]

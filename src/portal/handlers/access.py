"""Your account › People with access (issue 16.4): the owner of a customer record invites
someone by email to chosen locations with a role, sees the live grants and revokes them;
a person with access sees what is shared with them and can give it up."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth import grants
from portal.auth.context import CustomerViewer, TenantDep
from portal.auth.guards import CustomerDep
from portal.db import bookings
from portal.db import grants as grants_db
from portal.db.rows import TenantRow
from portal.mail.worker import wake
from portal.pages import tab_page
from portal.web import after_write, form_lists, see_other

PAGE = "/account/access"
DONE = {
    "invited": "The invitation is on its way. They'll see what you shared once they sign in.",
    "revoked": "Access was revoked. They no longer see your account.",
    "left": "Your access was removed. That account no longer shows here.",
}


async def _context(
    tenant: TenantRow, viewer: CustomerViewer, *, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the page shows: the viewed record's grants and locations (owners), and the
    records shared with this account (by anyone)."""
    customer = viewer.customer
    owner = customer is not None and viewer.is_owner
    return {
        "role_words": grants.ROLE_WORDS,
        "roles": grants_db.ROLES,
        "given": await grants_db.given(tenant["id"], customer["id"]) if owner and customer else [],
        "locations": (
            await bookings.customer_locations(tenant["id"], customer["id"])
            if owner and customer
            else []
        ),
        "held": await grants_db.held(tenant["id"], viewer.session.email),
        "values": values or {"email": "", "role": "", "locations": []},
        "errors": {},
        "notice": "",
        "refused": "",
    }


async def _page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    viewer: CustomerViewer,
    *,
    block: str = "region",
    status: int = 200,
    **extra: Any,
) -> Response[Any]:
    context = await _context(tenant, viewer, values=extra.pop("values", None))
    context.update(extra)
    return tab_page(
        request,
        tenant,
        viewer,
        "account",
        context,
        template="customer/access.html",
        block=block,
        status_code=status,
    )


@get(PAGE)
async def access_page(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """People with access to the viewed record, and the records shared with you."""
    return await _page(
        request, tenant, viewer, notice=DONE.get(request.query_params.get("done", ""), "")
    )


async def _refused(
    request: Request[Any, Any, Any], tenant: TenantRow, viewer: CustomerViewer
) -> Response[Any]:
    """403: only the record's owner may invite or revoke; nothing changed."""
    name = viewer.customer["name"] if viewer.customer else tenant["name"]
    message = (
        f"Only the account holder of {name} can invite people or revoke their access. "
        "Nothing was changed."
    )
    return await _page(request, tenant, viewer, block="access", status=403, refused=message)


@post(f"{PAGE}/invite")
async def invite(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Invite someone by email, with a role and at least one of the owner's locations."""
    if viewer.customer is None or not viewer.is_owner:
        return await _refused(request, tenant, viewer)
    form = await form_lists(request)
    checked = await grants.check_invite(
        tenant["id"],
        viewer.customer["id"],
        viewer.session.email,
        email=(form.get("email") or [""])[0],
        role=(form.get("role") or [""])[0],
        locations=form.get("locations", []),
    )
    if not checked.ok:
        return await _page(
            request,
            tenant,
            viewer,
            block="access",
            status=422,
            values=checked.values,
            errors=checked.problems,
        )
    try:
        await grants.invite(
            request.app.state.settings,
            tenant,
            viewer.customer["id"],
            viewer.customer["name"],
            viewer.session.email,
            checked.clean,
        )
    except grants.InviteRefused as refused:  # lost a race to an invitation sent at once
        return await _page(
            request,
            tenant,
            viewer,
            block="access",
            status=422,
            values=checked.values,
            errors=refused.problems,
        )
    wake()
    return await after_write(
        request,
        f"{PAGE}?done=invited",
        lambda: _page(request, tenant, viewer, block="access", notice=DONE["invited"]),
    )


@post(PAGE + "/{grant_id:int}/revoke")
async def revoke(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    grant_id: FromPath[int],
) -> Response[Any]:
    """The owner takes a person's access away (their next page no longer shows it)."""
    if viewer.customer is None or not viewer.is_owner:
        return await _refused(request, tenant, viewer)
    done = await grants.revoke_by_owner(
        tenant["id"], viewer.customer["id"], grant_id, viewer.session.email
    )
    if not done:  # another record's grant, or one already revoked
        raise NotFoundException()
    return await after_write(
        request,
        f"{PAGE}?done=revoked",
        lambda: _page(request, tenant, viewer, block="access", notice=DONE["revoked"]),
    )


@post(PAGE + "/{grant_id:int}/leave")
async def leave(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    grant_id: FromPath[int],
) -> Response[Any]:
    """A person with access gives it up ("Remove my access")."""
    done = await grants.leave(tenant["id"], grant_id, viewer.session.email)
    if not done:
        raise NotFoundException()
    # The record may be gone from this account (and from its switcher): a real page
    # load, not a swap (htmx: HX-Redirect).
    return see_other(request, f"{PAGE}?done=left")


ROUTES = [access_page, invite, revoke, leave]

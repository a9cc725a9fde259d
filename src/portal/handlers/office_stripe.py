"""Settings › Customer Portal › Payments: linking the business's Stripe account.

The fields live in the settings page's Payments block (their `form` attribute ties them
to a form of their own, outside the settings form); the answer is that block again, with
"Linked" or the message of the field at fault. Nothing is saved unless Stripe accepted
the key."""

from __future__ import annotations

from litestar import Request, Response, post

from portal.auth.guards import StaffDep
from portal.db import office as office_db
from portal.handlers.office_settings import BLOCKS, _page, _refusal
from portal.payments import stripe_link
from portal.tenancy import TenantDep
from portal.web import form_data, is_htmx, see_other

LINKED = "The Stripe account is linked. Turn on card payments when you are ready."
KEYS_REPLACED = "The Stripe keys were replaced."


@post("/settings/payments/stripe")
async def link_stripe(request: Request, tenant: TenantDep, staff: StaffDep) -> Response:
    """Check the pasted keys with Stripe, then store them sealed and link the account."""
    refusal = await _refusal(request, tenant, staff, ["payments_enabled"])
    if refusal:
        return refusal
    was_linked = bool(tenant["payment_account_id"])
    result = await stripe_link.link(
        request.app.state.settings, tenant, staff.email, await form_data(request)
    )
    block = BLOCKS["payments_enabled"] if is_htmx(request) else None
    if result.errors:
        return await _page(request, tenant, staff, block=block, status=422, errors=result.errors)
    if not is_htmx(request):
        return see_other(request, "/office/settings?saved=" + ("keys" if was_linked else "stripe"))
    fresh = await office_db.tenant_by_id(tenant["id"])
    notice = KEYS_REPLACED if was_linked else LINKED
    return await _page(request, fresh, staff, block=block, notice=notice)


ROUTES = [link_stripe]

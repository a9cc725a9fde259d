"""The customer area's front door and the helper every tab page renders with."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from portal.auth.context import ContextDep
from portal.web import see_other


@get("/")
async def front_door(request: Request[Any, Any, Any], context: ContextDep) -> Response[Any]:
    """The portal's address: the Invoices tab when signed in, else the sign-in page."""
    customer = context.signed_in("customer")
    return see_other(request, "/invoices" if customer else "/sign-in")


ROUTES = [front_door]

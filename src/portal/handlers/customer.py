"""The customer area's front door and the helper every tab page renders with."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from portal.auth.context import ContextDep, CustomerViewer
from portal.web import render, see_other


def tab_page(
    request: Request,
    tenant: dict[str, Any],
    viewer: CustomerViewer,
    tab: str,
    context: dict[str, Any],
    *,
    template: str | None = None,
    block: str | None = "region",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render a page of the customer area (`customer/<tab>.html` unless `template` is given):
    the whole page, or its "region" block for an htmx tab switch."""
    return render(
        request,
        template or f"customer/{tab}.html",
        {"tenant": tenant, "viewer": viewer, "tab": tab, **context},
        block=block,
        status_code=status_code,
        headers=headers,
    )


@get("/")
async def front_door(request: Request, context: ContextDep) -> Response:
    """The portal's address: the Invoices tab when signed in, else the sign-in page."""
    customer = context.signed_in("customer")
    return see_other(request, "/invoices" if customer else "/sign-in")


ROUTES = [front_door]

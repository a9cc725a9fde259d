"""The portal's callback URL: where the gateway reports a checkout's outcome.

Server to server and signed (HMAC over the raw body), so it is exempt from the CSRF
check that protects browser forms, and it is not behind the customer sign-in or the
"portal open" guard: a payment that was made must be recorded even if the office
closes the portal meanwhile.
"""

from __future__ import annotations

from litestar import Request, Response, post

from portal.payments.service import CALLBACK_PATH, handle_callback
from portal.tenancy import TenantDep


@post(CALLBACK_PATH, exclude_from_csrf=True, include_in_schema=False, status_code=200)
async def payment_callback(request: Request, tenant: TenantDep) -> Response:
    """Verify and apply a gateway callback; answers JSON (2xx: accepted, do not retry)."""
    status, answer = await handle_callback(
        request.app.state.settings, tenant, request.headers, await request.body()
    )
    return Response(answer, status_code=status, media_type="application/json")


ROUTES = [payment_callback]

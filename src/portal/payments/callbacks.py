"""The portal's callback URLs: where the gateway reports a checkout's outcome (a
payment's, or a card update's).

Server to server and signed (HMAC over the raw body), so it is exempt from the CSRF
check that protects browser forms, and it is not behind the customer sign-in or the
"portal open" guard: a payment that was made must be recorded even if the office
closes the portal meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, post

from portal.auth.context import TenantDep
from portal.db import payment_accounts
from portal.payments import card_updates
from portal.payments.gateway import BadCallback, PaymentsUnavailable
from portal.payments.registry import verify_callback
from portal.payments.service import CALLBACK_PATH, handle_callback

log = logging.getLogger("portal.payments")


@post(CALLBACK_PATH, exclude_from_csrf=True, include_in_schema=False, status_code=200)
async def payment_callback(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """Verify and apply a gateway callback; answers JSON (2xx: accepted, do not retry)."""
    status, answer = await handle_callback(
        request.app.state.settings, tenant, request.headers, await request.body()
    )
    return Response(answer, status_code=status, media_type="application/json")


@post(card_updates.CALLBACK_PATH, exclude_from_csrf=True, include_in_schema=False, status_code=200)
async def card_callback(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """The gateway's signed report of a card-setup page (server to server)."""
    body = await request.body()
    try:
        # Signed by one of the business's accounts (linked now or before); settling checks
        # it is the account the card update started on.
        accounts = await payment_accounts.accounts_of(tenant)
        event = verify_callback(request.app.state.settings, accounts, request.headers, body[:65536])
    except PaymentsUnavailable:
        return Response({"error": "no payment account"}, status_code=404)
    except BadCallback as exc:
        log.warning("refused a card callback: %s", exc)
        return Response({"error": "bad signature"}, status_code=403)
    status = await card_updates.settle_reported(tenant["id"], event.checkout, event.account_id)
    if status is None:
        return Response({"error": "unknown checkout"}, status_code=404)
    code = {"unknown": 404, "mismatch": 409}.get(status, 200)
    return Response({"status": status}, status_code=code)


ROUTES = [payment_callback, card_callback]

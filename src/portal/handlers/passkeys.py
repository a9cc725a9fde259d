"""Passkeys: add one under Your account › Security, remove it there, sign in with one.

The ceremonies need JavaScript (the browser's WebAuthn API): their endpoints answer JSON
to static/passkeys.js. Removing a passkey is a plain form. Without JavaScript the pages
say passkeys need it and offer the emailed sign-in link instead.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from litestar import Request, Response, post
from litestar.params import FromPath

from portal import logs
from portal.auth import passkeys, throttle
from portal.auth.context import CustomerViewer, TenantDep
from portal.auth.guards import CustomerDep, safe_next
from portal.auth.signins import SignedIn, browser_of, security_notice, sign_in_customer
from portal.auth.throttle import Limit
from portal.db import passkeys as store
from portal.forwarded import client_ip, client_key
from portal.web import see_other

JSON = "application/json"
PER_CLIENT = 50  # passkey answers per client address and business in 15 minutes
DIDNT_WORK = (
    "That passkey didn't work here. Sign in with your password, or ask for an emailed sign-in link."
)


def _json(data: object, status: int = 200, cookies_from: SignedIn | None = None) -> Response[Any]:
    body = data if isinstance(data, str) else json.dumps(data)
    response = Response(body, status_code=status, media_type=JSON)
    return cookies_from.attach(response) if cookies_from else response


def _account_id(viewer: CustomerViewer) -> int:
    """The signed-in customer's account (a customer session always has one)."""
    assert viewer.session.account_id is not None
    return viewer.session.account_id


@post("/account/passkeys/options")
async def add_passkey_options(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """The options the browser needs to make a passkey for this account."""
    account: dict[str, Any] = {"id": _account_id(viewer), "email": viewer.session.email}
    existing = await store.passkeys_of(tenant["id"], _account_id(viewer))
    settings = request.app.state.settings
    return _json(await passkeys.registration_options(settings, tenant, account, existing))


@post("/account/passkeys")
async def add_passkey(
    request: Request[Any, Any, Any], tenant: TenantDep, viewer: CustomerDep
) -> Response[Any]:
    """Keep the passkey the browser made (verified first); email the account."""
    settings = request.app.state.settings
    name = browser_of(request.headers.get("user-agent", "")[:500])
    added = await passkeys.add_passkey(
        settings, tenant, _account_id(viewer), await request.body(), name
    )
    if not added:
        return _json({"error": "The passkey wasn't saved. Please try again."}, 422)
    logs.event("passkey.added", "passkey added", tenant=tenant["id"], actor=viewer.session.actor)
    await security_notice(settings, tenant, viewer.session.email, "passkey added")
    return _json({"redirect": "/account/security?done=passkey-added"})


@post("/account/passkeys/{passkey_id:int}/remove")
async def remove_passkey(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    viewer: CustomerDep,
    passkey_id: FromPath[int],
) -> Response[Any]:
    """Remove one of the account's passkeys (another account's: nothing happens)."""
    if await store.remove_passkey(tenant["id"], _account_id(viewer), passkey_id):
        logs.event(
            "passkey.removed",
            "passkey removed",
            tenant=tenant["id"],
            actor=viewer.session.actor,
            passkey=passkey_id,
        )
        settings = request.app.state.settings
        await security_notice(settings, tenant, viewer.session.email, "passkey removed")
    return see_other(request, "/account/security?done=passkey-removed")


@post("/sign-in/passkey/options")
async def sign_in_options(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """A sign-in challenge for this business's passkeys. Every sign-in page asks for one as
    it loads (autofill), so it is not counted; the answers are."""
    return _json(await passkeys.authentication_options(request.app.state.settings, tenant))


@post("/sign-in/passkey")
async def sign_in_with_passkey(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """Check the browser's passkey answer and sign its account in."""
    client = client_key(client_ip(request))
    limit = Limit(f"passkey:client:{client}", PER_CLIENT, timedelta(minutes=15))
    counted = await throttle.count(tenant["id"], [limit])
    if counted.wait:
        logs.event(
            "signin.locked",
            "passkey sign-in refused: too many attempts",
            level=logging.WARNING,
            tenant=tenant["id"],
            client=client,
            area="passkey",
        )
        minutes = throttle.minutes_text(counted.wait)
        return _json({"error": f"Too many attempts. Please try again in {minutes}."}, 429)
    checked = await passkeys.check_sign_in(request.app.state.settings, tenant, await request.body())
    if checked.account is None:
        logs.event(
            "signin.failed",
            "passkey not accepted",
            tenant=tenant["id"],
            client=client,
            area="passkey",
        )
        return _json({"error": DIDNT_WORK}, 422)
    signed_in = await sign_in_customer(request, tenant, checked.account, "passkey")
    next_path = safe_next(request.query_params.get("next"))
    return _json({"redirect": next_path}, cookies_from=signed_in)


ROUTES = [
    add_passkey_options,
    add_passkey,
    remove_passkey,
    sign_in_options,
    sign_in_with_passkey,
]

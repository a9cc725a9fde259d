"""Signing a customer in, however it happens (password, emailed link, passkey, a new
password from a link): the session, the sign-in record for the security page, and the
email when the browser was never seen signing in to this account before.

A browser is recognised by a long-lived random device cookie (only its hash is stored).
It is not a secret and proves nothing: it only decides whether "a new browser signed in"
is worth an email.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie

from portal.auth.sessions import session_cookie, start_session
from portal.auth.tokens import new_token, token_hash
from portal.config import Settings
from portal.db import accounts
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.forwarded import client_ip
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email
from portal.mail.worker import wake

DEVICE_DAYS = 400  # browsers cap cookie lifetimes at about 400 days


def device_cookie_name(settings: Settings) -> str:
    return "__Host-portal_device" if settings.cookies_secure else "portal_device"


# (pattern, name), first match wins: Edge and Opera also say "Chrome", Chrome says "Safari".
_BROWSERS = [
    (r"Edg(e|A|iOS)?/", "Edge"),
    (r"OPR/|Opera", "Opera"),
    (r"SamsungBrowser/", "Samsung Internet"),
    (r"Firefox/|FxiOS/", "Firefox"),
    (r"Chrome/|CriOS/|Chromium/", "Chrome"),
    (r"Safari/", "Safari"),
]
_SYSTEMS = [
    (r"Android", "Android"),
    (r"iPhone|iPad|iPod", "iOS"),
    (r"Windows", "Windows"),
    (r"Mac OS X|Macintosh", "macOS"),
    (r"CrOS", "ChromeOS"),
    (r"Linux", "Linux"),
]


def browser_of(user_agent: str) -> str:
    """A person's name for the browser: "Chrome on Android", "Firefox on Windows"."""
    name = next((n for p, n in _BROWSERS if re.search(p, user_agent)), "")
    system = next((n for p, n in _SYSTEMS if re.search(p, user_agent)), "")
    if name and system:
        return f"{name} on {system}"
    return name or system or "An unknown browser"


def network_of(address: str) -> str:
    """The network, not the address: an IPv4 /24 ("203.0.113.x"), an IPv6 /48."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv4Address):
        return ".".join(str(parsed).split(".")[:3]) + ".x"
    return str(ipaddress.ip_network(f"{parsed}/48", strict=False))


@dataclass
class SignedIn:
    """A new customer session: its token and the cookies the response must set."""

    token: str
    cookies: list[Cookie] = field(default_factory=list)

    def attach(self, response: Response[Any]) -> Response[Any]:
        for cookie in self.cookies:
            response.set_cookie(cookie)
        return response


async def sign_in_customer(
    request: Request[Any, Any, Any], tenant: TenantRow, account: dict[str, Any], method: str
) -> SignedIn:
    """Start a session for `account` ({"id", "email"}) signed in by `method` (password |
    link | passkey | confirm | reset); record it, and email the account when this browser
    never signed in to it before (not for its very first sign-in)."""
    settings: Settings = request.app.state.settings
    device = request.cookies.get(device_cookie_name(settings), "")
    if not device or len(device) > 100:
        device = new_token()[0]
    browser = browser_of(request.headers.get("user-agent", "")[:500])
    network = network_of(client_ip(request))
    if await _record(settings, tenant, account, method, browser, network, token_hash(device)):
        wake()
    token = await start_session(
        request,
        None,
        tenant_id=tenant["id"],
        kind="customer",
        account_id=account["id"],
        browser=browser,
        network=network,
    )
    device_cookie = Cookie(
        key=device_cookie_name(settings),
        value=device,
        path="/",
        httponly=True,
        secure=settings.cookies_secure,
        samesite="lax",
        max_age=DEVICE_DAYS * 86400,
    )
    return SignedIn(token, [session_cookie(settings, token), device_cookie])


async def _record(
    settings: Settings,
    tenant: TenantRow,
    account: dict[str, Any],
    method: str,
    browser: str,
    network: str,
    device_hash: str,
) -> bool:
    """Record the sign-in; when this browser never signed in to the account before, and
    it is not the account's first sign-in, queue the "new sign-in" email in the same
    transaction. Returns whether it was queued."""
    async with transaction():
        before, from_here = await accounts.sign_ins_seen(tenant["id"], account["id"], device_hash)
        await accounts.add_sign_in_record(
            tenant["id"],
            account["id"],
            method=method,
            browser=browser,
            network=network,
            device_hash=device_hash,
        )
        new_browser = before and not from_here
        if new_browser:
            await queue_email(
                settings,
                tenant,
                account["email"],
                "new_sign_in",
                {
                    "browser": browser,
                    "network": network,
                    "security_link": portal_url(settings, tenant, "/account/security"),
                    "forgot_link": portal_url(settings, tenant, "/forgot"),
                },
            )
    return new_browser


async def security_notice(settings: Settings, tenant: TenantRow, email: str, change: str) -> None:
    """Tell the account's email that how it signs in changed: `change` is "password",
    "passkey added" or "passkey removed"."""
    await queue_email(
        settings,
        tenant,
        email,
        "security_change",
        {
            "change": change,
            "security_link": portal_url(settings, tenant, "/account/security"),
            "forgot_link": portal_url(settings, tenant, "/forgot"),
        },
    )
    wake()

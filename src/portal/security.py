"""Security headers on every response, and a per-request CSP nonce for our scripts.

The policy allows scripts only from our own origin carrying this request's nonce,
no inline script or style, no eval, no plugins, no framing and no <base> tag. htmx
is configured to need none of those (no injected indicator style, no hx-on).
"""

from __future__ import annotations

import secrets

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

NONCE_KEY = "portal_csp_nonce"


def csp(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def nonce_of(scope: Scope) -> str:
    """This request's CSP nonce (for `<script nonce=…>`)."""
    return scope.get(NONCE_KEY, "")  # type: ignore[return-value]


def security_headers(https: bool):  # noqa: ANN201 - Litestar middleware factory
    """ASGI middleware adding CSP, nosniff, referrer policy, and HSTS over https."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            nonce = secrets.token_urlsafe(18)
            scope[NONCE_KEY] = nonce  # type: ignore[literal-required]

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = MutableScopeHeaders.from_message(message)
                    headers["Content-Security-Policy"] = csp(nonce)
                    headers["X-Content-Type-Options"] = "nosniff"
                    # Links in emails carry tokens: never leak a URL to another site.
                    headers["Referrer-Policy"] = "same-origin"
                    headers["X-Frame-Options"] = "DENY"
                    headers["Cross-Origin-Opener-Policy"] = "same-origin"
                    if https:
                        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
                await send(message)

            await app(scope, receive, send_with_headers)

        return wrapped

    return middleware

"""Security headers on every response, and a per-request CSP nonce for our scripts.

The policy allows scripts only from our own origin carrying this request's nonce,
no inline script, no inline style but our own stylesheet (the signed-out pages carry
it inline so they paint without waiting for another request; it is allowed by its
hash, so nothing a page might contain can add a style), no eval, no plugins, no
framing and no <base> tag. htmx is configured to need none of those (no injected
indicator style, no hx-on).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from importlib import resources

from litestar.enums import ScopeType
from litestar.types import Message, Scope, Send

NONCE_KEY = "portal_csp_nonce"


def inline_stylesheet() -> str:
    """The text of static/app.css, as the signed-out pages inline it."""
    return resources.files("portal.static").joinpath("app.css").read_text(encoding="utf-8")


INLINE_STYLE_HASH = (
    "'sha256-"
    + base64.b64encode(hashlib.sha256(inline_stylesheet().encode()).digest()).decode()
    + "'"
)


def csp(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            f"style-src 'self' {INLINE_STYLE_HASH}",
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


_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # Links in emails carry tokens: never leak a URL to another site.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


def with_security_headers(scope: Scope, send: Send, https: bool) -> Send:
    """Give the request a CSP nonce and add the security headers to its response
    (a header the page set itself, such as the card page's stricter referrer policy,
    is kept)."""
    nonce = secrets.token_urlsafe(18)
    scope[NONCE_KEY] = nonce  # type: ignore[literal-required]

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            present = {name.lower() for name, _ in headers}
            extra = [(b"content-security-policy", csp(nonce).encode()), *_HEADERS]
            if https:
                extra.append(_HSTS)
            headers.extend(pair for pair in extra if pair[0] not in present)
            message["headers"] = headers
        await send(message)

    return send_with_headers


def head_as_get(scope: Scope, send: Send) -> tuple[Scope, Send]:
    """Answer HEAD like GET without the body (every page is a GET; HEAD changes nothing)."""
    if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD":
        return scope, send

    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return {**scope, "method": "GET"}, send_headers_only

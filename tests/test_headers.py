"""Security headers on every response of every route: a strict Content-Security-Policy
with a per-request nonce, nosniff, a same-origin referrer policy, no framing, and HSTS
only when the portal is served over https. Pages carry no inline script, no inline
event handler and no inline style but our own stylesheet (the signed-out pages inline
it, allowed by its hash), so the policy needs no 'unsafe-inline'."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import httpx

from portal.app import create_app
from portal.config import Settings
from portal.db import engine as db_engine
from portal.db.tables import TABLES
from portal.security import INLINE_STYLE_HASH
from tests.support.http import CSRF_FIELD, make_client
from tests.support.world import PASSWORD, concrete, get_routes, requester

REQUIRED = {
    "default-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'none'"},
    "frame-ancestors": {"'none'"},
}


def policy(response: httpx.Response) -> dict[str, set[str]]:
    header = response.headers.get("content-security-policy", "")
    out: dict[str, set[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = set(words[1:])
    return out


def nonce_of(response: httpx.Response) -> str:
    found = [v for v in policy(response)["script-src"] if v.startswith("'nonce-")]
    assert len(found) == 1, policy(response)["script-src"]
    return found[0][len("'nonce-") : -1]


def assert_strict(response: httpx.Response, what: str) -> None:
    """The headers every response must carry, whatever it is."""
    csp = policy(response)
    assert csp, f"{what}: no Content-Security-Policy"
    for directive, values in REQUIRED.items():
        assert csp.get(directive) == values, f"{what}: {directive} {csp.get(directive)}"
    header = response.headers["content-security-policy"]
    for loose in ("unsafe-inline", "unsafe-eval", "unsafe-hashes", "*", "http:", "https:"):
        assert loose not in header.split() and f"'{loose}'" not in header, f"{what}: {loose}"
    script = csp["script-src"]
    assert "'self'" in script and all(v == "'self'" or v.startswith("'nonce-") for v in script)
    assert csp["style-src"] == {"'self'", INLINE_STYLE_HASH}, what
    assert response.headers["x-content-type-options"] == "nosniff", what
    assert response.headers["referrer-policy"] in ("same-origin", "no-referrer"), what
    assert response.headers["x-frame-options"] == "DENY", what
    assert "strict-transport-security" not in response.headers, f"{what}: HSTS over http"


INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<[^>]+\sstyle\s*=|<style[\s>]", re.I)
STYLE_TAG = re.compile(r"<style>(.*?)</style>", re.S)
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.I | re.S)
# The signed-out pages carry our own scripts inside them (one request on a first visit):
# an inline script must be one of these files, word for word.
OUR_SCRIPTS = {p.read_text() for p in (Path(__file__).parents[1] / "static").glob("*.js")}


def assert_page_fits_the_policy(response: httpx.Response, what: str) -> None:
    """Scripts only from our origin with this response's nonce — a file under /static/,
    or one of those files' text inside the page; no other inline code."""
    if not response.headers.get("content-type", "").startswith("text/html"):
        return
    body = response.text
    nonce = nonce_of(response)
    for attrs, inner in SCRIPT_TAG.findall(body):
        assert f'nonce="{nonce}"' in attrs, f"{what}: a script without this response's nonce"
        if inner.strip():
            assert "src=" not in attrs, f"{what}: a script with both src and text"
            assert inner in OUR_SCRIPTS, f"{what}: an inline script that is not our file"
        else:
            assert 'src="/static/' in attrs, f"{what}: a script not from /static/: {attrs}"
    body = SCRIPT_TAG.sub("", body)  # the markup around the scripts checked above
    assert not INLINE_HANDLER.search(body), f"{what}: an inline event handler"
    for inner in STYLE_TAG.findall(body):  # only the stylesheet the policy's hash allows
        digest = base64.b64encode(hashlib.sha256(inner.encode()).digest()).decode()
        assert f"'sha256-{digest}'" == INLINE_STYLE_HASH, f"{what}: an inline style"
    assert not INLINE_STYLE.search(STYLE_TAG.sub("", body)), f"{what}: an inline style"
    assert "hx-on" not in body and not re.search(r'=\s*"js:', body), f"{what}: code in htmx"


async def test_every_get_route_carries_the_headers_and_fits_the_policy(app, world):
    async with make_client(app, f"http://{world.a.host}.localhost") as anonymous:
        for route in get_routes(app):
            path = concrete(route, world, app)
            for client in requester(world, anonymous, route):
                for method in ("GET", "HEAD"):
                    r = await client.request(method, path)
                    what = f"{method} {path} ({r.status_code})"
                    assert_strict(r, what)
                    if method == "GET":
                        assert_page_fits_the_policy(r, what)


async def test_errors_redirects_forms_and_callbacks_carry_the_headers(app, world):
    me = world.customer("A1")
    token = CSRF_FIELD.search((await me.client.get("/account")).text).group(1)
    cases = {
        "404 page": await me.client.get("/no-such-page"),
        "404 record": await me.client.get("/invoices/2000000000"),
        "redirect": await me.client.get("/"),
        "422 form": await me.client.post(
            "/account/password",
            data={"_csrf_token": token, "current_password": "x", "new_password": "y"},
        ),
        "403 missing CSRF": await me.client.post("/account/password", data={}),
        "callback": await me.client.post("/payments/callback", content=b"{}"),
        "OPTIONS": await me.client.options("/invoices"),
        "405": await me.client.delete("/invoices"),
    }
    async with make_client(app, "http://nobody.localhost") as stranger:
        cases["unknown business"] = await stranger.get("/")
    async with make_client(app, "http://localhost") as bare:
        cases["bare domain"] = await bare.get("/")
    for what, r in cases.items():
        assert r.status_code < 500, (what, r.status_code)
        assert_strict(r, what)
        assert_page_fits_the_policy(r, what)
    assert cases["403 missing CSRF"].status_code == 403
    assert cases["404 record"].status_code == 404


async def test_a_new_nonce_on_every_response(world):
    client = world.customer("A1").client
    nonces = {nonce_of(await client.get("/invoices")) for _ in range(5)}
    assert len(nonces) == 5
    assert all(len(n) >= 16 for n in nonces)


async def test_htmx_is_configured_to_need_no_inline_style(world):
    page = (await world.customer("A1").client.get("/invoices")).text
    assert '"includeIndicatorCSS":false' in page


async def test_hsts_and_secure_cookies_only_over_https(app, world, settings):
    """The same app as deployed behind TLS (public_scheme https), on the same database."""
    engine = db_engine.current_engine()
    secure = create_app(settings.with_(public_scheme="https"))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=secure),
            base_url=f"https://{world.a.host}.localhost",
        ) as client:
            r = await client.get("/sign-in")
            hsts = r.headers["strict-transport-security"]
            age = int(re.search(r"max-age=(\d+)", hsts).group(1))
            assert age >= 31_536_000
            cookie = r.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie
            token = CSRF_FIELD.search(r.text).group(1)
            r = await client.post(
                "/sign-in",
                data={
                    "_csrf_token": token,
                    "email": world.customer("A1").email,
                    "password": PASSWORD,
                },
            )
            assert r.status_code == 303
            session = [c for c in r.headers.get_list("set-cookie") if "portal_session" in c]
            assert session and session[0].startswith("__Host-portal_session=")
            assert "Secure" in session[0] and "HttpOnly" in session[0]
            assert "strict-transport-security" in (await client.get("/nope")).headers
    finally:
        for table in TABLES:  # create_app bound the tables to a new engine: back to ours
            table._meta.db = engine
    r = await world.customer("A1").client.get("/invoices")
    assert "strict-transport-security" not in r.headers


def test_settings_default_to_http_without_hsts():
    assert Settings(database_url="sqlite:///x", secret_key="k").cookies_secure is False

"""HTTP steps against the app in-process: a client per host, forms with their CSRF token,
customer and office sign-in."""

from __future__ import annotations

import re
from typing import Any

import httpx
from litestar import Litestar

from portal.demo import DEMO_HOST

DEMO_BASE_URL = f"http://{DEMO_HOST}.localhost"
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


def make_client(app: Litestar, base_url: str = DEMO_BASE_URL) -> httpx.AsyncClient:
    """An HTTP client that calls the app in-process, for the host in `base_url`."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


async def csrf_from(client: httpx.AsyncClient, path: str) -> str:
    """The CSRF token from a page's form (and the cookie set with it)."""
    response = await client.get(path)
    match = CSRF_FIELD.search(response.text)
    assert match, f"no CSRF field on {path} ({response.status_code})"
    return match.group(1)


async def post_form(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, Any],
    *,
    csrf_page: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Submit a form the way a browser does: CSRF token from the page, then POST."""
    token = await csrf_from(client, csrf_page or path)
    return await client.post(path, data={"_csrf_token": token, **data}, headers=headers)


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    """Sign a client in on the customer sign-in page (asserts it worked)."""
    response = await post_form(
        client, "/sign-in", {"email": email, "password": password}, csrf_page="/sign-in"
    )
    assert response.status_code == 303, response.text
    return response


async def staff_sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    """Sign a client in on the office sign-in page (asserts it worked)."""
    response = await post_form(
        client,
        "/office/sign-in",
        {"email": email, "password": password},
        csrf_page="/office/sign-in",
    )
    assert response.status_code == 303, response.text
    return response


_tokens: dict[str, str] = {}


async def token_of(client: httpx.AsyncClient) -> str:
    """The client's CSRF token (one per CSRF cookie, so fetched once per cookie)."""
    cookie = client.cookies.get("portal_csrf")
    if cookie is None or cookie not in _tokens:
        response = await client.get("/sign-in")
        if response.status_code != 200:  # a signed-in customer: any page with a form
            response = await client.get("/invoices")
        cookie = client.cookies.get("portal_csrf")
        _tokens[cookie] = CSRF_FIELD.search(response.text).group(1)
    return _tokens[cookie]


async def post(client: httpx.AsyncClient, path: str, data: dict[str, Any], **kw) -> httpx.Response:
    """POST with the client's CSRF token (the real CSRF check runs)."""
    return await client.post(path, data={"_csrf_token": await token_of(client), **data}, **kw)

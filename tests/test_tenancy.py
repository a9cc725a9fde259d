"""The business is found from the host name; unknown hosts are a 404."""

from __future__ import annotations

import pytest

from portal.tenancy import host_label
from tests.support.http import make_client


@pytest.mark.parametrize(
    "host,expected",
    [
        ("xyzplumbing.localhost:8000", "xyzplumbing"),
        ("XYZPlumbing.LocalHost", "xyzplumbing"),
        ("localhost:8000", ""),
        ("localhost", ""),
        ("a.b.localhost", None),  # nested names are never businesses
        ("xyzplumbing.example.com", None),  # another domain
        ("-bad.localhost", None),
        ("[::1]:8000", None),
        ("", None),
    ],
)
def test_host_label(host, expected):
    assert host_label(host, "localhost") == expected


async def test_demo_host_serves_its_business(client, demo):
    response = await client.get("/sign-in")
    assert response.status_code == 200
    assert "XYZ Services" in response.text


async def test_unknown_host_is_a_plain_404(app, demo):
    async with make_client(app, "http://nope.localhost") as other:
        response = await other.get("/")
        assert response.status_code == 404
        assert "Page not found" in response.text
        assert "XYZ Services" not in response.text
        assert (await other.get("/invoices")).status_code == 404


async def test_bare_domain_is_a_neutral_page_without_a_list_of_businesses(app, demo):
    async with make_client(app, "http://localhost:8000") as bare:
        response = await bare.get("/")
        assert response.status_code == 200
        assert "Customer Portal" in response.text
        assert "XYZ Services" not in response.text and "xyzplumbing" not in response.text
        assert (await bare.get("/invoices")).status_code == 404


async def test_front_door_goes_to_the_portal(client, demo):
    response = await client.get("/", follow_redirects=False)
    assert response.status_code in (302, 303)


async def test_head_is_answered_like_get_without_a_body(client, demo):
    response = await client.head("/sign-in")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"].startswith("text/html")


async def test_security_headers_on_every_page(client, demo):
    for path in ("/sign-in", "/nope-not-a-page", "/invoices"):
        response = await client.get(path)
        policy = response.headers["content-security-policy"]
        assert "object-src 'none'" in policy and "base-uri 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert "strict-transport-security" not in response.headers  # only over https
    page = (await client.get("/sign-in")).text
    import re

    nonce = re.search(
        r"'nonce-([^']+)'", (await client.get("/sign-in")).headers["content-security-policy"]
    )
    assert nonce and 'nonce="' in page
    other = (await client.get("/sign-in")).headers["content-security-policy"]
    assert nonce.group(0) not in other  # a new nonce per request


async def test_hello_world_baseline_route(client):
    response = await client.get("/_hello")
    assert response.status_code == 200 and response.text == "Hello, world!"

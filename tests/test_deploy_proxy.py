"""The portal behind nginx the way production runs it: the site from
deploy/nginx/portal.conf.template with a self-signed certificate on a port other than 443,
TLS and HTTP/2, in front of two `portal serve` processes sharing one database (a fresh
PostgreSQL database in the PostgreSQL pass, one SQLite file otherwise), driven by the
system Chromium. What nginx did is read from its access log (connection, protocol,
upstream)."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_HOST
from portal.testing import CHROMIUM_ARGS, Server, chromium_path, start_servers, stop_server
from tests.support.browser import sign_in
from tests.support.proxies import TEST_BASE_DOMAIN, Nginx, needs_nginx

pytestmark = [pytest.mark.deploy, needs_nginx]


@pytest.fixture(scope="module")
def servers(var_dir: Path, database_url: str) -> Iterator[list[Server]]:
    """Two app processes on one database, configured as behind TLS."""
    started = start_servers(var_dir, 2, database_url, {"PORTAL_PUBLIC_SCHEME": "https"})
    yield started
    for server in started:
        stop_server(server)


@pytest.fixture(scope="module")
def proxy(servers: list[Server]) -> Iterator[Nginx]:
    with Nginx([f"127.0.0.1:{s.port}" for s in servers]) as nginx:
        yield nginx


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(params=["js", "nojs"])
def js(request: pytest.FixtureRequest) -> bool:
    return request.param == "js"


@pytest.fixture
def page(browser: Browser, js: bool) -> Iterator[Page]:
    # The certificate is self-signed: test_certificate checks it; the browser accepts it.
    context = browser.new_context(java_script_enabled=js, ignore_https_errors=True)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def base_url(proxy: Nginx) -> str:
    return proxy.url(DEMO_HOST, "")


def upstreams(servers: list[Server]) -> set[str]:
    return {f"127.0.0.1:{s.port}" for s in servers}


def test_certificate_covers_every_business_and_offers_http2(proxy: Nginx):
    context = ssl.create_default_context(cafile=str(proxy.certificate))
    context.set_alpn_protocols(["h2", "http/1.1"])
    for name in (f"{DEMO_HOST}.{TEST_BASE_DOMAIN}", TEST_BASE_DOMAIN):
        with (
            socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.selected_alpn_protocol() == "h2", name
    # A host name that is not the portal's gets no handshake at all.
    with (
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        ssl._create_unverified_context().wrap_socket(raw, server_hostname="elsewhere.example")


def test_plain_http_is_sent_to_tls_on_the_public_port(proxy: Nginx):
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
    connection.request(
        "GET", "/invoices?page=2", headers={"Host": f"{DEMO_HOST}.{TEST_BASE_DOMAIN}"}
    )
    answer = connection.getresponse()
    assert answer.status == 301
    assert answer.getheader("Location") == proxy.url(DEMO_HOST, "/invoices?page=2")
    connection.close()


def test_customer_signs_in_over_http2_served_by_both_processes(
    proxy: Nginx, servers: list[Server], page: Page, js: bool
):
    seen = len(proxy.access_log())
    page.goto(base_url(proxy) + "/sign-in")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # The stylesheet applies (it defines the page's colours): inline on the sign-in page,
    # whose prefetch of the file the signed-in pages link comes through the proxy too.
    assert page.evaluate("getComputedStyle(document.body).getPropertyValue('--ink')")

    stylesheet_url = page.evaluate(
        "document.querySelector('link[rel=stylesheet], link[rel=prefetch]').href"
    )
    loaded = proxy.logged_since(seen, "GET " + stylesheet_url.split(str(proxy.https_port))[1])
    sign_in_page = [e for e in loaded if e["uri"] == "/sign-in"]
    stylesheet = [e for e in loaded if e["uri"].startswith("/static/") and ".css" in e["uri"]]
    assert [e["status"] for e in sign_in_page + stylesheet] == [200, 200], loaded
    assert {e["protocol"] for e in loaded} == {"HTTP/2.0"}, loaded
    assert {e["upstream"] for e in loaded} == upstreams(servers), loaded  # round-robin

    sign_in(page, base_url(proxy))  # the form posts with its CSRF token
    expect(page.get_by_role("heading", name="Invoices")).to_be_visible()
    expect(page.get_by_text("INV-").first).to_be_visible()
    page.get_by_role("link", name="History").click()
    expect(page).to_have_url(base_url(proxy) + "/history")
    expect(page.get_by_role("heading", name="History")).to_be_visible()

    answered = proxy.logged_since(seen, "GET /history")
    assert all(e["status"] < 500 for e in answered), answered
    # Signed in on one process, the tabs came from both: the session is in the database.
    since_sign_in = answered[[e["method"] for e in answered].index("POST") :]
    assert {e["upstream"] for e in since_sign_in} == upstreams(servers), answered


def test_connection_stays_open_across_a_pause(proxy: Nginx, browser: Browser):
    """A customer reads the sign-in page, pauses, then signs in: the same TLS connection
    carries both (nginx keeps it 75 s; the app server alone would close it after 5 s), and
    the sign-in after the pause is answered, not a 502 from a stale upstream connection."""
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        seen = len(proxy.access_log())
        page.goto(base_url(proxy) + "/sign-in")
        page.get_by_label("Email").fill("jane@example.com")
        page.get_by_label("Password").fill("jane-demo-pass")
        page.wait_for_timeout(11_000)  # the pause is the point of the test
        before = proxy.access_log()[seen:]
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(base_url(proxy) + "/invoices")
        after = proxy.logged_since(seen, "POST /sign-in")[len(before) :]
    finally:
        context.close()
    assert before and after
    assert all(e["status"] < 500 for e in after), after
    assert {e["connection"] for e in before + after} == {before[0]["connection"]}, before + after


def test_large_upload_reaches_the_app_and_gets_its_message(proxy: Nginx, page: Page, js: bool):
    """An office uploads a 3 MB logo: the app's own message answers (nginx's default body
    limit of 1 MB would answer with its bare 413 page instead)."""
    page.goto(base_url(proxy) + "/office/sign-in")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()
    big = {"name": "logo.png", "mimeType": "image/png", "buffer": b"\x89PNG" + b"0" * 3_000_000}
    page.get_by_label("Logo", exact=True).set_input_files(big)
    if not js:
        page.get_by_role("button", name="Save", exact=True).click()
    expect(
        page.get_by_text(re.compile(r"That file is .+ MB; a logo can be at most 2 MB\."))
    ).to_be_visible()

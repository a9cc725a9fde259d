"""Issue 18.2: no page moves when the business's logo arrives late. The logo is held
back until the page has painted (the signed-out pages carry it inside them); then the page's layout-shift entries (with JavaScript
on, from a PerformanceObserver) must add up to zero and nothing may have moved (both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from portal.testing import Server
from tests.support.browser import sign_in

COLLECT_SHIFTS = """
window.__shifts = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__shifts.push(entry.value);
}).observe({type: "layout-shift", buffered: true});
"""


@pytest.fixture
def phone(browser: Browser, js: bool) -> Iterator[Page]:
    """A phone-sized page (as Lighthouse's mobile run) whose layout shifts are recorded."""
    context = browser.new_context(
        java_script_enabled=js, viewport={"width": 412, "height": 823}, device_scale_factor=2
    )
    context.set_default_timeout(10_000)
    context.add_init_script(COLLECT_SHIFTS)
    yield context.new_page()
    context.close()


def _places(page: Page) -> list[dict | None]:
    """Where the header's name, the main heading and the main region are."""
    return [
        page.locator(".brand-name span").bounding_box(),
        page.locator("main h1").first.bounding_box(),
        page.locator("main").bounding_box(),
    ]


def _stylesheets_applied(page: Page, url: str) -> None:
    """Wait until every stylesheet has loaded: a browser paints nothing before, but the
    layout read from outside the page is the unstyled one until then (seen on a loaded
    machine). Polled from Python: with scripting off the page's timers do not run."""
    for _ in range(200):
        if page.evaluate(
            "[...document.querySelectorAll('link[rel=stylesheet]')].every(l => l.sheet)"
        ):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"{url}: the stylesheet did not load")


def _with_late_logo(page: Page, url: str, js: bool) -> None:
    """Open `url` with the logo held back until the page has painted, then let it come."""
    held: list[Route] = []
    page.route("**/logo/**", lambda route: held.append(route))  # and no HTTP cache
    try:
        page.goto(url, wait_until="domcontentloaded")
        expect(page.locator("main h1").first).to_be_visible()
        for _ in range(200):  # the logo's request may come just after the heading paints
            if held:
                break
            page.wait_for_timeout(50)
        assert held, f"{url}: the page asked for no logo"
        _stylesheets_applied(page, url)
        before = _places(page)
        for route in held:
            route.continue_()
        logo = page.locator(".brand-name img")
        expect(logo).to_have_js_property("complete", True)
        assert logo.evaluate("img => img.naturalWidth") > 0, f"{url}: the logo did not load"
        page.wait_for_timeout(200)  # a shift is reported after the frame it happened in
        assert _places(page) == before, f"{url}: the page moved when the logo arrived"
        if js:
            shifts = page.evaluate("window.__shifts")
            assert sum(shifts) == 0, f"{url}: layout shifts {shifts}"
    finally:
        page.unroute("**/logo/**")


def test_the_sign_in_page_carries_its_logo_and_does_not_move(server: Server, phone: Page, js: bool):
    """The signed-out pages carry a small logo inside them (one request on a first visit
    over a slow link): nothing is asked for, the logo is there at first paint, nothing
    moves while the page finishes loading."""
    asked: list[str] = []
    phone.route("**/logo/**", lambda route: (asked.append(route.request.url), route.abort()))
    try:
        phone.goto(server.url("/sign-in"), wait_until="domcontentloaded")
        expect(phone.locator("main h1")).to_be_visible()
        _stylesheets_applied(phone, "/sign-in")
        logo = phone.locator(".brand-name img")
        expect(logo).to_have_js_property("complete", True)
        assert logo.evaluate("img => img.naturalWidth") > 0, "the logo is not inside the page"
        before = _places(phone)
        phone.wait_for_load_state("load")
        phone.wait_for_timeout(200)  # a shift is reported after the frame it happened in
        assert _places(phone) == before, "the sign-in page moved while it loaded"
        if js:
            shifts = phone.evaluate("window.__shifts")
            assert sum(shifts) == 0, f"layout shifts {shifts}"
        assert asked == [], "the sign-in page asked for its logo as a file"
    finally:
        phone.unroute("**/logo/**")


def test_no_customer_page_moves_when_the_logo_arrives_late(server: Server, phone: Page, js: bool):
    sign_in(phone, server.base_url)
    phone.goto(server.url("/history"))
    invoice = phone.locator('main a[href^="/invoices/"]').first.get_attribute("href")
    location = phone.locator('main a[href^="/history?location="]').first.get_attribute("href")
    phone.goto(server.url("/memberships"))
    membership = phone.locator('main a[href^="/memberships/"]').first.get_attribute("href")
    for path in (
        "/invoices",
        "/history",
        location,
        "/memberships",
        membership,
        "/schedule",
        "/account",
        invoice,
    ):
        _with_late_logo(phone, server.url(path), js)

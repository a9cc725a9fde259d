"""The demo portal opens in a real browser; tabs swap with JS and load without."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.support.browser import sign_in


def test_demo_portal_opens_on_its_sign_in_page(server, page: Page, js: bool):
    page.goto(server.url("/"))
    expect(page).to_have_title("Sign in · XYZ Services")
    expect(page.get_by_role("heading", name="Sign in to XYZ Services")).to_be_visible()
    expect(page.get_by_role("link", name="(555) 010-4477").first).to_be_visible()
    expect(page.get_by_role("link", name="Request an invitation")).to_be_visible()
    expect(page.get_by_role("link", name="Forgot password?")).to_be_visible()


def test_tab_switch_swaps_region_with_js_and_loads_page_without(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    expect(page).to_have_url(server.url("/history"))
    expect(page).to_have_title("History · XYZ Services")
    expect(page.get_by_role("link", name="History")).to_have_attribute("aria-current", "page")
    if js:
        # htmx swapped one region with one request; the page (and its scripts) stayed.
        assert requests == [server.url("/history")]
        assert page.evaluate("typeof htmx") == "object"
    else:
        assert requests[0] == server.url("/history")  # a plain page load


def test_unknown_business_is_404(server, page: Page, js: bool):
    response = page.goto(f"http://nope.localhost:{server.port}/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()

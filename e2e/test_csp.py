"""Every page, in a real Chromium with JavaScript on, under the strict CSP: zero
violations. The `page` fixture fails a test on any CSP console error or script error;
this module also listens for `securitypolicyviolation` events in each document, and
uses htmx (tab swaps, inline saves, the card page) so its requests run under the
policy too."""

from __future__ import annotations

import re
from datetime import date

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from e2e.conftest import Server
from e2e.helpers import sign_in
from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD

LISTEN = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


@pytest.fixture(params=["js"])
def js(request: pytest.FixtureRequest) -> bool:
    """JavaScript on only: with it off there is no script for the policy to stop."""
    return True


@pytest.fixture
def watched(context: BrowserContext, page: Page) -> Page:
    context.add_init_script(LISTEN)
    return page


def visit(page: Page, url: str, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)
    assert_no_violations(page, url)


def assert_no_violations(page: Page, where: str) -> None:
    page.wait_for_load_state("load")
    found = page.evaluate("window.__csp || []")
    assert not found, f"CSP violations on {where}: {found}"


def test_customer_pages_receipt_and_card_page(server: Server, watched: Page):
    page = watched
    base = server.base_url
    for path in ("/sign-in", "/invite", "/forgot"):
        visit(page, base + path)
    visit(page, base + "/confirm?token=not-a-real-token", 404)
    visit(page, base + "/reset?token=not-a-real-token", 404)
    sign_in(page, base)
    assert_no_violations(page, "/invoices")
    # Tabs by htmx swaps, then each as a whole page.
    nav = page.get_by_role("navigation", name="Portal sections")
    for name in ("History", "Memberships", "Scheduler", "Invoices"):
        nav.get_by_role("link", name=name, exact=True).click()
        expect(nav.get_by_role("link", name=name, exact=True)).to_have_attribute(
            "aria-current", "page"
        )
        assert_no_violations(page, f"{name} tab (htmx)")
    for path in ("/invoices", "/history", "/memberships", "/schedule", "/account"):
        visit(page, base + path)
    # An invoice page, one location's history, a membership's visits.
    visit(page, base + "/history")
    page.get_by_role("link", name=re.compile(r"^INV-")).first.click()
    expect(page).to_have_url(re.compile(r"/invoices/\d+$"))
    assert_no_violations(page, "invoice page")
    visit(page, base + "/memberships")
    page.get_by_role("link", name=re.compile(r"^Visits for ")).first.click()
    expect(page).to_have_url(re.compile(r"/memberships/\d+$"))
    assert_no_violations(page, "membership visits")
    # Pay: the sandbox card page, then the receipt.
    visit(page, base + "/invoices")
    page.get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Pay in full").click()
    expect(page).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    assert_no_violations(page, "sandbox card page")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry date (MM / YY)").fill(f"12 / {(date.today().year + 3) % 100:02d}")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert_no_violations(page, "receipt")
    # Error pages.
    visit(page, base + "/no-such-page", 404)
    visit(page, base + "/invoices/2000000000", 404)
    visit(page, f"http://localhost:{server.port}/")  # the bare domain's page
    visit(page, f"http://nobody.localhost:{server.port}/", 404)


def test_office_pages(server: Server, watched: Page):
    page = watched
    base = server.base_url
    visit(page, base + "/office/sign-in")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()
    assert_no_violations(page, "office settings")
    # An inline save (htmx) of one setting.
    page.get_by_label("Name", exact=True).fill("XYZ Services")
    page.get_by_label("Name", exact=True).blur()
    assert_no_violations(page, "inline save")
    for path in (
        "/office/settings",
        "/office/bookings",
        "/office/customers",
        "/office/notifications",
        "/office/emails",
    ):
        visit(page, base + path)
    visit(page, base + "/office/bookings")
    book = page.get_by_role("link", name="Book job")
    if book.count():
        href = book.first.get_attribute("href")
        book.first.click()  # the Book-job form opens inline (htmx)
        expect(page.get_by_role("button", name="Book job").first).to_be_visible()
        assert_no_violations(page, "Book job form")
        visit(page, base + href.removesuffix("/book"))
    visit(page, base + "/office/customers")
    page.get_by_role("searchbox").fill("Jane")
    page.get_by_role("searchbox").press("Enter")
    page.get_by_role("link", name=re.compile("Jane Doe")).first.click()
    expect(page).to_have_url(re.compile(r"/office/customers/\d+$"))
    assert_no_violations(page, "a customer")
    visit(page, base + "/office/notifications")
    page.get_by_role("link", name="Invoice email").click()
    expect(page).to_have_url(re.compile(r"/office/notifications/\w+"))
    assert_no_violations(page, "a notification template")
    visit(page, base + "/office/customers/2000000000", 404)

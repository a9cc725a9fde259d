"""Every page passes axe-core's WCAG 2.2 A and AA rules, works at 320 px wide (the
same as 200 % zoom on a 640 px screen) with no word broken mid-word, and can be used with
the keyboard alone."""

from __future__ import annotations

import datetime

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.a11y import assert_accessible, assert_no_horizontal_scroll
from tests.support.browser import broken_words, sign_in

PUBLIC_PAGES = ["/sign-in", "/invite", "/forgot", "/confirm?token=not-a-real-token"]
CUSTOMER_PAGES = [
    "/invoices",
    "/history",
    "/memberships",
    "/schedule",
    "/account",
    "/account/access",
]


@pytest.fixture(params=[1280, 320], ids=["desktop", "320px"])
def width(request) -> int:
    return request.param


@pytest.fixture
def sized_page(browser: Browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    page = context.new_page()
    yield page
    context.close()


def _first_link(page: Page, server, path: str, prefix: str) -> str:
    """The first link on `path` whose address starts with `prefix`."""
    page.goto(server.url(path))
    return page.locator(f"a[href^='{prefix}']").first.get_attribute("href")


def _check_pages(page: Page, server, paths: list[str]) -> None:
    for path in paths:
        page.goto(server.url(path))
        assert_accessible(page)
        assert_no_horizontal_scroll(page)
        # Tables and filter rows squeezed words to "Revok e" / "Sen t" before. (A web
        # address may break anywhere: at 320 px a long one cannot fit otherwise.)
        broken = [w for w in broken_words(page.locator("body")) if "://" not in w]
        assert broken == [], path


def test_public_pages_are_accessible(server, sized_page: Page, width: int):
    _check_pages(sized_page, server, PUBLIC_PAGES)


def test_customer_pages_are_accessible(server, sized_page: Page, width: int):
    sign_in(sized_page, server.base_url)
    _check_pages(sized_page, server, CUSTOMER_PAGES)


def test_error_pages_are_accessible(server, sized_page: Page, width: int):
    sized_page.goto(server.url("/no-such-page"))
    assert_accessible(sized_page)
    sized_page.goto(f"http://localhost:{server.port}/")
    assert_accessible(sized_page)


def test_sign_in_and_tabs_with_the_keyboard_only(server, page: Page, js: bool):
    page.goto(server.url("/sign-in"))
    page.keyboard.press("Tab")  # skip link first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Email").focus()
    page.keyboard.type("jane@example.com")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("jane-demo-pass")
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.url("/invoices"))
    history = page.get_by_role("link", name="History")
    history.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    if js:
        # After htmx swaps the region, focus moves into the new content.
        expect(page.locator("#main")).to_be_focused()


def test_detail_pages_are_accessible(server, sized_page: Page, width: int):
    """An invoice, a membership's visits, one location's history."""
    sign_in(sized_page, server.base_url)
    pages = [
        _first_link(sized_page, server, "/invoices", "/invoices/"),
        _first_link(sized_page, server, "/memberships", "/memberships/"),
        _first_link(sized_page, server, "/history", "/history?location="),
    ]
    _check_pages(sized_page, server, pages)


def test_office_pages_are_accessible(server, sized_page: Page, width: int):
    _check_pages(sized_page, server, ["/office/sign-in"])
    sized_page.get_by_label("Email").fill("admin@xyzservices.example")
    sized_page.get_by_label("Password").fill("admin-demo-pass")
    sized_page.get_by_role("button", name="Sign in").click()
    expect(sized_page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()
    paths = ["/office/settings", "/office/bookings", "/office/customers", "/office/notifications"]
    paths += ["/office/staff", "/office/password", "/office/reset?token=none"]
    paths.append("/office/emails")
    paths += ["/office/payments", "/office/activity", "/office/api-keys", "/office/webhooks"]
    paths.append("/office/csv")
    paths.append(_first_link(sized_page, server, "/office/customers", "/office/customers/"))
    paths.append(_first_link(sized_page, server, "/office/notifications", "/office/notifications/"))
    customer = paths[-2]
    paths.append(_first_link(sized_page, server, customer, "/office/invoices/"))
    _check_pages(sized_page, server, paths)


def test_pay_with_the_keyboard_only(server, page: Page, js: bool):
    """Tick an invoice, pay in full on the card page and reach the receipt, keys only."""
    sign_in(page, server.base_url)
    first = page.get_by_role("checkbox").first
    first.focus()
    page.keyboard.press("Space")
    expect(first).to_be_checked()
    page.get_by_role("button", name="Pay in full").focus()
    page.keyboard.press("Enter")
    card = page.get_by_label("Card number")
    expect(card).to_be_visible()
    if js:  # axe is a script: it runs only where the page allows scripts
        assert_accessible(page)
    card.focus()
    page.keyboard.type("4242 4242 4242 4242")
    page.keyboard.press("Tab")
    page.keyboard.type("12 / 39")
    page.keyboard.press("Tab")
    page.keyboard.type("123")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Payment received", level=1)).to_be_visible()
    if js:
        assert_accessible(page)


def test_request_an_appointment_with_the_keyboard_only(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    page.goto(server.url("/schedule"))
    location = page.get_by_label("Service location")
    location.focus()
    page.keyboard.press("ArrowDown")  # the first location
    expect(location).not_to_have_value("")
    service = page.get_by_label("Drain cleaning" if js else "Plumbing repair")
    service.focus()
    page.keyboard.press("Space")
    expect(service).to_be_checked()
    day = (datetime.date.today() + datetime.timedelta(days=9 if js else 11)).isoformat()
    page.get_by_label("Date").first.fill(day)  # typing into a date field is the keyboard
    page.get_by_role("button", name="Send request").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Requested").first).to_be_visible()

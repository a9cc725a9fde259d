"""Every page passes axe-core's WCAG 2.2 A and AA rules, works at 320 px wide (the
same as 200 % zoom on a 640 px screen) and can be used with the keyboard alone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e.a11y import assert_accessible, assert_no_horizontal_scroll
from e2e.helpers import sign_in

PUBLIC_PAGES = ["/sign-in", "/invite", "/forgot", "/confirm?token=not-a-real-token"]
CUSTOMER_PAGES = ["/invoices", "/history", "/memberships", "/schedule", "/account"]


@pytest.fixture(params=[1280, 320], ids=["desktop", "320px"])
def width(request) -> int:
    return request.param


@pytest.fixture
def sized_page(browser: Browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    page = context.new_page()
    yield page
    context.close()


def test_public_pages_are_accessible(server, sized_page: Page, width: int):
    for path in PUBLIC_PAGES:
        sized_page.goto(server.url(path))
        assert_accessible(sized_page)
        assert_no_horizontal_scroll(sized_page)


def test_customer_pages_are_accessible(server, sized_page: Page, width: int):
    sign_in(sized_page, server.base_url)
    for path in CUSTOMER_PAGES:
        sized_page.goto(server.url(path))
        assert_accessible(sized_page)
        assert_no_horizontal_scroll(sized_page)


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

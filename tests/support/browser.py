"""Steps shared by the browser tests (e2e/), through the pages as a person uses them."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from portal.demo import JANE_EMAIL, JANE_PASSWORD


def sign_in(
    page: Page, base_url: str, email: str = JANE_EMAIL, password: str = JANE_PASSWORD
) -> None:
    """Sign in through the sign-in page and wait for the Invoices tab."""
    page.goto(base_url + "/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base_url + "/invoices")

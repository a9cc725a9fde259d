"""Staff passwords in a real browser, JavaScript on and off: a staff member changes their
password on "Your password"; an administrator sends a password reset link from the Staff
page, and the staff member chooses a new password from the email (a real SMTP server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from portal.testing import MailSink, Server, first_link, start_server, stop_server
from tests.support.browser import import_business_into
from tests.support.businesses import NEW_ADMIN_PASSWORD, NEW_OFFICE_PASSWORD

NEW_PASSWORD = "copper pipes hum at dawn"


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sink: MailSink) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("e2e-staff"), {"PORTAL_SMTP_URL": sink.url})
    yield srv
    stop_server(srv)


def office_sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()


def stays_on_the_page(page: Page, js: bool) -> None:
    """With JavaScript the form was swapped in place: the page was not loaded again."""
    if js:
        assert page.evaluate("window.sameDocument") is True


def test_staff_change_their_password(server: Server, page: Page, js: bool, tmp_path):
    host = f"pwchange{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    desk = f"desk@{host}.example"
    office_sign_in(page, base, desk, NEW_OFFICE_PASSWORD)

    page.get_by_role("link", name="Your password").click()
    expect(page.get_by_role("heading", name="Your password", level=1)).to_be_visible()
    if js:
        page.evaluate("window.sameDocument = true")
    page.get_by_label("Current password").fill("not my password")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("That isn't your current password.")).to_be_visible()
    stays_on_the_page(page, js)

    page.get_by_label("Current password").fill(NEW_OFFICE_PASSWORD)
    page.get_by_label("New password").fill("password")  # a common password
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#f-new_password-error")).to_be_visible()
    expect(page.get_by_label("New password")).to_have_attribute("aria-invalid", "true")
    stays_on_the_page(page, js)

    page.get_by_label("Current password").fill(NEW_OFFICE_PASSWORD)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your password was changed. Your other devices were signed out."
    )
    stays_on_the_page(page, js)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You're signed out.")).to_be_visible()
    page.get_by_label("Email").fill(desk)
    page.get_by_label("Password").fill(NEW_OFFICE_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("That email and password don't match our records.")).to_be_visible()
    office_sign_in(page, base, desk, NEW_PASSWORD)


def test_admin_sends_a_reset_link_and_staff_choose_a_new_password(
    server: Server, sink: MailSink, page: Page, js: bool, tmp_path
):
    host = f"pwreset{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    desk = f"desk@{host}.example"
    office_sign_in(page, base, f"boss@{host}.example", NEW_ADMIN_PASSWORD)

    page.get_by_role("link", name="Staff", exact=True).click()
    expect(page.get_by_role("heading", name="Staff", level=1)).to_be_visible()
    expect(page.get_by_role("cell", name=desk)).to_be_visible()
    page.get_by_role("button", name="Send password reset link to Dan Desk").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"We've sent a password reset link to {desk}. It works once, for 1 hour"
    )
    [message] = sink.wait_for(desk)
    link = first_link(message)
    assert link.startswith(base + "/office/reset?token=")
    page.get_by_role("button", name="Sign out").click()

    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    expect(page.get_by_text(f"For {desk}, staff of Brightwater Plumbing.")).to_be_visible()
    page.get_by_label("New password").fill("12345678")
    page.get_by_role("button", name="Save password and sign in").click()
    expect(page.locator("#f-password-error")).to_be_visible()
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save password and sign in").click()
    expect(page).to_have_url(base + "/office/password?done=reset")
    expect(page.get_by_role("status")).to_have_text(
        "Your new password is saved and you're signed in. Other devices were signed out."
    )
    expect(page.get_by_text(f"Signed in as {desk}.")).to_be_visible()

    page.goto(link)
    expect(page.get_by_role("heading", name="This link was already used")).to_be_visible()
    expect(page.get_by_role("link", name="Office sign in")).to_be_visible()

"""Bob registers through the real email: request an invitation, read the email from a
real SMTP server, follow the link, create a password, sign out, sign back in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from portal.testing import MailSink, Server, first_link, stop_server

BOB = "bob@example.com"


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture
def mail_server(tmp_path_factory, start_demo_server, sink: MailSink) -> Iterator[Server]:
    """A fresh portal per test (Bob can register only once) that sends through `sink`."""
    srv = start_demo_server(tmp_path_factory.mktemp("e2e-accounts"), {"PORTAL_SMTP_URL": sink.url})
    yield srv
    stop_server(srv)


def test_bob_registers_from_the_email_and_signs_back_in(
    mail_server: Server, sink: MailSink, page: Page, js: bool
):
    base = mail_server.base_url
    page.goto(base + "/")
    page.get_by_role("link", name="Request an invitation").click()
    expect(page).to_have_title("Request an invitation · XYZ Services")
    page.get_by_label("Email").fill(BOB)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_contain_text(
        "If this email is on your account with XYZ Services, we've sent you a link."
    )

    [message] = sink.wait_for(BOB)
    assert message["Subject"] == "Create your password for the XYZ Services customer portal"
    link = first_link(message)
    assert link.startswith(base + "/confirm?token=")

    page.goto(link)
    expect(page.get_by_role("heading", name="Create your password")).to_be_visible()
    expect(page.get_by_text(f"For {BOB}.")).to_be_visible()
    # The browser itself asks for 8 characters before sending (the server checks too).
    expect(page.get_by_label("New password")).to_have_attribute("minlength", "8")
    page.get_by_label("New password").fill("bob fixes leaky taps")
    page.get_by_role("button", name="Create password and sign in").click()

    expect(page).to_have_url(base + "/invoices")
    expect(page.get_by_role("heading", name="Invoices", level=1)).to_be_visible()
    expect(page.get_by_text("Bob Stone")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(base + "/sign-in?done=signed-out")
    expect(page.get_by_text("You're signed out.")).to_be_visible()
    page.goto(base + "/invoices")
    expect(page).to_have_url(base + "/sign-in?next=/invoices")

    page.get_by_label("Email").fill(BOB)
    page.get_by_label("Password").fill("bob fixes leaky taps")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/invoices")
    expect(page.get_by_text("Bob Stone")).to_be_visible()

    # The link was used: opening it again explains and offers a new one.
    page.goto(link)
    expect(page.get_by_role("heading", name="This link was already used")).to_be_visible()
    expect(page.get_by_role("link", name="Send me a new link")).to_be_visible()

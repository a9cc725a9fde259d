"""Every kind of emailed link survives a mail scanner (issue 16.1), and the emails that
help (16.2), in a real browser with JavaScript on and off: each link is opened five times
with plain GETs, as Safe Links and the like do, and then still works in the browser."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from portal.demo import JANE_EMAIL, OFFICE_EMAIL
from portal.testing import MailSink, Server, first_link, stop_server
from tests.support.browser import sign_in

SAME_ANSWER = "If this email is on your account with XYZ Services, we've sent you a link."


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture
def mail_server(tmp_path_factory, start_demo_server, sink: MailSink) -> Iterator[Server]:
    srv = start_demo_server(tmp_path_factory.mktemp("e2e-links"), {"PORTAL_SMTP_URL": sink.url})
    yield srv
    stop_server(srv)


def scanner_opens(link: str, times: int = 5) -> None:
    """Plain GETs with no cookies, each as a new client, as a mail scanner opens links."""
    url = urlsplit(link)
    for _ in range(times):
        response = httpx.get(
            f"http://127.0.0.1:{url.port}{url.path}?{url.query}",
            headers={"Host": url.netloc, "User-Agent": "SafeLinks-Scanner/1.0"},
        )
        assert response.status_code == 200, response.text


def newest_link(sink: MailSink, address: str, count: int, subject: str) -> str:
    message = sink.wait_for(address, count)[count - 1]
    assert message["Subject"] == subject
    return first_link(message)


def ask(page: Page, base: str, path: str, email: str, button: str) -> None:
    page.goto(base + path)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_role("button", name=button).click()
    expect(page.get_by_role("status")).to_contain_text(SAME_ANSWER)


def sign_out(page: Page, base: str) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(base + "/sign-in?done=signed-out")


def test_every_emailed_link_survives_five_scanner_opens(
    mail_server: Server, sink: MailSink, page: Page, js: bool
):
    base = mail_server.base_url

    # Confirmation (an invitation for an email on a record).
    bob = "bob@example.com"
    ask(page, base, "/invite", bob, "Send me a link")
    link = newest_link(sink, bob, 1, "Create your password for the XYZ Services customer portal")
    scanner_opens(link)
    page.goto(link)
    page.get_by_label("New password").fill("bob fixes leaky taps")
    page.get_by_role("button", name="Create password and sign in").click()
    expect(page).to_have_url(base + "/invoices")
    sign_out(page, base)

    # "Finish creating your account": a never-registered email asked for a reset.
    never = "customer2006@example.net"
    ask(page, base, "/forgot", never, "Send me a link")
    link = newest_link(sink, never, 1, "Finish creating your XYZ Services portal account")
    scanner_opens(link)
    page.goto(link)
    page.get_by_label("New password").fill("a finished account")
    page.get_by_role("button", name="Create password and sign in").click()
    expect(page).to_have_url(base + "/invoices")
    sign_out(page, base)

    # Password reset.
    ask(page, base, "/forgot", bob, "Send me a link")
    link = newest_link(sink, bob, 2, "Reset your XYZ Services portal password")
    scanner_opens(link)
    page.goto(link)
    page.get_by_label("New password").fill("bob mends old pipes")
    page.get_by_role("button", name="Save password and sign in").click()
    expect(page).to_have_url(base + "/invoices")
    sign_out(page, base)

    # Sign-in link, asked for beside the password.
    page.goto(base + "/sign-in")
    page.get_by_label("Email").fill(JANE_EMAIL)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("status")).to_contain_text(SAME_ANSWER)
    link = newest_link(
        sink, JANE_EMAIL, 1, "Your sign-in link for the XYZ Services customer portal"
    )
    scanner_opens(link)
    page.goto(link)
    expect(page.get_by_text(f"You're signing in as {JANE_EMAIL}.")).to_be_visible()
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/invoices")
    expect(page.get_by_role("heading", name="Invoices", level=1)).to_be_visible()
    sign_out(page, base)
    page.goto(link)
    expect(page.get_by_role("heading", name="This link was already used")).to_be_visible()

    # A staff member's reset link, sent by the administrator.
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill("admin@xyzservices.example")
    page.get_by_label("Password").fill("admin-demo-pass")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Staff", exact=True).click()
    page.get_by_role("button", name="Send password reset link to Olivia Office").click()
    expect(page.get_by_role("status")).to_contain_text("We've sent a password reset link")
    link = first_link(sink.wait_for(OFFICE_EMAIL)[0])
    page.get_by_role("button", name="Sign out").click()
    scanner_opens(link)
    page.goto(link)
    page.get_by_label("New password").fill("office desk lamp glows")
    page.get_by_role("button", name="Save password and sign in").click()
    expect(page).to_have_url(base + "/office/password?done=reset")


def test_already_registered_and_never_registered_get_the_email_that_helps(
    mail_server: Server, sink: MailSink, page: Page, js: bool
):
    base = mail_server.base_url
    # Jane is registered and asks for an invitation: the page says what it says to all.
    ask(page, base, "/invite", JANE_EMAIL, "Send me a link")
    [message] = sink.wait_for(JANE_EMAIL)
    assert message["Subject"] == "You already have a XYZ Services portal account"
    body = message.get_body(("plain",)).get_content()
    assert f"{base}/forgot" in body and "token" not in body
    page.goto(first_link(message))
    expect(page.get_by_role("heading", name="Sign in to XYZ Services")).to_be_visible()
    sign_in(page, base)

    # Bob never registered and asks for a sign-in link: the page says the same; the email
    # tells him how to finish.
    sign_out(page, base)
    page.get_by_label("Email").fill("bob@example.com")
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("status")).to_contain_text(SAME_ANSWER)
    [message] = sink.wait_for("bob@example.com")
    assert message["Subject"] == "Finish creating your XYZ Services portal account"
    page.goto(first_link(message))
    expect(page.get_by_role("heading", name="Create your password")).to_be_visible()

"""Passkeys in Chromium with the DevTools virtual authenticator (CDP `WebAuthn`): add one
under Your account › Security, sign out, sign in with it, remove it — and with JavaScript
off, the pages say passkeys need it and offer the emailed link."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from portal.demo import JANE_EMAIL
from portal.testing import MailSink, Server, stop_server
from tests.support.browser import sign_in


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture
def mail_server(tmp_path_factory, start_demo_server, sink: MailSink) -> Iterator[Server]:
    srv = start_demo_server(tmp_path_factory.mktemp("e2e-passkeys"), {"PORTAL_SMTP_URL": sink.url})
    yield srv
    stop_server(srv)


def virtual_authenticator(context: BrowserContext, page: Page) -> dict:
    """A platform authenticator that holds passkeys and says yes (user verified)."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    made = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return {"cdp": cdp, "id": made["authenticatorId"]}


def presence(authenticator: dict, on: bool) -> None:
    """Whether the virtual authenticator answers by itself (a touch) or waits."""
    authenticator["cdp"].send(
        "WebAuthn.setAutomaticPresenceSimulation",
        {"authenticatorId": authenticator["id"], "enabled": on},
    )


def test_add_a_passkey_sign_in_with_it_and_remove_it(
    mail_server: Server, sink: MailSink, context: BrowserContext, page: Page, js: bool
):
    if not js:
        pytest.skip("passkeys need JavaScript: test_without_javascript_the_pages_say_so")
    base = mail_server.base_url
    authenticator = virtual_authenticator(context, page)
    sign_in(page, base)
    page.get_by_role("link", name="Your account").click()
    page.get_by_role("link", name="Security: where you're signed in, recent sign-ins").click()
    expect(page.get_by_role("heading", name="Passkeys")).to_be_visible()
    expect(page.get_by_text("No passkeys yet.")).to_be_visible()
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your passkey was added. Next time, sign in with it."
    )
    expect(page.get_by_role("button", name="Remove the passkey Chrome on Linux")).to_be_visible()
    [added] = sink.wait_for(JANE_EMAIL)
    assert added["Subject"] == "A passkey was added to your XYZ Services portal account"
    credentials = authenticator["cdp"].send(
        "WebAuthn.getCredentials", {"authenticatorId": authenticator["id"]}
    )["credentials"]
    assert len(credentials) == 1 and credentials[0]["rpId"] == "xyzplumbing.localhost"

    # Autofill (conditional mediation): the sign-in page asks for a passkey as it loads;
    # the virtual authenticator answers at once, where a person would pick it from the
    # email field's suggestions.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(base + "/invoices")
    expect(page.get_by_role("heading", name="Invoices", level=1)).to_be_visible()

    # The button: with the authenticator waiting for a touch, the page's autofill request
    # stays open (a pending request is not answered later); the button replaces it with
    # its own, which the authenticator, answering by itself again, answers.
    presence(authenticator, False)
    with page.expect_response("**/sign-in/passkey/options"):
        page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(base + "/sign-in?done=signed-out")
    page.wait_for_timeout(500)  # the autofill request reaches the authenticator
    presence(authenticator, True)
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(base + "/invoices")

    page.goto(base + "/account/security")
    expect(page.get_by_role("cell", name="Passkey", exact=True).first).to_be_visible()
    page.get_by_role("button", name="Remove the passkey Chrome on Linux").click()
    expect(page.get_by_role("status")).to_have_text("The passkey was removed.")
    expect(page.get_by_text("No passkeys yet.")).to_be_visible()
    removed = sink.wait_for(JANE_EMAIL, 2)[1]
    assert removed["Subject"] == "A passkey was removed from your XYZ Services portal account"

    # The authenticator still holds the passkey; the portal no longer accepts it.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("alert")).to_have_text(
        "That passkey didn't work here. Sign in with your password, or ask for an emailed "
        "sign-in link."
    )
    expect(page).to_have_url(base + "/sign-in?done=signed-out")


def test_without_javascript_the_pages_say_so(mail_server: Server, page: Page, js: bool):
    if js:
        pytest.skip("the JavaScript-off pages")
    base = mail_server.base_url
    page.goto(base + "/sign-in")
    expect(page.get_by_role("button", name="Use a passkey")).to_be_hidden()
    expect(
        page.get_by_text(
            "Signing in with a passkey needs JavaScript, which is off in this browser."
        )
    ).to_be_visible()
    expect(page.get_by_role("button", name="Email me a sign-in link")).to_be_visible()
    sign_in(page, base)
    page.goto(base + "/account/security")
    expect(page.get_by_role("button", name="Add a passkey")).to_be_hidden()
    expect(
        page.get_by_text("Passkeys need JavaScript, which is off in this browser.")
    ).to_be_visible()

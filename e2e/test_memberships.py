"""Memberships in a real browser, JS on and off: Jane's memberships and a membership's
Visits view; Acme's facilities contact registers and sees Contracts."""

from __future__ import annotations

import re
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

from playwright.sync_api import Page, expect

from portal.demo import RECURRING_MESSAGE
from tests.support.browser import sign_in


def test_jane_sees_the_memberships_the_demo_settings_allow(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    page.get_by_role("link", name="Memberships").click()
    expect(page).to_have_url(server.url("/memberships"))
    expect(page.get_by_role("heading", name="Memberships", level=1)).to_be_visible()
    expect(page).to_have_title("Memberships · XYZ Services")
    cards = page.locator("li.membership")
    expect(cards.get_by_role("heading", level=2)).to_have_text(
        ["Comfort Club Gold", "Plumbing Protection Plan", "Comfort Club Silver"]
    )
    gold = cards.filter(has_text="Comfort Club Gold")
    expect(gold).to_contain_text("Active")
    expect(gold).to_contain_text("Home: 12 Oak Street")
    expect(gold).to_contain_text("Visa ending in 1881")
    expect(cards.filter(has_text="Plumbing Protection Plan")).to_contain_text("Canceled")
    expect(cards.filter(has_text="Comfort Club Silver")).to_contain_text("Expired")
    expect(page.get_by_text("Electrical Safety Plan")).to_have_count(0)  # suspended: hidden
    expect(page.get_by_text("Suspended")).to_have_count(0)


def test_jane_opens_visits_and_sees_upcoming_visits_and_the_message(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    page.get_by_role("link", name="Memberships").click()
    expect(page.get_by_role("heading", name="Memberships", level=1)).to_be_visible()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.get_by_role("link", name="Visits for Comfort Club Gold").click()
    expect(page).to_have_url(re.compile(r"/memberships/\d+$"))
    expect(page.get_by_role("heading", name="Comfort Club Gold", level=1)).to_be_visible()
    expect(page).to_have_title("Visits: Comfort Club Gold · XYZ Services")
    expect(page.get_by_text(RECURRING_MESSAGE)).to_be_visible()
    upcoming = page.locator("section", has=page.get_by_role("heading", name="Upcoming visits"))
    rows = upcoming.get_by_role("row")
    expect(rows).to_have_count(3)  # header + two visits
    expect(rows.nth(1)).to_contain_text("Fall furnace tune-up")
    expect(rows.nth(1)).to_contain_text("8 AM–12 PM")
    expect(rows.nth(2)).to_contain_text("Spring AC tune-up")
    past = page.locator("section", has=page.get_by_role("heading", name="Past visits"))
    expect(past).to_contain_text("Spring AC tune-up")
    expect(past).to_contain_text("Completed")
    if js:  # htmx swapped the tab's region: one request, no page load
        assert requests == [page.url]
    # Back to the list, still on the Memberships tab.
    page.get_by_role("link", name="All memberships").click()
    expect(page).to_have_url(server.url("/memberships"))
    expect(page.get_by_role("heading", name="Memberships", level=1)).to_be_visible()


def test_a_hidden_membership_is_not_found(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    response = page.goto(server.url("/memberships/999999"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()


def _confirmation_link(mail_dir: Path, email: str) -> str:
    """The confirmation link of the newest email to `email` (the mail worker inside the
    server writes `.eml` files when there is no SMTP server; it polls every 2 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = []
        for path in mail_dir.glob("*.eml") if mail_dir.exists() else []:
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if (
                message["To"] == email
                and "/confirm?token=" in message.get_body(("plain",)).get_content()
            ):
                messages.append((path.stat().st_mtime, message))
        if messages:
            newest = max(messages, key=lambda m: m[0])[1]
            text = newest.get_body(("plain",)).get_content()
            return re.search(r"https?://\S+/confirm\?token=\S+", text).group(0)
        time.sleep(0.2)
    raise AssertionError(f"no confirmation email to {email} in {mail_dir}")


def test_acmes_contact_registers_and_sees_contracts(server, page: Page, js: bool):
    # Both addresses are on Acme's record; each run registers one, so the runs are
    # independent although they share the server.
    email = "facilities@acme.example" if js else "ap@acme.example"
    page.goto(server.url("/sign-in"))
    page.get_by_role("link", name="Request an invitation").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_text("we've sent you a link")).to_be_visible()
    link = _confirmation_link(server.var_dir / "mail", email)
    page.goto(link)
    page.get_by_label("New password").fill("acme-contracts-2026")
    page.get_by_role("button", name="Create password and sign in").click()
    expect(page).to_have_url(server.url("/invoices"))
    contracts = page.get_by_role("navigation", name="Portal sections").get_by_role(
        "link", name="Contracts"
    )
    expect(contracts).to_be_visible()
    expect(page.get_by_role("link", name="Memberships")).to_have_count(0)
    contracts.click()
    expect(page).to_have_url(server.url("/memberships"))
    expect(page.get_by_role("heading", name="Contracts", level=1)).to_be_visible()
    expect(page).to_have_title("Contracts · XYZ Services")
    expect(page.get_by_role("heading", name="Commercial HVAC Service Agreement")).to_be_visible()
    page.get_by_role("link", name="Visits for Commercial HVAC Service Agreement").click()
    expect(page.get_by_role("link", name="All contracts")).to_be_visible()
    expect(page.get_by_text("Quarterly rooftop unit service").first).to_be_visible()


def test_jane_updates_the_card_on_file_through_the_card_page(server, page: Page, js: bool):
    # Each run saves a different card, so the new last four can only come from this run.
    number, brand, last4 = (
        ("5555 5555 5555 4444", "Mastercard", "4444")
        if js
        else ("4242 4242 4242 4242", "Visa", "4242")
    )
    sign_in(page, server.base_url)
    page.get_by_role("link", name="Memberships").click()
    page.locator("li.membership").filter(has_text="Comfort Club Gold").get_by_role(
        "link", name=re.compile("Visits")
    ).first.click()
    expect(page.get_by_role("heading", name="Comfort Club Gold", level=1)).to_be_visible()
    page.get_by_role("button", name="Update payment card").click()

    expect(page).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    expect(page.locator(".test-mode")).to_have_text("Test mode")
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry date (MM / YY)").fill("12 / 39")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name="Save card").click()

    expect(page.get_by_text(f"Your card on file is now {brand} ending in {last4}.")).to_be_visible()
    expect(page.locator(".membership-facts")).to_contain_text(f"{brand} ending in {last4}")
    expect(page.get_by_role("heading", name="Account activity")).to_be_visible()
    expect(page.locator(".trail li").first).to_contain_text(f"to {brand} ending {last4}")

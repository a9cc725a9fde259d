"""Paying through Stripe in a real browser, JavaScript on and off, against the Stripe test
double (a local stand-in for Stripe's API, hosted Checkout page and webhooks; this machine
cannot reach Stripe): the administrator links the account in the office, Jane pays two
invoices in full and part of a third on the double's hosted page, webhooks arrive late,
twice and out of order or never (the worker's reconciliation settles the payment), the
administrator refunds from the office invoice page, and a bank debit is processing and
then fails.

Each JS setting gets its own portal server and Stripe account (paying uses the demo's
unpaid invoices up); the double's webhooks go to that server's real HTTP endpoint.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date

import httpx
import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, BrowserContext, Page, expect

from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD
from portal.testing import Server, stop_server
from tests.support.browser import sign_in
from tests.support.stripe_double import Account, StripeDouble, stripe_double_fixture

stripe_double = stripe_double_fixture()
EXPIRY = f"12 / {(date.today().year + 3) % 100:02d}"


class Portal:
    """A portal server with its own Stripe account at the double."""

    def __init__(self, server: Server, account: Account) -> None:
        self.server = server
        self.account = account
        self.linked = False


@pytest.fixture(scope="module")
def portals() -> Iterator[dict[str, Portal]]:
    started: dict[str, Portal] = {}
    yield started
    for portal in started.values():
        stop_server(portal.server)


@pytest.fixture
def portal(
    portals: dict[str, Portal],
    js: bool,
    tmp_path_factory,
    start_demo_server,
    stripe_double: StripeDouble,
    browser: Browser,
) -> Portal:
    key = "js" if js else "nojs"
    if key not in portals:
        server = start_demo_server(
            tmp_path_factory.mktemp(f"stripe-{key}"),
            {
                "PORTAL_STRIPE_API_BASE": stripe_double.url,
                "PORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "PORTAL_RECONCILE_AFTER_SECONDS": "2",
                "PORTAL_RECONCILE_EVERY_SECONDS": "1",
            },
        )
        account = stripe_double.create_account(
            "XYZ Services", webhook_url=f"{server.base_url}/payments/stripe/webhook"
        )
        portals[key] = Portal(server, account)
    found = portals[key]
    if not found.linked:
        office = office_context(browser, js)
        link_in_office(office.new_page(), found, js)
        office.close()
        found.linked = True
    return found


def office_context(browser: Browser, js: bool) -> BrowserContext:
    ctx = browser.new_context(java_script_enabled=js)
    ctx.set_default_timeout(10_000)
    return ctx


def office_sign_in(page: Page, base: str) -> None:
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()


def link_in_office(page: Page, portal: Portal, js: bool) -> None:
    """The administrator swaps the demo's sandbox account for the Stripe account."""
    office_sign_in(page, portal.server.base_url)
    if js:
        page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Unlink payment account").click()
    expect(page.get_by_text("No payment account is linked")).to_be_visible()
    page.get_by_label("Stripe secret key").fill("sk_test_wrongwrongwrongwrong")
    page.get_by_label("Webhook signing secret").fill(portal.account.webhook_secret)
    page.get_by_role("button", name="Link Stripe account").click()
    expect(page.get_by_text("Stripe refused this key")).to_be_visible()
    page.get_by_label("Stripe secret key").fill(portal.account.secret_key)
    page.get_by_label("Webhook signing secret").fill(portal.account.webhook_secret)
    page.get_by_label("Also accept US bank debits (ACH)").check()
    page.get_by_role("button", name="Link Stripe account").click()
    expect(page.get_by_text("The Stripe account is linked")).to_be_visible()
    payments = page.locator("#s-payments")
    expect(payments).to_contain_text(portal.account.id)
    expect(payments).to_contain_text(f"sk_test_…{portal.account.secret_key[-4:]}")
    assert portal.account.secret_key not in page.content()
    page.get_by_label("Enable card payments").check()
    if js:
        # Saved inline: wait for the save's own answer (the box is ticked at once, and
        # closing the page before the answer left card payments off).
        expect(page.locator("#saved-payments_enabled")).to_have_text("Saved")
    else:
        page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Enable card payments")).to_be_checked()
    expect(page.locator(".test-mode-banner")).to_contain_text("Test mode")


def open_invoices(page: Page) -> list[str]:
    names = page.get_by_role("checkbox").evaluate_all(
        "boxes => boxes.map(b => b.labels[0].textContent.trim())"
    )
    return [n.removeprefix("Select ").strip() for n in names]


def cents(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text))


def money(value: int) -> str:
    return f"${value // 100:,}.{value % 100:02d}"


def balance_of(page: Page, number: str) -> str:
    row = page.get_by_role("row").filter(has=page.get_by_role("checkbox", name=f"Select {number}"))
    return row.locator("td[data-label='Balance due']").inner_text().strip()


def pay_by_card(page: Page, double: StripeDouble, card: str = "4242 4242 4242 4242") -> None:
    """On the double's hosted Checkout page: fill the card and pay."""
    expect(page).to_have_url(re.compile(re.escape(double.url) + r"/c/pay/cs_test_\w+"))
    expect(page.locator(".test-mode")).to_contain_text("Test mode")
    page.get_by_label("Email").fill("jane@example.com")
    page.get_by_label("Card number").fill(card)
    page.get_by_label("Expiration (MM / YY)").fill(EXPIRY)
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Cardholder name").fill("Jane Doe")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()


def choose(page: Page, numbers: list[str]) -> None:
    for number in numbers:
        page.get_by_role("checkbox", name=f"Select {number}").check()


def pay_part(page: Page, number: str, amount: str) -> None:
    """Start paying part of an invoice (the demo has few unpaid invoices: the tests after
    the first pay parts, so each finds one)."""
    choose(page, [number])
    page.get_by_label("Amount for a part payment (one invoice)").fill(amount)
    page.get_by_role("button", name="Pay part of an invoice").click()


def test_jane_pays_two_in_full_then_part_of_a_third_through_stripe(
    portal: Portal, page: Page, js: bool, stripe_double: StripeDouble
):
    base = portal.server.base_url
    sign_in(page, base)
    expect(page.locator(".test-mode-banner")).to_contain_text("Test mode")
    first, second, third = open_invoices(page)[:3]
    full = cents(balance_of(page, first)) + cents(balance_of(page, second))
    third_balance = cents(balance_of(page, third))

    choose(page, [first, second])
    page.get_by_role("button", name="Pay in full").click()
    expect(page.get_by_role("button", name=f"Pay {money(full)}")).to_be_visible()
    pay_by_card(page, stripe_double)
    expect(page).to_have_url(re.compile(r"/payments/\d+"))
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(page.get_by_text(f"We received your payment of {money(full)}")).to_be_visible()
    expect(page.get_by_text("Visa ending 4242")).to_be_visible()
    expect(page.locator(".test-mode-banner")).to_contain_text("test payment")

    page.get_by_role("link", name="Back to invoices").click()
    expect(page.get_by_role("checkbox", name=f"Select {first}")).to_have_count(0)
    choose(page, [third])
    page.get_by_label("Amount for a part payment (one invoice)").fill("25.50")
    page.get_by_role("button", name="Pay part of an invoice").click()
    pay_by_card(page, stripe_double, "4242424242424242")
    expect(page.get_by_text("We received your payment of $25.50")).to_be_visible()
    page.get_by_role("link", name="Back to invoices").click()
    assert balance_of(page, third) == money(third_balance - 2550)


def test_webhooks_late_twice_out_of_order_change_nothing_more(
    portal: Portal, page: Page, js: bool, stripe_double: StripeDouble, browser: Browser
):
    """Jane is back before any webhook; they then arrive newest first, each twice: the
    office trail shows the payment exactly once."""
    portal.account.webhooks.hold()
    try:
        sign_in(page, portal.server.base_url)
        (number, *_) = open_invoices(page)
        pay_part(page, number, "5.00")
        pay_by_card(page, stripe_double)
        expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
        reference = page.locator("dt:text-is('Reference') + dd").inner_text().strip()
        held = portal.account.webhooks.held
        assert held
        for event in reversed(held):
            deliveries = portal.account.webhooks.deliver(event, times=2)
            assert [d.status for d in deliveries] == [200, 200]
    finally:
        portal.account.webhooks.resume()
    office = office_context(browser, js)
    admin = office.new_page()
    office_sign_in(admin, portal.server.base_url)
    admin.goto(portal.server.base_url + "/office/payments")
    admin.get_by_role("link", name=number).first.click()
    expect(admin.get_by_role("heading", name=f"Invoice {number}")).to_be_visible()
    paid_rows = (
        admin.locator("table.trail tr")
        .filter(has_text=reference)
        .filter(has=admin.get_by_text("Paid", exact=True))
    )
    expect(paid_rows).to_have_count(1)
    office.close()


def test_a_lost_webhook_is_settled_by_the_worker(
    portal: Portal, page: Page, js: bool, stripe_double: StripeDouble, browser: Browser
):
    """Jane pays and closes the tab before coming back; every webhook is lost. The
    worker's reconciliation asks Stripe and records the payment."""
    portal.account.webhooks.drop()
    try:
        sign_in(page, portal.server.base_url)
        (number, *_) = open_invoices(page)
        before = cents(balance_of(page, number))
        pay_part(page, number, "6.00")
        expect(page).to_have_url(re.compile(re.escape(stripe_double.url)))
        # Pay without following the page back to the portal (the tab is closed).
        form = {
            "method": "card",
            "email": "jane@example.com",
            "card_number": "4242424242424242",
            "card_expiry": EXPIRY,
            "card_cvc": "123",
            "card_name": "Jane Doe",
        }
        paid = httpx.post(page.url, data=form)
        assert paid.status_code == 303
        page.goto(portal.server.base_url + "/invoices")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and cents(balance_of(page, number)) != before - 600:
            time.sleep(1)
            page.reload()
        assert cents(balance_of(page, number)) == before - 600
    finally:
        portal.account.webhooks.resume()


def test_the_office_refunds_part_of_a_payment(
    portal: Portal, page: Page, js: bool, stripe_double: StripeDouble, browser: Browser
):
    sign_in(page, portal.server.base_url)
    (number, *_) = open_invoices(page)
    pay_part(page, number, "20.00")
    pay_by_card(page, stripe_double)
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    payment_id = re.search(r"/payments/(\d+)", page.url).group(1)

    office = office_context(browser, js)
    admin = office.new_page()
    office_sign_in(admin, portal.server.base_url)
    admin.get_by_role("link", name="Customers").click()
    admin.get_by_label("Find a customer").fill("Jane")
    admin.get_by_label("Find a customer").press("Enter")
    admin.get_by_role("link", name="Jane Doe").first.click()
    admin.get_by_role("link", name=number, exact=True).click()
    expect(admin.get_by_role("heading", name=f"Invoice {number}")).to_be_visible()
    form = admin.get_by_role("group", name=re.compile(f"Refund payment {payment_id}"))
    form.get_by_label("Amount to refund").fill("10.00")
    form.get_by_label("Reason").fill("Goodwill discount")
    admin.get_by_role("button", name=f"Refund payment {payment_id}").click()
    expect(admin.get_by_text("Refunded $10.00", exact=False).first).to_be_visible()
    expect(admin.locator("table.trail")).to_contain_text("Goodwill discount")
    office.close()
    refunds = portal.account.events("refund.created")
    assert refunds and refunds[-1]["data"]["object"]["amount"] == 1000

    page.reload()
    expect(page.get_by_text("Refunded")).to_be_visible()


def test_a_bank_debit_is_processing_then_fails(
    portal: Portal, page: Page, js: bool, stripe_double: StripeDouble, browser: Browser
):
    sign_in(page, portal.server.base_url)
    (number, *_) = open_invoices(page)
    before = balance_of(page, number)
    pay_part(page, number, "30.00")
    page.get_by_role("link", name="US bank account").click()
    page.get_by_label("Email").fill("jane@example.com")
    page.get_by_label("Account holder name").fill("Jane Doe")
    page.get_by_label("Routing number").fill("110000000")
    page.get_by_label("Account number", exact=True).fill("000222222227")
    page.get_by_label("Confirm account number").fill("000222222227")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()
    expect(page.get_by_role("heading", name="Payment processing")).to_be_visible()
    expect(page.get_by_text("Bank account ending 2227")).to_be_visible()

    intent = next(
        s["payment_intent"]
        for s in reversed(
            [
                portal.account.get(e["data"]["object"]["id"])
                for e in portal.account.events("checkout.session.completed")
            ]
        )
        if s["payment_status"] == "unpaid"
    )
    portal.account.finish_bank_debit(intent)
    portal.account.webhooks.wait_idle()
    office = office_context(browser, js)
    admin = office.new_page()
    office_sign_in(admin, portal.server.base_url)
    listing = portal.server.base_url + "/office/payments?status=failed&method=bank"
    admin.goto(listing)
    deadline = time.monotonic() + 20
    while (
        time.monotonic() < deadline and not admin.get_by_role("row").filter(has_text=number).count()
    ):
        time.sleep(0.5)
        admin.goto(listing)
    expect(admin.get_by_role("row").filter(has_text=number)).to_contain_text("Failed")
    office.close()
    # Nothing was taken from the balance: Jane can pay it another way.
    page.goto(portal.server.base_url + "/invoices")
    assert balance_of(page, number) == before

"""Jane pays invoices in a real browser, with JavaScript on and off: two in full in one
payment, part of a third, a declined card, a partial payment with two invoices
selected (refused), and a payment that succeeds after the portal had marked it failed
(recorded; the office sees an alert). Balances, receipt, History and the audit trail
reflect it.

Each JS setting gets its own fresh demo server, because paying uses the demo's unpaid
invoices up; within a server the tests pick invoices from what the page shows.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import date

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e.conftest import Server, start_server, stop_server
from e2e.helpers import sign_in
from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD

EXPIRY = f"12 / {(date.today().year + 3) % 100:02d}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    yield started
    for srv in started.values():
        stop_server(srv)


@pytest.fixture
def server(servers: dict[str, Server], js: bool, tmp_path_factory) -> Server:
    """A demo portal of its own for each JS setting (shared by this module's tests)."""
    key = "js" if js else "nojs"
    if key not in servers:
        servers[key] = start_server(tmp_path_factory.mktemp(f"payments-{key}"))
    return servers[key]


def open_invoices(page: Page) -> list[str]:
    """Invoice numbers on the Invoices tab, in the order shown (oldest first)."""
    names = page.get_by_role("checkbox").evaluate_all(
        "boxes => boxes.map(b => b.labels[0].textContent.trim())"
    )
    return [n.removeprefix("Select ").strip() for n in names]


def balance_of(page: Page, number: str) -> str:
    row = page.get_by_role("row").filter(has=page.get_by_role("checkbox", name=f"Select {number}"))
    return row.locator("td[data-label='Balance due']").inner_text().strip()


def total_due(page: Page) -> str:
    return page.locator("td[data-label='Total due']").inner_text().strip()


def cents(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text))


def money(value: int) -> str:
    return f"${value // 100:,}.{value % 100:02d}"


def enter_card(page: Page, number: str) -> None:
    """On the sandbox's hosted page: fill the card and pay."""
    expect(page).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    expect(page.locator(".test-mode")).to_have_text("Test mode")
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry date (MM / YY)").fill(EXPIRY)
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()


def test_jane_pays_two_in_full_then_part_of_a_third(server: Server, page: Page, js: bool):
    sign_in(page, server.base_url)
    shown = open_invoices(page)
    assert len(shown) >= 3, shown
    first, second, third = shown[:3]
    full = cents(balance_of(page, first)) + cents(balance_of(page, second))
    third_balance = cents(balance_of(page, third))
    due_before = cents(total_due(page))

    # Two invoices in full, one payment.
    page.get_by_role("checkbox", name=f"Select {first}").check()
    page.get_by_role("checkbox", name=f"Select {second}").check()
    page.get_by_role("button", name="Pay in full").click()
    expect(page.get_by_role("heading", name="XYZ Services")).to_be_visible()
    expect(page.get_by_role("button", name=f"Pay {money(full)}")).to_be_visible()
    enter_card(page, "4242 4242 4242 4242")
    expect(page).to_have_url(re.compile(r"/payments/\d+$"))
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(page.get_by_text(f"We received your payment of {money(full)}")).to_be_visible()
    expect(page.get_by_text("Visa ending 4242")).to_be_visible()
    receipt = page.get_by_role("table")
    expect(receipt.get_by_role("link", name=first)).to_be_visible()
    expect(receipt.get_by_role("link", name=second)).to_be_visible()
    reference = page.locator("dt:text-is('Reference') + dd").inner_text()

    # Back on the Invoices tab: both are gone, the total due went down.
    page.get_by_role("link", name="Back to invoices").click()
    expect(page).to_have_url(server.url("/invoices"))
    expect(page.get_by_role("checkbox", name=f"Select {first}")).to_have_count(0)
    expect(page.get_by_role("checkbox", name=f"Select {second}")).to_have_count(0)
    expect(page.locator("td[data-label='Total due']")).to_have_text(money(due_before - full))

    # Part of the third.
    page.get_by_role("checkbox", name=f"Select {third}").check()
    page.get_by_label("Amount for a part payment (one invoice)").fill("25.50")
    page.get_by_role("button", name="Pay part of an invoice").click()
    expect(page.get_by_role("button", name="Pay $25.50")).to_be_visible()
    enter_card(page, "4242424242424242")
    expect(page.get_by_text("We received your payment of $25.50")).to_be_visible()
    page.get_by_role("link", name="Back to invoices").click()
    expect(page.get_by_role("checkbox", name=f"Select {third}")).to_be_visible()
    assert balance_of(page, third) == money(third_balance - 2550)

    # History shows the paid and the partly paid invoices.
    page.get_by_role("link", name="History", exact=True).click()
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    for number, status in ((first, "Paid"), (second, "Paid"), (third, "Partly paid")):
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=number, exact=True))
        expect(row.locator("td[data-label='Status']")).to_have_text(status)

    # The invoice page's audit trail shows the payment: who, how much, reference.
    page.get_by_role("link", name=first, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(f"Invoice {first}"))).to_be_visible()
    trail = page.locator("table.trail")
    expect(trail).to_contain_text("jane@example.com")
    expect(trail).to_contain_text(reference)
    expect(page.locator("table.payments")).to_contain_text("Visa ending 4242")
    expect(page.locator("td[data-label='Balance due']")).to_have_text("$0.00")


def test_declined_card_leaves_balances_unchanged(server: Server, page: Page, js: bool):
    sign_in(page, server.base_url)
    number = open_invoices(page)[0]
    balance = balance_of(page, number)
    due = total_due(page)
    page.get_by_role("checkbox", name=f"Select {number}").check()
    page.get_by_role("button", name="Pay in full").click()
    enter_card(page, "4000 0000 0000 0002")
    expect(page).to_have_url(re.compile(r"/invoices\?retry=\d+$"))
    expect(page.get_by_role("alert")).to_contain_text(
        "Your payment didn't go through: Your card was declined."
    )
    expect(page.get_by_role("alert")).to_contain_text("Nothing was charged")
    assert balance_of(page, number) == balance
    assert total_due(page) == due
    # Ready to try again: the invoice is still selected.
    expect(page.get_by_role("checkbox", name=f"Select {number}")).to_be_checked()


def test_partial_payment_with_two_invoices_selected_is_refused(
    server: Server, page: Page, js: bool
):
    sign_in(page, server.base_url)
    shown = open_invoices(page)
    assert len(shown) >= 2, shown
    for number in shown[:2]:
        page.get_by_role("checkbox", name=f"Select {number}").check()
    page.get_by_label("Amount for a part payment (one invoice)").fill("10")
    page.get_by_role("button", name="Pay part of an invoice").click()
    expect(page.get_by_role("alert")).to_have_text(
        "To pay part of an invoice, select exactly one invoice. "
        "To pay several invoices at once, use Pay in full."
    )
    # With JS the form was swapped in place; without, the POST answered with the page.
    expect(page).to_have_url(server.url("/invoices" if js else "/invoices/pay"))
    # The choice is kept, so the customer can fix it.
    for number in shown[:2]:
        expect(page.get_by_role("checkbox", name=f"Select {number}")).to_be_checked()
    expect(page.get_by_label("Amount for a part payment (one invoice)")).to_have_value("10")


def test_a_late_card_payment_is_recorded_and_the_office_sees_it(
    server: Server, page: Page, browser: Browser, js: bool
):
    """A payment the portal had marked failed while its card page stayed open (what it
    did when it asked the wrong payment account) is paid there after all: the payment is
    recorded, and the office sees an alert at the top of its pages until it is marked as
    seen."""
    sign_in(page, server.base_url)
    number = open_invoices(page)[0]
    page.get_by_role("checkbox", name=f"Select {number}").check()
    page.get_by_role("button", name="Pay in full").click()
    expect(page).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    checkout_id = page.url.rsplit("/", 1)[1]
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as db:
        db.execute(
            "UPDATE payment SET status = 'failed', "
            "failure_reason = 'The payment service has no record of this payment.' "
            "WHERE gateway_ref = ?",
            (checkout_id,),
        )
    enter_card(page, "4242 4242 4242 4242")
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()

    office = browser.new_context(java_script_enabled=js).new_page()
    office.set_default_timeout(10_000)
    office.goto(server.url("/office/sign-in"))
    office.get_by_label("Email").fill(ADMIN_EMAIL)
    office.get_by_label("Password").fill(ADMIN_PASSWORD)
    office.get_by_role("button", name="Sign in").click()
    alerts = office.get_by_role("region", name="Needs attention")
    expect(alerts).to_contain_text("Late card payment of")
    expect(alerts).to_contain_text(number)
    office.get_by_role("link", name="Bookings").click()  # on every office page
    expect(office.get_by_role("heading", name="Bookings", level=1)).to_be_visible()
    expect(alerts).to_contain_text(number)
    alerts.get_by_role("button", name="Mark as seen").click()
    expect(office.get_by_role("region", name="Needs attention")).to_have_count(0)
    office.reload()
    expect(office.get_by_role("heading", name="Bookings", level=1)).to_be_visible()
    expect(office.get_by_role("region", name="Needs attention")).to_have_count(0)
    office.context.close()

"""The Invoices tab: which invoices are listed, what the pay form may ask for, and what
happens when card payments are off. Amounts always come from the database."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from html import unescape

import pytest

from portal.auth.passwords import hash_password
from portal.db.tables import Invoice, Payment, PortalAccount, Tenant
from portal.demo import demo_data
from portal.importer import import_file
from tests.support.http import CSRF_FIELD, make_client, sign_in
from tests.support.paying import (
    balances,
    checkout_count,
    invoice_ids,
    new_invoice,
    path_of,
    portal_payments,
    submit_pay,
)

OPEN = ["INV-1036", "INV-1037", "INV-1038", "INV-1039"]  # Jane's unpaid, completed, oldest first


def shown(response) -> str:
    """A response's HTML with entities decoded (messages as the customer reads them)."""
    return unescape(response.text)


def listed_numbers(html: str) -> list[str]:
    """Invoice numbers of the Invoices tab's checkboxes, in page order."""
    return re.findall(r'<span class="vh">Select </span>([^<]+)</span>', html)


@pytest.fixture(scope="module")
async def other_business(demo: int) -> int:
    """A second business (same demo shape, its own host and ids)."""
    data = demo_data(date.today(), extra_customers=0)
    data["business"]["host"] = "abcplumbing"
    data["business"]["name"] = "ABC Plumbing"
    data["business"]["portal"]["payment_account"] = "sandbox_acct_abc"
    return await import_file(json.dumps(data))


async def test_lists_unpaid_invoices_of_completed_jobs_oldest_first(jane):
    html = (await jane.get("/invoices")).text
    assert listed_numbers(html) == OPEN
    # Not listed: the $0 warranty call-back, paid invoices, the job not yet finished.
    assert "Warranty call-back" not in html
    assert "INV-1035" not in html  # $0
    assert "INV-1001" not in html  # paid
    assert "INV-1040" not in html  # job scheduled
    # Balance due of the partly paid invoice, and the total due.
    assert "$139.00" in html
    assert re.search(r"Total due</th><td[^>]*><strong>\$911\.00<", html)
    for label in ("Pay in full", "Pay part of an invoice", "Amount for a part payment"):
        assert label in html


async def test_lists_only_the_viewed_customers_invoices(jane, demo):
    html = (await jane.get("/invoices")).text
    assert "INV-1041" not in html  # Bob's


async def test_pay_button_without_selection_is_refused(jane, demo):
    response = await submit_pay(jane, [])
    assert response.status_code == 422
    assert "Select the invoices you want to pay." in shown(response)
    assert await portal_payments(demo) == []


@pytest.mark.parametrize("who", ["another customer", "another business", "no such invoice", "junk"])
async def test_foreign_invoice_ids_are_404_and_nothing_is_charged(jane, demo, other_business, who):
    (own,) = await invoice_ids(demo, "INV-1036")
    foreign = {
        "another customer": (await invoice_ids(demo, "INV-1041"))[0],  # Bob's unpaid invoice
        "another business": (await invoice_ids(other_business, "INV-1036"))[0],
        "no such invoice": 99_999_999,
        "junk": "36 OR 1=1",
    }[who]
    before = await checkout_count()
    response = await submit_pay(jane, [own, foreign])
    assert response.status_code == 404
    assert "Page not found" in shown(response)
    assert await portal_payments(demo) == []
    assert await checkout_count() == before
    # The invoice pages answer the same 404.
    if isinstance(foreign, int):
        assert (await jane.get(f"/invoices/{foreign}")).status_code == 404
        assert (await jane.get(f"/invoices/{foreign}/pdf")).status_code == 404


@pytest.mark.parametrize(
    "number,message",
    [
        ("INV-1001", "INV-1001 is already paid"),
        ("INV-1040", "INV-1040 can't be paid online until its job is finished"),
        ("INV-1035", "INV-1035 has nothing to pay"),
    ],
)
async def test_paid_unfinished_and_zero_invoices_are_refused(jane, demo, number, message):
    ids = await invoice_ids(demo, "INV-1036", number)
    response = await submit_pay(jane, ids)
    assert response.status_code == 422
    assert message in shown(response)
    assert await portal_payments(demo) == []


async def test_partial_payment_needs_exactly_one_invoice(jane, demo):
    ids = await invoice_ids(demo, "INV-1036", "INV-1037")
    response = await submit_pay(jane, ids, action="partial", amount="20.00")
    assert response.status_code == 422
    assert "To pay part of an invoice, select exactly one invoice." in shown(response)
    # The selection is kept so the customer can fix it.
    assert response.text.count("checked") == 2
    assert await portal_payments(demo) == []


@pytest.mark.parametrize(
    "amount,message",
    [
        ("", "Enter the amount you want to pay, from $1.00 to $139.00."),
        ("abc", "Enter an amount like 25.00, from $1.00 to $139.00."),
        ("0.99", "Enter an amount from $1.00 to $139.00."),
        ("139.01", "Enter an amount from $1.00 to $139.00."),
        ("-5", "Enter an amount like 25.00"),
        ("12.345", "Enter an amount like 25.00"),
    ],
)
async def test_part_amount_must_be_from_one_dollar_to_the_balance(jane, demo, amount, message):
    ids = await invoice_ids(demo, "INV-1039")
    response = await submit_pay(jane, ids, action="partial", amount=amount)
    assert response.status_code == 422
    assert message in shown(response)
    assert 'aria-invalid="true"' in shown(response)
    assert await portal_payments(demo) == []


async def test_amount_with_pay_in_full_is_refused_not_guessed(jane, demo):
    ids = await invoice_ids(demo, "INV-1039")
    response = await submit_pay(jane, ids, action="full", amount="10")
    assert response.status_code == 422
    assert "To pay in full, leave the amount empty." in shown(response)
    assert await portal_payments(demo) == []


async def test_amount_charged_comes_from_the_database(jane, demo):
    """Extra fields a tampered form might carry change nothing: the checkout is for the
    balances in the database."""
    ids = await invoice_ids(demo, "INV-1036", "INV-1039")
    token_page = (await jane.get("/invoices")).text
    csrf = CSRF_FIELD.search(token_page).group(1)
    key = re.search(r'name="key" value="([^"]+)"', token_page).group(1)
    response = await jane.post(
        "/invoices/pay",
        data={
            "_csrf_token": csrf,
            "key": key,
            "invoice": [str(i) for i in ids],
            "action": "full",
            "amount_cents": "100",
            "total": "1.00",
            "balance": "1",
        },
    )
    assert response.status_code == 303
    page = await jane.get(path_of(response.headers["location"]))
    assert "Pay $349.00" in page.text  # 210.00 + 139.00
    (payment,) = await portal_payments(demo)
    assert payment["amount_cents"] == 34900 and payment["status"] == "pending"
    assert payment["kind"] == "full"


async def test_pay_form_with_a_partial_keeps_the_typed_amount(jane, demo):
    ids = await invoice_ids(demo, "INV-1037", "INV-1038")
    response = await submit_pay(jane, ids, action="partial", amount="42.50")
    assert 'value="42.50"' in shown(response)


async def test_htmx_refusal_swaps_only_the_form(jane, demo):
    ids = await invoice_ids(demo, "INV-1036", "INV-1037")
    response = await submit_pay(
        jane,
        ids,
        action="partial",
        amount="5",
        headers={"HX-Request": "true", "HX-Request-Type": "partial"},
    )
    assert response.status_code == 422
    assert response.text.lstrip().startswith("<form")
    assert "<html" not in shown(response) and "<nav" not in shown(response)
    assert "select exactly one invoice" in shown(response)


async def test_htmx_start_goes_to_the_card_page_with_a_full_page_load(jane, demo):
    invoice = await new_invoice(demo, total=5000)
    response = await submit_pay(
        jane, [invoice["id"]], headers={"HX-Request": "true", "HX-Request-Type": "partial"}
    )
    assert response.status_code == 200
    assert "/sandbox-gateway/checkout/chk_" in response.headers["hx-redirect"]


async def test_card_payments_off_lists_invoices_with_call_us_and_no_pay_controls(jane, demo):
    await Tenant.update({Tenant.payments_enabled: False}).where(Tenant.id == demo).run()
    try:
        html = (await jane.get("/invoices")).text
        assert "To pay, call us at (555) 010-4477." in html
        for number in OPEN:
            assert number in html
        assert 'type="checkbox"' not in html
        assert "Pay in full" not in html and "Pay part of an invoice" not in html
        invoice_page = (
            await jane.get(f"/invoices/{(await invoice_ids(demo, 'INV-1038'))[0]}")
        ).text
        assert "Pay this invoice" not in unescape(invoice_page)
        assert "To pay, call us at (555) 010-4477." in unescape(invoice_page)
        # A hand-made POST is refused too; nothing is charged.
        before = await checkout_count()
        response = await submit_pay(jane, await invoice_ids(demo, "INV-1038"))
        assert response.status_code == 422
        assert "Card payments aren't available online. To pay, call us at (555) 010-4477." in shown(
            response
        )
        assert await checkout_count() == before
    finally:
        await Tenant.update({Tenant.payments_enabled: True}).where(Tenant.id == demo).run()
    paid_before = await Payment.count().where(Payment.status == "succeeded").run()
    assert paid_before > 0  # imported history is untouched


async def test_no_unpaid_invoices_says_so(app, demo):
    # Acme's contact sees Acme's invoices only; mark them paid to see the empty state.
    acme_ids = [
        r["id"]
        for r in await Invoice.raw(
            "SELECT i.id FROM invoice i JOIN customer c ON c.id = i.customer "
            "WHERE c.external_id = 'C-1003' AND i.tenant = {}",
            demo,
        ).run()
    ]
    await Invoice.update({Invoice.balance_cents: 0}).where(Invoice.id.is_in(acme_ids)).run()
    await PortalAccount.insert(
        PortalAccount(
            tenant=demo,
            email="ap@acme.example",
            password_hash=await hash_password("acme-test-pass"),
            confirmed_at=datetime.now(UTC),
        )
    ).run()
    async with make_client(app) as client:
        await sign_in(client, "ap@acme.example", "acme-test-pass")
        html = (await client.get("/invoices")).text
    assert "You have no unpaid invoices." in html
    assert "Pay in full" not in html


async def test_jane_balances_untouched_by_all_of_the_above(demo):
    assert await balances(demo, *OPEN) == {
        "INV-1036": 21000,
        "INV-1037": 18000,
        "INV-1038": 38200,
        "INV-1039": 13900,
    }


async def test_select_from_the_invoice_page_ticks_that_invoice(jane, demo):
    (inv,) = await invoice_ids(demo, "INV-1038")
    page = (await jane.get(f"/invoices/{inv}")).text
    assert f'href="/invoices?select={inv}"' in page and "Pay this invoice" in page
    html = (await jane.get(f"/invoices?select={inv}&select=junk")).text
    assert f'value="{inv}" checked' in html
    assert html.count(" checked") == 1


async def test_another_customers_payment_page_is_404(jane, demo):
    acme_payment = await Payment.raw(
        "SELECT p.id FROM payment p JOIN customer c ON c.id = p.customer "
        "WHERE c.external_id = 'C-1003' AND p.tenant = {}",
        demo,
    ).run()
    assert acme_payment  # Acme has an imported payment
    assert (await jane.get(f"/payments/{acme_payment[0]['id']}")).status_code == 404
    assert (await jane.get("/payments/99999999")).status_code == 404
    assert (await jane.get(f"/invoices?retry={acme_payment[0]['id']}")).status_code == 200


async def test_more_open_invoices_than_the_tab_lists(jane, monkeypatch):
    """The tab lists the oldest invoices up to its limit, says so, and its total due is
    still the whole amount owed."""
    from portal.db import invoices as invoices_db

    def total_due(html: str) -> str:
        return re.search(r"Total due</th><td[^>]*><strong>([^<]+)<", html).group(1)

    whole = shown(await jane.get("/invoices"))
    everything = listed_numbers(whole)
    assert len(everything) >= 3 and "open invoices shown" not in whole
    monkeypatch.setattr(invoices_db, "OPEN_PAGE", 2)
    html = shown(await jane.get("/invoices"))
    assert listed_numbers(html) == everything[:2]
    assert f"2 of {len(everything)} open invoices shown, oldest first" in html
    assert f"The total due is for all {len(everything)}." in html
    assert total_due(html) == total_due(whole)

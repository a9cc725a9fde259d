"""The money after the payment, through Stripe (its test double) and the sandbox: office
refunds in full and in part (allocations reversed, customer emailed, shown on the receipt
and the office invoice page), refunds made in Stripe's dashboard and disputes arriving by
webhook, a US bank debit that is processing and then fails, the office invoice, job and
Payments pages (filters, totals, CSV), and a card on file saved through Checkout."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest

from portal.db.tables import Membership, OfficeAlert, OutboxEmail, Payment, PaymentRefund
from portal.payments import service, webhooks
from tests.support.http import make_client, post_form
from tests.support.paying import balances, new_invoice, path_of, submit_pay
from tests.support.stripe_double import stripe_double_fixture
from tests.support.stripe_paying import (
    FAILING_BANK,
    GOOD_BANK,
    deliver,
    held_events,
    link_account,
    pay_on_page,
    stripe_settings,
)

stripe_double = stripe_double_fixture()
WEBHOOK_URL = "http://xyzplumbing.localhost/payments/stripe/webhook"


@pytest.fixture(scope="module")
def settings(settings, stripe_double):  # noqa: F811 - the suite's settings, plus Stripe
    return stripe_settings(settings, stripe_double)


@pytest.fixture(scope="module")
async def account(stripe_double, admin):
    acct = stripe_double.create_account("XYZ Plumbing", webhook_url=WEBHOOK_URL)
    acct.webhooks.hold()
    await link_account(admin, acct, bank_debits=True)
    return acct


def text_of(response) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


async def paid_payment(jane, demo, *, totals=(21000,), action="full", amount=""):
    invoices = [await new_invoice(demo, total=t) for t in totals]
    started = await submit_pay(jane, [i["id"] for i in invoices], action=action, amount=amount)
    assert started.status_code == 303, started.text
    paid = await pay_on_page(started.headers["location"])
    assert paid.status_code == 303, paid.text
    await jane.get(path_of(paid.headers["location"]))  # back: the portal asks Stripe
    payment = await Payment.select().order_by(Payment.id, ascending=False).first().run()
    assert payment["status"] == "succeeded"
    return payment, invoices


async def emails_to(email: str, subject_start: str) -> list[dict]:
    return (
        await OutboxEmail.select()
        .where((OutboxEmail.to_addr == email) & OutboxEmail.subject.like(f"{subject_start}%"))
        .run()
    )


async def refund(admin, payment_id: int, invoice_id: int, amount: str, reason: str):
    return await post_form(
        admin,
        f"/office/payments/{payment_id}/refund",
        {"invoice": str(invoice_id), "amount": amount, "reason": reason},
        csrf_page=f"/office/invoices/{invoice_id}",
    )


async def test_partial_then_full_refund_reverses_allocations_and_emails(admin, jane, demo, account):
    payment, (a, b) = await paid_payment(jane, demo, totals=(21000, 18050))
    before = len(await emails_to("jane@example.com", "Refund"))

    # Part: the last invoice of the payment gets its balance back first.
    answer = await refund(admin, payment["id"], a["id"], "50.00", "Duplicate visit fee")
    assert answer.status_code == 303
    assert await balances(demo, a["number"], b["number"]) == {a["number"]: 0, b["number"]: 5000}
    (stripe_refund,) = [o for o in account.events("refund.created")][-1:]
    assert stripe_refund["data"]["object"]["amount"] == 5000
    assert stripe_refund["data"]["object"]["metadata"]["reason"] == "Duplicate visit fee"

    # The rest, by leaving the amount empty.
    answer = await refund(admin, payment["id"], a["id"], "", "Customer canceled the plan")
    assert answer.status_code == 303
    assert await balances(demo, a["number"], b["number"]) == {
        a["number"]: 21000,
        b["number"]: 18050,
    }
    refreshed = await Payment.select().where(Payment.id == payment["id"]).first().run()
    assert refreshed["refunded_cents"] == 39050
    assert len(await emails_to("jane@example.com", "Refund")) == before + 2

    # Nothing left: a third refund is refused and changes nothing.
    again = await refund(admin, payment["id"], a["id"], "1.00", "Again")
    assert again.status_code == 422 and "refunded in full already" in unescape(again.text)

    # The office invoice page shows the payment, each refund and the trail.
    page = text_of(await admin.get(f"/office/invoices/{a['id']}"))
    assert "Refunded $50.00" in page and "Duplicate visit fee" in page
    assert "Refunded $390.50" not in page  # per refund, not summed wrongly
    assert "Paid" in page and "Refunded" in page and "Payment started" in page
    # The customer's receipt says it.
    receipt = text_of(await jane.get(f"/payments/{payment['id']}"))
    assert "Refunded $390.50" in receipt


async def test_refund_input_is_checked_and_office_staff_cannot_refund(
    admin, office, jane, demo, account
):
    payment, (a,) = await paid_payment(jane, demo, totals=(6000,))
    too_much = await refund(admin, payment["id"], a["id"], "60.01", "Too much")
    assert too_much.status_code == 422
    assert "Enter an amount from $0.01 to $60.00" in unescape(too_much.text)
    no_reason = await refund(admin, payment["id"], a["id"], "10", "  ")
    assert no_reason.status_code == 422 and "Say why you are refunding" in unescape(no_reason.text)
    refused = await refund(office, payment["id"], a["id"], "10", "Office tries")
    assert refused.status_code == 403
    assert await PaymentRefund.select().where(PaymentRefund.payment == payment["id"]).run() == []
    assert await balances(demo, a["number"]) == {a["number"]: 0}


async def test_dashboard_refund_and_dispute_arrive_by_webhook(admin, jane, demo, account, app):
    payment, (a,) = await paid_payment(jane, demo, totals=(12000,))
    session = account.get(payment["gateway_ref"])
    intent = session["payment_intent"]
    account.webhooks._held.clear()
    account.refund_in_dashboard(intent, amount=2000)
    account.dispute(intent)
    async with make_client(app) as stripe_side:
        for event in held_events(account):
            for answer in await deliver(stripe_side, account, event, times=2):
                assert answer.status_code == 200
    await webhooks.process_due(app.state.settings)
    assert await balances(demo, a["number"]) == {a["number"]: 2000}
    (recorded,) = await PaymentRefund.select().where(PaymentRefund.payment == payment["id"]).run()
    assert (recorded["source"], recorded["amount_cents"]) == ("gateway", 2000)
    alerts = await OfficeAlert.select().where(OfficeAlert.kind == "dispute").run()
    assert len(alerts) == 1 and a["number"] in alerts[0]["title"]
    office_home = text_of(await admin.get("/office/settings"))
    assert "disputed" in office_home


async def test_bank_debit_processing_then_failing_reopens_and_emails(
    jane, demo, account, app, admin
):
    a = await new_invoice(demo, total=45000)
    started = await submit_pay(jane, [a["id"]])
    paid = await pay_on_page(started.headers["location"], bank_account=FAILING_BANK)
    assert paid.status_code == 303
    back = text_of(await jane.get(path_of(paid.headers["location"])))
    assert "Payment processing" in back and "Bank account ending 2227" in back.replace("from ", "")
    payment = await Payment.select().order_by(Payment.id, ascending=False).first().run()
    assert payment["status"] == "pending" and payment["processing_at"] is not None
    listing = text_of(await admin.get("/office/payments?status=processing"))
    assert "Processing" in listing and a["number"] in listing
    # The invoice stays held: nobody can pay it twice meanwhile.
    again = await submit_pay(jane, [a["id"]])
    assert again.status_code == 422 and "already in progress" in unescape(again.text)

    account.webhooks._held.clear()
    account.finish_bank_debit(account.get(payment["gateway_ref"])["payment_intent"])
    async with make_client(app) as stripe_side:
        for event in held_events(account):
            await deliver(stripe_side, account, event)
    await webhooks.process_due(app.state.settings)
    failed = await Payment.select().where(Payment.id == payment["id"]).first().run()
    assert failed["status"] == "failed" and "insufficient funds" in failed["failure_reason"]
    assert await balances(demo, a["number"]) == {a["number"]: 45000}
    (email,) = await emails_to("jane@example.com", "Your bank payment")
    assert "didn't go through" in email["subject"]
    invoices_tab = text_of(await jane.get("/invoices"))
    assert a["number"] in invoices_tab


async def test_a_bank_debit_on_its_way_costs_no_stripe_call_per_page(jane, demo, account, app):
    # A debit takes days; the customer keeps opening the portal meanwhile. Its end comes by
    # webhook or the worker's paced reconciliation — never one Stripe call per page view.
    a = await new_invoice(demo, total=6100)
    started = await submit_pay(jane, [a["id"]])
    paid = await pay_on_page(started.headers["location"], bank_account=GOOD_BANK)
    await jane.get(path_of(paid.headers["location"]))
    payment = await Payment.select().order_by(Payment.id, ascending=False).first().run()
    assert payment["status"] == "pending" and payment["processing_at"] is not None
    asked = len(account.requests)
    for _ in range(3):
        for tab in ("/invoices", "/history"):
            assert (await jane.get(tab)).status_code == 200
    # Nor does the worker's one-minute pass for lost card callbacks ask about it.
    await service.reconcile_stale(app.state.settings, datetime.now(UTC) + timedelta(hours=1))
    assert len(account.requests) == asked, [r for r in account.requests[asked:]]
    account.finish_bank_debit(account.get(payment["gateway_ref"])["payment_intent"])
    await webhooks.reconcile(app.state.settings.with_(reconcile_after_seconds=0))
    done = await Payment.select().where(Payment.id == payment["id"]).first().run()
    assert done["status"] == "succeeded"


async def test_bank_debit_that_settles_is_paid(jane, demo, account, app):
    a = await new_invoice(demo, total=8000)
    started = await submit_pay(jane, [a["id"]])
    await pay_on_page(started.headers["location"], bank_account=GOOD_BANK)
    payment = await Payment.select().order_by(Payment.id, ascending=False).first().run()
    account.finish_bank_debit(account.get(payment["gateway_ref"])["payment_intent"])
    # No webhook delivered at all: the worker's reconciliation finds it.
    await webhooks.reconcile(app.state.settings.with_(reconcile_after_seconds=0))
    done = await Payment.select().where(Payment.id == payment["id"]).first().run()
    assert done["status"] == "succeeded"
    assert await balances(demo, a["number"]) == {a["number"]: 0}


async def test_payments_page_filters_totals_and_csv(admin, jane, demo, account):
    await paid_payment(jane, demo, totals=(3000,))
    debit = await new_invoice(demo, total=4000)
    started = await submit_pay(jane, [debit["id"]])
    back = await pay_on_page(started.headers["location"], bank_account=GOOD_BANK)
    await jane.get(path_of(back.headers["location"]))  # processing, as a bank debit
    page = text_of(await admin.get("/office/payments?status=succeeded&method=card"))
    assert "Payments" in page and "Received" in page and "Net" in page
    assert "Bank account" not in page
    bad = await admin.get("/office/payments?from=yesterday")
    assert bad.status_code == 200 and "is not a date" in unescape(bad.text)
    exported = await admin.get("/office/payments.csv?method=bank")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows and all(r["method"].startswith("Bank account") for r in rows)
    assert {r["test_mode"] for r in rows} == {"yes"}


async def test_job_page_has_the_trail_and_other_businesses_get_404(admin, jane, demo, account):
    payment, (a,) = await paid_payment(jane, demo, totals=(4000,))
    invoice_page = await admin.get(f"/office/invoices/{a['id']}")
    job_link = re.search(r'href="(/office/jobs/\d+)"', invoice_page.text).group(1)
    job = text_of(await admin.get(job_link))
    assert a["number"] in job and "Paid" in job and "Payment started" in job
    # Jane opens the invoice (twice): the office trail says so once; hers does not.
    for _ in range(2):
        mine = text_of(await jane.get(f"/invoices/{a['id']}"))
    assert "Viewed by the customer" not in mine
    office_view = text_of(await admin.get(f"/office/invoices/{a['id']}"))
    assert office_view.count("Viewed by the customer") == 1
    assert (await admin.get("/office/invoices/999999")).status_code == 404
    assert (await admin.get("/office/jobs/999999")).status_code == 404


async def test_card_on_file_saved_through_checkout_setup_mode(jane, demo, account, app):
    membership = (
        await Membership.select().where(Membership.external_id == "M-JANE-GOLD").first().run()
    )
    mid = membership["id"]
    page = await jane.get(f"/memberships/{mid}")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
    key = re.search(r'name="key" value="([^"]+)"', page.text).group(1)
    started = await jane.post(f"/memberships/{mid}/card", data={"_csrf_token": token, "key": key})
    assert started.status_code == 303, started.text
    page_url = started.headers["location"]
    assert "/c/pay/cs_test_" in page_url
    session = account.get(page_url.rsplit("/", 1)[1])
    assert session["mode"] == "setup"
    account.webhooks._held.clear()
    saved = await pay_on_page(page_url, card="5555 5555 5555 4444")
    assert saved.status_code == 303
    # The customer never comes back; the webhook alone saves the card.
    async with make_client(app) as stripe_side:
        for event in held_events(account, "checkout.session.completed"):
            await deliver(stripe_side, account, event)
    await webhooks.process_due(app.state.settings)
    after = await Membership.select().where(Membership.id == mid).first().run()
    assert (after["card_brand"], after["card_last4"]) == ("Mastercard", "4444")
    assert after["card_token"].startswith("pm_")

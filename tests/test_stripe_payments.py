"""Paying invoices through the Stripe gateway, against the Stripe test double (it stands
in for Stripe, which this machine cannot reach): linking the account in the office,
Checkout on the double's hosted page, webhooks verified with the business's secret and
kept once, late / repeated / out-of-order / lost webhooks, and retry safety."""

from __future__ import annotations

import time
from html import unescape

import pytest

from portal.db.office import tenant_by_id
from portal.db.tables import AuditEvent, OutboxEmail, Payment, StripeAccount, StripeEvent
from portal.payments import stripe_link, webhooks
from portal.payments.gateway import is_test_mode
from tests.support.businesses import import_business
from tests.support.http import make_client, post_form
from tests.support.paying import balances, new_invoice, path_of, submit_pay
from tests.support.stripe_double import stripe_double_fixture
from tests.support.stripe_paying import (
    DECLINED_CARD,
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
    """The double's account for XYZ Plumbing, linked in the office; its webhooks held so
    each test delivers them when (and as often as) it wants."""
    acct = stripe_double.create_account("XYZ Plumbing", webhook_url=WEBHOOK_URL)
    acct.webhooks.hold()
    await link_account(admin, acct)
    return acct


async def payments_of(tenant_id: int, invoice_id: int) -> list[dict]:
    return await Payment.raw(
        """SELECT p.* FROM payment p JOIN payment_allocation pa ON pa.payment = p.id
        WHERE p.tenant = {} AND pa.invoice = {} AND p.source = 'portal' ORDER BY p.id""",
        tenant_id,
        invoice_id,
    ).run()


async def test_linking_checks_the_key_and_never_shows_it_again(admin, account, stripe_double):
    page = unescape((await admin.get("/office/settings")).text)
    assert f"Stripe <code>{account.id}</code>" in page and "Test mode" in page
    assert account.secret_key not in page and account.webhook_secret not in page
    assert f"sk_test_…{account.secret_key[-4:]}" in page
    assert "/payments/stripe/webhook" in page
    (row,) = await StripeAccount.select().run()
    # Sealed at rest: neither key appears in the database.
    assert account.secret_key not in row["secret_key"]
    assert account.webhook_secret not in row["webhook_secret"]
    assert any(r.path == "/v1/account" for r in account.requests)


async def test_a_wrong_key_is_refused_and_nothing_changes(admin, account):
    before = await StripeAccount.select().run()
    answer = await post_form(
        admin,
        "/office/settings/payments/stripe",
        {"stripe_secret_key": "sk_test_" + "x" * 24, "stripe_webhook_secret": "whsec_abcdefgh12"},
        csrf_page="/office/settings",
    )
    assert answer.status_code == 422
    assert "Stripe refused this key" in unescape(answer.text)
    assert await StripeAccount.select().run() == before


async def test_malformed_keys_are_named_by_field_and_stripe_is_not_asked(admin, account):
    before, asked = await StripeAccount.select().run(), len(account.requests)
    answer = await post_form(
        admin,
        "/office/settings/payments/stripe",
        {"stripe_secret_key": "pk_test_123", "stripe_webhook_secret": "  "},
        csrf_page="/office/settings",
    )
    assert answer.status_code == 422
    text = unescape(answer.text)
    assert "Paste the secret key (sk_live_… or sk_test_…) or a restricted key (rk_…)" in text
    assert "Paste the webhook endpoint's signing secret (whsec_…)" in text
    assert len(account.requests) == asked
    assert await StripeAccount.select().run() == before


async def test_pay_two_invoices_in_full_through_checkout(jane, demo, account, app):
    a = await new_invoice(demo, total=21000)
    b = await new_invoice(demo, total=18050)
    started = await submit_pay(jane, [a["id"], b["id"]])
    assert started.status_code == 303
    page_url = started.headers["location"]
    assert page_url.startswith(account._double.url + "/c/pay/cs_test_")
    (payment,) = await payments_of(demo, a["id"])
    assert payment["gateway"] == "stripe" and payment["status"] == "pending"
    session = account.get(payment["gateway_ref"])
    # The allocations travel in the session's metadata; the amount is the database's.
    assert session["metadata"]["merchant_reference"] == f"pay_{payment['id']}"
    assert session["metadata"]["allocations"] == f"{a['id']}:21000,{b['id']}:18050"
    assert session["amount_total"] == 39050
    # Stripe's page has the payer's email filled in: nothing to type twice on a phone.
    assert session["customer_email"] == payment["account_email"] == "jane@example.com"
    create = [
        r for r in account.requests if r.path == "/v1/checkout/sessions" and r.method == "POST"
    ]
    assert (
        create[-1].idempotency_key
        == f"portal-{payment['payment_account_id']}-pay_{payment['id']}-checkout"
    )

    paid = await pay_on_page(page_url)
    assert paid.status_code == 303
    back = paid.headers["location"]
    # The customer is back before any webhook: the portal asks Stripe.
    receipt = await jane.get(path_of(back))
    assert receipt.status_code == 200
    text = unescape(receipt.text)
    assert "We received your payment of $390.50" in text and "Visa ending 4242" in text
    assert await balances(demo, a["number"], b["number"]) == {a["number"]: 0, b["number"]: 0}
    events = await AuditEvent.select().where(AuditEvent.invoice == a["id"]).run()
    assert [e["action"] for e in events] == ["payment"]
    assert "Test mode" in text
    receipt_email = (
        await OutboxEmail.select()
        .where(OutboxEmail.subject.like("Receipt%"))
        .order_by(OutboxEmail.id, ascending=False)
        .first()
        .run()
    )
    assert "Test mode: this was a test payment" in receipt_email["text_body"]

    # The webhooks then arrive, twice each: acknowledged, kept once, nothing changes again.
    async with make_client(app) as stripe_side:
        for event in held_events(account):
            answers = await deliver(stripe_side, account, event, times=2)
            assert [r.status_code for r in answers] == [200, 200]
    await webhooks.process_due(app.state.settings)
    ids = [r["event_id"] for r in await StripeEvent.select(StripeEvent.event_id).run()]
    assert len(ids) == len(set(ids)) > 0
    assert await balances(demo, a["number"]) == {a["number"]: 0}
    assert len(await AuditEvent.select().where(AuditEvent.invoice == a["id"]).run()) == 1


async def test_part_of_one_invoice_settled_by_a_late_webhook(jane, demo, account, app):
    a = await new_invoice(demo, total=30000)
    started = await submit_pay(jane, [a["id"]], action="partial", amount="120.00")
    assert started.status_code == 303
    account.webhooks._held.clear()
    paid = await pay_on_page(started.headers["location"])
    assert paid.status_code == 303
    (payment,) = await payments_of(demo, a["id"])
    assert payment["status"] == "pending"  # the customer did not come back
    completed = held_events(account, "checkout.session.completed")
    assert completed
    async with make_client(app) as stripe_side:
        (answer,) = await deliver(stripe_side, account, completed[-1])
    assert answer.status_code == 200
    await webhooks.process_due(app.state.settings)  # what the background task did already
    (payment,) = await payments_of(demo, a["id"])
    assert payment["status"] == "succeeded" and payment["amount_cents"] == 12000
    assert await balances(demo, a["number"]) == {a["number"]: 18000}


async def test_webhooks_out_of_order_end_as_stripe_says(jane, demo, account, app):
    """The page expires after payment? No: the expired event of an earlier session and the
    completed event of this one arrive newest first; the portal re-reads each session."""
    a = await new_invoice(demo, total=9000)
    account.webhooks._held.clear()
    started = await submit_pay(jane, [a["id"]])
    await pay_on_page(started.headers["location"])
    events = list(reversed(held_events(account)))
    async with make_client(app) as stripe_side:
        for event in events:
            (answer,) = await deliver(stripe_side, account, event)
            assert answer.status_code == 200
    await webhooks.process_due(app.state.settings)
    (payment,) = await payments_of(demo, a["id"])
    assert payment["status"] == "succeeded"


async def test_a_lost_webhook_is_settled_by_reconciliation(jane, demo, account, app):
    a = await new_invoice(demo, total=7000)
    account.webhooks._held.clear()
    started = await submit_pay(jane, [a["id"]])
    await pay_on_page(started.headers["location"])
    (payment,) = await payments_of(demo, a["id"])
    assert payment["status"] == "pending"
    settings = app.state.settings.with_(reconcile_after_seconds=0)
    await webhooks.reconcile(settings)
    (payment,) = await payments_of(demo, a["id"])
    assert payment["status"] == "succeeded"
    assert await balances(demo, a["number"]) == {a["number"]: 0}


async def test_a_forged_or_stale_webhook_is_refused(app, account):
    (event, *_) = account.events()
    async with make_client(app) as stranger:
        (forged,) = await deliver(stranger, account, event, secret="whsec_not_the_business")
        (stale,) = await deliver(stranger, account, event, signed_at=int(time.time()) - 3600)
    assert forged.status_code == 400 and stale.status_code == 400


async def test_unknown_event_types_are_acknowledged(app, account):
    events = account.events("payment_intent.created")
    async with make_client(app) as stripe_side:
        (answer,) = await deliver(stripe_side, account, events[0])
    assert answer.status_code == 200


async def test_a_declined_card_leaves_the_page_open_and_nothing_charged(jane, demo, account):
    a = await new_invoice(demo, total=5000)
    started = await submit_pay(jane, [a["id"]])
    declined = await pay_on_page(started.headers["location"], card=DECLINED_CARD)
    assert declined.status_code == 402 and "declined" in declined.text
    (payment,) = await payments_of(demo, a["id"])
    assert payment["status"] == "pending"
    assert await balances(demo, a["number"]) == {a["number"]: 5000}


async def test_a_webhook_signed_for_another_business_is_refused(app, account, stripe_double):
    """Business B's endpoint secret does not open A's endpoint (and nothing is kept)."""
    other = stripe_double.create_account("Someone Else")
    (event, *_) = account.events()
    before = await StripeEvent.count().run()
    async with make_client(app) as stranger:
        (answer,) = await deliver(stranger, account, event, secret=other.webhook_secret)
    assert answer.status_code == 400
    assert await StripeEvent.count().run() == before


async def test_live_keys_show_no_test_mode(app, stripe_double, settings):
    """A live account at the double: linked as live, so nothing says "Test mode"."""
    live = stripe_double.create_account("Live Plumbing", live=True)
    tenant_id = await import_business("liveplumbing", open_portal=True)
    tenant = await tenant_by_id(tenant_id)
    result = await stripe_link.link(
        settings,
        tenant,
        "boss@liveplumbing.example",
        {"stripe_secret_key": live.secret_key, "stripe_webhook_secret": live.webhook_secret},
    )
    assert not result.errors and result.account_id.startswith("stripe_live_")
    assert not is_test_mode(result.account_id)
    assert is_test_mode("stripe_test_acct_x") and is_test_mode("sandbox_acct_1")

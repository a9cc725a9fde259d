"""Paying invoices through the sandbox gateway: the happy path, receipts, audit trail,
idempotency (double submit, retried/replayed/late callbacks), signatures, declines,
abandoned pages and racing payments."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest

from portal.auth.passwords import hash_password
from portal.db import payments as payments_db
from portal.db.tables import (
    AuditEvent,
    Invoice,
    OutboxEmail,
    Payment,
    PaymentAllocation,
    PortalAccount,
    SandboxCheckout,
)
from portal.payments import sandbox
from tests.conftest import make_client, sign_in
from tests.paying import (
    DECLINED_CARD,
    GOOD_CARD,
    balances,
    checkout_count,
    enter_card,
    new_invoice,
    path_of,
    pay,
    submit_pay,
)


def shown(response) -> str:
    return unescape(response.text)


async def payment_of(tenant_id: int, invoice_id: int) -> list[dict]:
    """Portal payments allocated to an invoice, oldest first."""
    return await Payment.raw(
        """SELECT p.* FROM payment p JOIN payment_allocation pa ON pa.payment = p.id
        WHERE p.tenant = {} AND pa.invoice = {} AND p.source = 'portal' ORDER BY p.id""",
        tenant_id,
        invoice_id,
    ).run()


async def trail_of(invoice_id: int) -> list[dict]:
    return await AuditEvent.select().where(AuditEvent.invoice == invoice_id).run()


async def receipts_to(email: str) -> list[dict]:
    return (
        await OutboxEmail.select()
        .where((OutboxEmail.to_addr == email) & OutboxEmail.subject.like("Receipt%"))
        .run()
    )


async def checkout_row(ref: str) -> dict:
    return await SandboxCheckout.select().where(SandboxCheckout.public_id == ref).first().run()


# --- the happy path ------------------------------------------------------------------------------


async def test_pay_two_invoices_in_full_in_one_payment(jane, demo):
    a = await new_invoice(demo, total=21000)
    b = await new_invoice(demo, total=18050, unit="Electrical")
    emails_before = len(await receipts_to("jane@example.com"))

    started = await submit_pay(jane, [a["id"], b["id"]])
    assert started.status_code == 303
    checkout_url = started.headers["location"]
    assert "/sandbox-gateway/checkout/chk_" in checkout_url
    card_page = await jane.get(checkout_url)
    assert "Test mode" in card_page.text
    assert "XYZ Services" in card_page.text
    assert "Pay $390.50" in card_page.text
    assert a["number"] in card_page.text and b["number"] in card_page.text

    done = await enter_card(jane, checkout_url, GOOD_CARD)
    assert done.status_code == 303
    (payment,) = await payment_of(demo, a["id"])
    assert done.headers["location"].endswith(f"/payments/{payment['id']}")
    # The signed callback arrived before the customer came back.
    assert payment["status"] == "succeeded"
    assert (payment["amount_cents"], payment["kind"]) == (39050, "full")
    assert (payment["card_brand"], payment["card_last4"]) == ("Visa", "4242")
    assert payment["account_email"] == "jane@example.com"
    assert await balances(demo, a["number"], b["number"]) == {a["number"]: 0, b["number"]: 0}
    allocations = (
        await PaymentAllocation.select().where(PaymentAllocation.payment == payment["id"]).run()
    )
    assert sorted(x["amount_cents"] for x in allocations) == [18050, 21000]
    assert (await checkout_row(payment["gateway_ref"]))["callback_delivered_at"] is not None

    receipt = await jane.get(path_of(done.headers["location"]))
    assert receipt.status_code == 200
    text = shown(receipt)
    assert "Payment received" in text
    assert "We received your payment of $390.50" in text
    assert "Visa ending 4242" in text
    assert payment["gateway_ref"] in text
    assert a["number"] in text and b["number"] in text

    # One audit event per invoice (job + invoice), by the account, with the amount.
    for invoice, cents in ((a, 21000), (b, 18050)):
        (event,) = await trail_of(invoice["id"])
        assert event["actor"] == "jane@example.com"
        assert event["amount_cents"] == cents
        assert event["reference"] == payment["gateway_ref"]
        assert event["job"] is not None and event["action"] == "payment"
    # The receipt email is in the outbox.
    emails = await receipts_to("jane@example.com")
    assert len(emails) == emails_before + 1
    assert "$390.50" in emails[-1]["subject"]
    assert a["number"] in emails[-1]["text_body"] and "Visa ending 4242" in emails[-1]["text_body"]
    assert f"/payments/{payment['id']}" in emails[-1]["text_body"]
    assert "$390.50" in emails[-1]["html_body"] and b["number"] in emails[-1]["html_body"]

    # Paid invoices leave the Invoices tab; the invoice page shows payment and trail.
    assert a["number"] not in (await jane.get("/invoices")).text
    invoice_page = shown(await jane.get(f"/invoices/{a['id']}"))
    assert "Paid" in invoice_page and "Visa ending 4242" in invoice_page
    assert "Audit trail" in invoice_page and "jane@example.com" in invoice_page


async def test_pay_part_of_an_invoice(jane, demo):
    invoice = await new_invoice(demo, total=13900)
    response = await pay(jane, [invoice["id"]], action="partial", amount="50")
    assert response.status_code == 200
    assert "We received your payment of $50.00" in shown(response)
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 8900}
    (payment,) = await payment_of(demo, invoice["id"])
    assert (payment["kind"], payment["amount_cents"], payment["status"]) == (
        "partial",
        5000,
        "succeeded",
    )
    (event,) = await trail_of(invoice["id"])
    assert event["amount_cents"] == 5000
    # Still on the Invoices tab, with what is left.
    html = (await jane.get("/invoices")).text
    assert invoice["number"] in html and "$89.00" in html


# --- failures ------------------------------------------------------------------------------------


async def test_declined_card_changes_nothing_and_can_be_retried(jane, demo):
    invoice = await new_invoice(demo, total=7700)
    started = await submit_pay(jane, [invoice["id"]])
    done = await enter_card(jane, started.headers["location"], DECLINED_CARD)
    assert done.status_code == 303
    back = await jane.get(path_of(done.headers["location"]))
    (payment,) = await payment_of(demo, invoice["id"])
    assert payment["status"] == "failed"
    assert payment["failure_reason"] == "Your card was declined."
    assert (
        back.status_code == 303 and back.headers["location"] == f"/invoices?retry={payment['id']}"
    )
    page = await jane.get(back.headers["location"])
    text = shown(page)
    assert "Your payment didn't go through: Your card was declined." in text
    assert "Nothing was charged and your balances are unchanged." in text
    assert f'value="{invoice["id"]}" checked' in page.text
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 7700}
    assert await trail_of(invoice["id"]) == []
    # Try again: a new payment, which succeeds.
    again = await pay(jane, [invoice["id"]])
    assert "Payment received" in again.text
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    assert [p["status"] for p in await payment_of(demo, invoice["id"])] == ["failed", "succeeded"]


@pytest.mark.parametrize(
    "number,expiry,cvc,message",
    [
        ("4242 4242 4242 4241", None, "123", "That card number isn't valid."),
        ("4242-4242-4242-4242x", None, "123", "Enter the card number using digits only."),
        ("", None, "123", "Enter the card number."),
        ("4111 1111 1111 1111", None, "123", "use a test card such as 4242 4242 4242 4242"),
        (GOOD_CARD, "01 / 20", "123", "This card has expired."),
        (GOOD_CARD, "13 / 40", "123", "Enter a month from 01 to 12."),
        (GOOD_CARD, "soon", "123", "Enter the expiry date as MM / YY"),
        (GOOD_CARD, None, "12", "The security code is the 3 digits on the back of the card."),
        ("3782 822463 10005", None, "123", "The security code is 4 digits on American Express"),
    ],
)
async def test_card_page_checks_number_expiry_and_code(jane, demo, number, expiry, cvc, message):
    invoice = await new_invoice(demo, total=3000)
    started = await submit_pay(jane, [invoice["id"]])
    url = started.headers["location"]
    response = await enter_card(jane, url, number, expiry=expiry, cvc=cvc)
    assert response.status_code == 422
    assert message in shown(response)
    row = await checkout_row(url.rsplit("/", 1)[1])
    assert row["status"] == "open" and row["attempts"] == 1
    assert (await payment_of(demo, invoice["id"]))[0]["status"] == "pending"
    # The number typed is not sent back in the form.
    form = response.text.split('<form method="post"', 1)[1]
    assert 'id="f-number" name="number" type="text" value=""' in form
    digits = number.replace(" ", "").replace("-", "")
    if len(digits) > 4:
        assert digits not in form and number not in form


async def test_canceling_on_the_card_page_charges_nothing(jane, demo):
    invoice = await new_invoice(demo, total=4400)
    started = await submit_pay(jane, [invoice["id"]])
    url = started.headers["location"]
    page = await jane.get(url)
    token = page.text.split('name="_csrf_token" value="')[1].split('"')[0]
    assert "Cancel and return to XYZ Services" in page.text
    done = await jane.post(url + "/cancel", data={"_csrf_token": token})
    assert done.status_code == 303
    back = await jane.get(path_of(done.headers["location"]))
    message = shown(await jane.get(back.headers["location"]))
    assert "The payment was canceled on the payment page." in message
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 4400}
    # The card page is closed now.
    closed = await jane.get(url)
    assert "This payment page is closed. Nothing was charged." in closed.text
    assert (await enter_card(jane, url)).status_code == 409


async def test_expired_card_page_fails_the_payment(jane, demo):
    invoice = await new_invoice(demo, total=4500)
    started = await submit_pay(jane, [invoice["id"]])
    url = started.headers["location"]
    ref = url.rsplit("/", 1)[1]
    # The provider's clock runs out (its page lives 30 minutes).
    await (
        SandboxCheckout.update(
            {SandboxCheckout.expires_at: datetime.now(UTC) - timedelta(minutes=1)}
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )
    page = await jane.get(url)
    assert "This payment page has expired. Nothing was charged." in page.text
    assert (await enter_card(jane, url)).status_code == 409
    (payment,) = await payment_of(demo, invoice["id"])
    back = await jane.get(f"/payments/{payment['id']}")
    assert back.headers["location"] == f"/invoices?retry={payment['id']}"
    assert "expired" in shown(await jane.get(back.headers["location"]))
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 4500}


async def test_returning_before_paying_shows_payment_not_finished(jane, demo):
    invoice = await new_invoice(demo, total=4600)
    started = await submit_pay(jane, [invoice["id"]])
    (payment,) = await payment_of(demo, invoice["id"])
    page = await jane.get(f"/payments/{payment['id']}")
    assert page.status_code == 200
    text = shown(page)
    assert "Payment not finished" in text and "nothing has been charged" in text
    assert started.headers["location"] in text  # "Continue to the payment page"


# --- idempotency ---------------------------------------------------------------------------------


async def test_double_submit_makes_one_payment_and_one_checkout(jane, demo):
    invoice = await new_invoice(demo, total=5100)
    page = (await jane.get("/invoices")).text
    token = page.split('name="_csrf_token" value="')[1].split('"')[0]
    key = page.split('name="key" value="')[1].split('"')[0]
    data = {"_csrf_token": token, "key": key, "invoice": str(invoice["id"]), "action": "full"}
    first, second = await asyncio.gather(
        jane.post("/invoices/pay", data=data), jane.post("/invoices/pay", data=data)
    )
    third = await jane.post("/invoices/pay", data=data)  # a refresh, later
    assert first.status_code == second.status_code == third.status_code == 303
    assert first.headers["location"] == second.headers["location"] == third.headers["location"]
    assert len(await payment_of(demo, invoice["id"])) == 1
    # After paying, the same form again leads to the receipt, not to a second charge.
    await enter_card(jane, first.headers["location"])
    again = await jane.post("/invoices/pay", data=data)
    (payment,) = await payment_of(demo, invoice["id"])
    assert again.headers["location"] == f"/payments/{payment['id']}"
    assert payment["status"] == "succeeded"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    # The same key with a different selection is refused, nothing charged.
    other = await new_invoice(demo, total=1000)
    changed = await jane.post("/invoices/pay", data={**data, "invoice": str(other["id"])})
    assert changed.status_code == 422
    assert "already used for another payment" in shown(changed)
    assert await payment_of(demo, other["id"]) == []


async def test_replayed_retried_and_late_callbacks_settle_once(app, jane, demo, settings):
    invoice = await new_invoice(demo, total=6200)
    started = await submit_pay(jane, [invoice["id"]])
    await enter_card(jane, started.headers["location"])
    (payment,) = await payment_of(demo, invoice["id"])
    ref = payment["gateway_ref"]
    emails = len(await receipts_to("jane@example.com"))
    body = sandbox.callback_body(await checkout_row(ref))
    signature = sandbox.sign(sandbox.callback_secret(settings, "sandbox_acct_xyzservices"), body)
    # A replay (same body and signature, posted by anyone) ...
    async with make_client(app) as stranger:
        replay = await stranger.post(
            "/payments/callback",
            content=body,
            headers={"Sandbox-Signature": signature, "content-type": "application/json"},
        )
    assert replay.status_code == 200 and replay.json() == {"status": "succeeded"}
    # ... and the gateway retrying its delivery.
    assert await sandbox.deliver_callback(app, settings, ref) is True
    assert await sandbox.deliver_callback(app, settings, ref) is True
    assert len(await payment_of(demo, invoice["id"])) == 1
    assert len(await trail_of(invoice["id"])) == 1
    assert len(await receipts_to("jane@example.com")) == emails
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}


async def test_customer_back_before_the_callback_then_late_callback(app, jane, demo, settings):
    invoice = await new_invoice(demo, total=6300)
    started = await submit_pay(jane, [invoice["id"]])
    ref = started.headers["location"].rsplit("/", 1)[1]
    # The provider finished the payment, but its callback has not arrived yet.
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: "Mastercard",
                SandboxCheckout.card_last4: "4444",
                SandboxCheckout.completed_at: datetime.now(UTC),
            }
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )
    (payment,) = await payment_of(demo, invoice["id"])
    assert payment["status"] == "pending"
    receipt = await jane.get(f"/payments/{payment['id']}")
    assert "Payment received" in receipt.text and "Mastercard ending 4444" in receipt.text
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    # The late callback finds the payment settled: nothing more happens.
    assert await sandbox.deliver_callback(app, settings, ref) is True
    assert len(await payment_of(demo, invoice["id"])) == 1
    assert len(await trail_of(invoice["id"])) == 1
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}


async def test_simultaneous_callbacks_and_return_settle_once(app, jane, demo, settings):
    invoice = await new_invoice(demo, total=6500)
    started = await submit_pay(jane, [invoice["id"]])
    ref = started.headers["location"].rsplit("/", 1)[1]
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: "Visa",
                SandboxCheckout.card_last4: "4242",
                SandboxCheckout.completed_at: datetime.now(UTC),
            }
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )
    (payment,) = await payment_of(demo, invoice["id"])
    emails = len(await receipts_to("jane@example.com"))
    results = await asyncio.gather(
        *(sandbox.deliver_callback(app, settings, ref) for _ in range(3)),
        jane.get(f"/payments/{payment['id']}"),
    )
    assert results[:3] == [True, True, True]
    assert "Payment received" in results[3].text
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    assert len(await trail_of(invoice["id"])) == 1
    assert len(await receipts_to("jane@example.com")) == emails + 1


async def test_lost_callback_is_made_good_when_the_invoices_tab_is_opened(jane, demo):
    invoice = await new_invoice(demo, total=6600)
    started = await submit_pay(jane, [invoice["id"]])
    ref = started.headers["location"].rsplit("/", 1)[1]
    # Paid at the provider; its callback is lost and the customer never comes back.
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: "Visa",
                SandboxCheckout.card_last4: "4242",
                SandboxCheckout.completed_at: datetime.now(UTC),
            }
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )
    history = (await jane.get("/history")).text  # History asks the gateway too
    assert re.search(invoice["number"] + r"</a>.*?\$0\.00.*?>Paid</span>", history, re.S)
    assert invoice["number"] not in (await jane.get("/invoices")).text
    (payment,) = await payment_of(demo, invoice["id"])
    assert payment["status"] == "succeeded"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    assert len(await trail_of(invoice["id"])) == 1


async def test_early_callback_before_the_checkout_was_recorded(app, demo, settings):
    """The gateway may answer before the portal stored the checkout's reference: the
    payment is found by its own reference (stored before the gateway was asked)."""
    invoice = await new_invoice(demo, total=6700)
    customer = (
        await Invoice.select(Invoice.customer).where(Invoice.id == invoice["id"]).first().run()
    )["customer"]
    payment_id = await payments_db.start_payment(
        tenant_id=demo,
        customer_id=customer,
        account_email="jane@example.com",
        key="early-callback-key-0001",
        kind="full",
        gateway="sandbox",
        payment_account_id="sandbox_acct_xyzservices",
        allocations={invoice["id"]: 6700},
        balances_seen={invoice["id"]: 6700},
        numbers={invoice["id"]: invoice["number"]},
    )
    checkout = await sandbox.SandboxGateway(settings, "sandbox_acct_xyzservices").create_checkout(
        mode="payment",
        merchant_reference=f"pay_{payment_id}",
        amount_cents=6700,
        currency="USD",
        description="early",
        return_url=f"http://xyzplumbing.localhost/payments/{payment_id}",
        callback_url="http://xyzplumbing.localhost/payments/callback",
    )
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: "Visa",
                SandboxCheckout.card_last4: "4242",
            }
        )
        .where(SandboxCheckout.public_id == checkout.ref)
        .run()
    )
    assert await sandbox.deliver_callback(app, settings, checkout.ref) is True
    (payment,) = await payment_of(demo, invoice["id"])
    assert payment["status"] == "succeeded" and payment["gateway_ref"] == checkout.ref
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}


# --- signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["no signature", "wrong signature", "other account's key", "tampered body"]
)
async def test_callbacks_without_a_good_signature_are_refused(app, jane, demo, settings, case):
    invoice = await new_invoice(demo, total=6400)
    started = await submit_pay(jane, [invoice["id"]])
    ref = started.headers["location"].rsplit("/", 1)[1]
    # The provider has the payment as succeeded; a forged callback says so too.
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: "Visa",
                SandboxCheckout.card_last4: "4242",
            }
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )
    body = sandbox.callback_body(await checkout_row(ref))
    good = sandbox.sign(sandbox.callback_secret(settings, "sandbox_acct_xyzservices"), body)
    headers = {"content-type": "application/json"}
    if case == "wrong signature":
        headers["Sandbox-Signature"] = "sha256=" + "0" * 64
    elif case == "other account's key":
        headers["Sandbox-Signature"] = sandbox.sign(
            sandbox.callback_secret(settings, "sandbox_acct_other"), body
        )
    elif case == "tampered body":
        headers["Sandbox-Signature"] = good
        body = body.replace(b'"amount_cents":6400', b'"amount_cents":1')
    async with make_client(app) as stranger:
        response = await stranger.post("/payments/callback", content=body, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"error": "bad signature"}
    (payment,) = await payment_of(demo, invoice["id"])
    assert payment["status"] == "pending"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 6400}
    assert await trail_of(invoice["id"]) == []


async def test_signed_callback_for_an_unknown_payment_is_404(app, settings):
    body = json.dumps(
        {
            "id": "evt_x",
            "type": "checkout.completed",
            "account_id": "sandbox_acct_xyzservices",
            "checkout": {
                "id": "chk_nope",
                "mode": "payment",
                "status": "succeeded",
                "amount_cents": 100,
                "currency": "USD",
                "merchant_reference": "pay_99999999",
            },
        }
    ).encode()
    signature = sandbox.sign(sandbox.callback_secret(settings, "sandbox_acct_xyzservices"), body)
    async with make_client(app) as client:
        response = await client.post(
            "/payments/callback", content=body, headers={"Sandbox-Signature": signature}
        )
    assert response.status_code == 404


# --- racing payments -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def acme_accounts(app, demo):
    """Two signed-in accounts that both see Acme Property Management's records."""
    clients = []
    for email in ("facilities@acme.example", "ap@acme.example"):
        await PortalAccount.insert(
            PortalAccount(
                tenant=demo,
                email=email,
                password_hash=await hash_password("acme-test-pass"),
                confirmed_at=datetime.now(UTC),
            )
        ).run()
        client = make_client(app)
        await sign_in(client, email, "acme-test-pass")
        clients.append(client)
    yield clients
    for client in clients:
        await client.aclose()


async def test_second_partial_payment_over_the_balance_is_refused_before_charging(
    demo, acme_accounts
):
    first, second = acme_accounts
    invoice = await new_invoice(demo, "C-1003", total=10000)
    a = await submit_pay(first, [invoice["id"]], action="partial", amount="60")
    assert a.status_code == 303
    checkouts = await checkout_count()
    b = await submit_pay(second, [invoice["id"]], action="partial", amount="60")
    assert b.status_code == 422
    assert "A payment for " + invoice["number"] + " is already in progress" in shown(b)
    assert await checkout_count() == checkouts  # the loser never reached a card page
    # What fits beside the pending payment may still be paid.
    c = await pay(second, [invoice["id"]], action="partial", amount="40")
    assert "Payment received" in c.text
    await enter_card(first, a.headers["location"])
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    statuses = sorted(p["status"] for p in await payment_of(demo, invoice["id"]))
    assert statuses == ["succeeded", "succeeded"]


async def test_concurrent_partial_payments_never_overpay(demo, acme_accounts):
    first, second = acme_accounts
    invoice = await new_invoice(demo, "C-1003", total=10000)
    a, b = await asyncio.gather(
        submit_pay(first, [invoice["id"]], action="partial", amount="70"),
        submit_pay(second, [invoice["id"]], action="partial", amount="70"),
    )
    assert sorted([a.status_code, b.status_code]) == [303, 422]
    winner = a if a.status_code == 303 else b
    winner_client = first if winner is a else second
    await enter_card(winner_client, winner.headers["location"])
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 3000}
    payments = await payment_of(demo, invoice["id"])
    assert [p["status"] for p in payments] == ["succeeded"]


async def test_racing_payment_records_hold_the_balance(demo):
    """Two payments recorded at the same moment (no HTTP in between): on PostgreSQL the
    invoice rows are locked, on SQLite one writer goes at a time; either way only one
    is recorded for more than half the balance."""
    invoice = await new_invoice(demo, "C-1003", total=10000)
    customer = (
        await Invoice.select(Invoice.customer).where(Invoice.id == invoice["id"]).first().run()
    )["customer"]

    async def start(key: str, email: str):
        return await payments_db.start_payment(
            tenant_id=demo,
            customer_id=customer,
            account_email=email,
            key=key,
            kind="partial",
            gateway="sandbox",
            payment_account_id="sandbox_acct_xyzservices",
            allocations={invoice["id"]: 6000},
            balances_seen={invoice["id"]: 10000},
            numbers={invoice["id"]: invoice["number"]},
        )

    results = await asyncio.gather(
        *(start(f"race-key-{n:04d}-abcdefgh", f"person{n}@acme.example") for n in range(4))
    )
    started = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, payments_db.Refusal)]
    assert len(started) == 1 and len(refused) == 3
    assert "already in progress" in refused[0].message


async def test_concurrent_full_payments_of_the_same_invoices_charge_once(demo, acme_accounts):
    first, second = acme_accounts
    x = await new_invoice(demo, "C-1003", total=2500)
    y = await new_invoice(demo, "C-1003", total=3500)
    a, b = await asyncio.gather(
        submit_pay(first, [x["id"], y["id"]]), submit_pay(second, [y["id"], x["id"]])
    )
    assert sorted([a.status_code, b.status_code]) == [303, 422]


async def test_balance_changed_meanwhile_refunds_and_applies_nothing(jane, demo):
    """The database's conditional update is the last guard: if an invoice's balance no
    longer covers a payment when it succeeds, nothing is applied and the charge is
    refunded at the gateway."""
    invoice = await new_invoice(demo, total=8000)
    started = await submit_pay(jane, [invoice["id"]])
    # The office records a cheque for part of it in the meantime.
    await Invoice.update({Invoice.balance_cents: 3000}).where(Invoice.id == invoice["id"]).run()
    done = await enter_card(jane, started.headers["location"])
    (payment,) = await payment_of(demo, invoice["id"])
    assert payment["status"] == "failed"
    assert "refunded" in payment["failure_reason"]
    assert (await checkout_row(payment["gateway_ref"]))["status"] == "refunded"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 3000}
    assert await trail_of(invoice["id"]) == []
    back = await jane.get(path_of(done.headers["location"]))
    assert "refunded in full" in shown(await jane.get(back.headers["location"]))


async def test_coming_back_and_paying_again_replaces_the_unfinished_checkout(jane, demo):
    invoice = await new_invoice(demo, total=9100)
    first = await submit_pay(jane, [invoice["id"]])
    second = await submit_pay(jane, [invoice["id"]])  # a new form: back, choose again
    assert second.status_code == 303
    assert first.headers["location"] != second.headers["location"]
    old = await jane.get(first.headers["location"])
    assert "This payment page is closed" in old.text
    await enter_card(jane, second.headers["location"])
    statuses = [p["status"] for p in await payment_of(demo, invoice["id"])]
    assert statuses == ["failed", "succeeded"]
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}


# --- what is stored ------------------------------------------------------------------------------


async def test_no_card_number_anywhere_in_the_database_or_logs(jane, demo, caplog):
    caplog.set_level(logging.DEBUG)
    good = await new_invoice(demo, total=1200)
    bad = await new_invoice(demo, total=1300)
    await pay(jane, [good["id"]], card="4242424242424242")
    await pay(jane, [bad["id"]], card="4000-0000-0000-0002")
    numbers = ["4242424242424242", "4242 4242 4242 4242", "4000000000000002", "4000-0000-0000-0002"]
    engine = Invoice._meta.db
    if engine.engine_type == "sqlite":
        tables = [
            r["name"]
            for r in await Invoice.raw("SELECT name FROM sqlite_master WHERE type = 'table'").run()
        ]
    else:
        tables = [
            r["table_name"]
            for r in await Invoice.raw(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).run()
        ]
    dumped = []
    for table in tables:
        for row in await Invoice.raw(f'SELECT * FROM "{table}"').run():
            dumped.append(" ".join(str(v) for v in row.values()))
    everything = "\n".join(dumped)
    assert "4242" in everything  # last four digits are kept (the check can fail)
    for number in numbers:
        assert number not in everything
    for record in caplog.records:
        for number in numbers:
            assert number not in record.getMessage()


async def test_declined_part_payment_offers_the_same_amount_again(jane, demo):
    invoice = await new_invoice(demo, total=9900)
    back = await pay(jane, [invoice["id"]], action="partial", amount="12.34", card=DECLINED_CARD)
    page = await jane.get(back.headers["location"])
    assert 'name="amount" type="text" value="12.34"' in page.text
    assert f'value="{invoice["id"]}" checked' in page.text
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 9900}

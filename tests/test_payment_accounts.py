"""Issue 11.1: a payment (and a card update) is settled against the payment account it
started on, even after the office unlinks or relinks the account; an unlink closes the
card pages still open on the old account first; a payment is never marked failed while
its card page can still be paid; and a success that arrives for a payment already marked
failed is recorded (or refunded), never dropped, and the office is alerted.

The sandbox gateway stands in for the card provider (a test double for a service outside
this machine): "paid at the provider, callback not arrived yet" is its checkout row
marked succeeded, as in tests/test_payments.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape

from portal.db.queries import tenant_by_host
from portal.db.tables import (
    AuditEvent,
    CardUpdate,
    Customer,
    Membership,
    OutboxEmail,
    Payment,
    SandboxCheckout,
)
from portal.demo import ADMIN_EMAIL, DEMO_HOST, JANE_EMAIL
from portal.payments import sandbox, service
from tests.conftest import make_client, post_form
from tests.paying import (
    CSRF_FIELD,
    balances,
    enter_card,
    new_invoice,
    path_of,
    pay,
    submit_pay,
)

KEY_FIELD = re.compile(r'name="key" value="([^"]+)"')


def shown(response) -> str:
    return unescape(response.text)


def ref_of(started) -> str:
    assert started.status_code == 303, started.text
    return started.headers["location"].rsplit("/", 1)[1]


async def customer_id(external_id: str = "C-1001") -> int:
    """A demo customer's id (C-1001 is Jane's record)."""
    row = (
        await Customer.select(Customer.id).where(Customer.external_id == external_id).first().run()
    )
    return row["id"]


async def linked_account() -> str:
    return (await tenant_by_host(DEMO_HOST))["payment_account_id"]


async def unlink(admin):
    """The admin presses Unlink payment account (no JavaScript: a form post)."""
    return await post_form(
        admin, "/office/settings/payments/unlink", {}, csrf_page="/office/settings"
    )


async def relink(admin) -> str:
    """Unlink, link a new sandbox account and turn card payments back on; the new account."""
    answer = await unlink(admin)
    assert answer.status_code == 303, answer.text
    for path, data in (
        ("/office/settings/payments/link", {}),
        ("/office/settings/payments_enabled", {"payments_enabled": "yes"}),
    ):
        answer = await post_form(admin, path, data, csrf_page="/office/settings")
        assert answer.status_code == 303, answer.text
    return await linked_account()


async def paid_at_the_provider(ref: str, brand: str = "Visa", last4: str = "4242") -> None:
    """The card went through at the provider; its callback has not arrived yet."""
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: brand,
                SandboxCheckout.card_last4: last4,
                SandboxCheckout.card_token: "tok_sbx_test_" + ref[-8:],
                SandboxCheckout.completed_at: datetime.now(UTC),
            }
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )


async def checkout_row(ref: str) -> dict:
    return await SandboxCheckout.select().where(SandboxCheckout.public_id == ref).first().run()


async def charged_for(invoice: dict) -> int:
    """What the provider charged (and kept) for checkouts naming this invoice."""
    rows = (
        await SandboxCheckout.select(SandboxCheckout.amount_cents)
        .where(
            SandboxCheckout.description.like(f"%{invoice['number']}%")
            & (SandboxCheckout.status == "succeeded")
        )
        .run()
    )
    return sum(r["amount_cents"] for r in rows)


async def payments_of(tenant_id: int, invoice_id: int) -> list[dict]:
    return await Payment.raw(
        """SELECT p.* FROM payment p JOIN payment_allocation pa ON pa.payment = p.id
        WHERE p.tenant = {} AND pa.invoice = {} AND p.source = 'portal' ORDER BY p.id""",
        tenant_id,
        invoice_id,
    ).run()


async def trail_of(invoice_id: int) -> list[dict]:
    return (
        await AuditEvent.select()
        .where(AuditEvent.invoice == invoice_id)
        .order_by(AuditEvent.id)
        .run()
    )


async def emails_to(address: str) -> list[dict]:
    return (
        await OutboxEmail.select()
        .where(OutboxEmail.to_addr == address)
        .order_by(OutboxEmail.id)
        .run()
    )


async def mark_failed_while_open(payment_id: int) -> None:
    """The state the old code left behind: a payment marked failed (the portal asked the
    wrong account, which had no record of it) while its card page was still open."""
    await (
        Payment.update(
            {
                Payment.status: "failed",
                Payment.failure_reason: "The payment service has no record of this payment.",
                Payment.completed_at: datetime.now(UTC),
            }
        )
        .where(Payment.id == payment_id)
        .run()
    )


def alerts_on(page_text: str) -> str:
    """The office alerts region of an office page ("" when there are none)."""
    found = re.search(r'<section[^>]*id="office-alerts".*?</section>', page_text, re.S)
    return unescape(found.group(0)) if found else ""


# --- the account a payment started on --------------------------------------------------------


async def test_paid_before_a_relink_is_recorded_and_never_charged_twice(
    app, jane, admin, demo, settings
):
    invoice = await new_invoice(demo, total=12345)
    ref = ref_of(await submit_pay(jane, [invoice["id"]]))
    await paid_at_the_provider(ref)
    await relink(admin)
    (payment,) = await payments_of(demo, invoice["id"])
    # The customer comes back from the card page after the relink: a receipt, not
    # "nothing was charged".
    back = await jane.get(f"/payments/{payment['id']}")
    assert back.status_code == 200, back.headers.get("location")
    assert "Payment received" in shown(back) and "Nothing was charged" not in shown(back)
    # The provider's callback, signed for the account the payment started on, arrives
    # after the relink: accepted (it changes nothing more).
    assert await sandbox.deliver_callback(app, settings, ref) is True
    (payment,) = await payments_of(demo, invoice["id"])
    assert payment["status"] == "succeeded"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    assert len(await trail_of(invoice["id"])) == 1
    # A second attempt cannot charge again.
    again = await submit_pay(jane, [invoice["id"]])
    assert again.status_code == 422
    assert f"{invoice['number']} is already paid, so nothing was charged." in shown(again)
    assert await charged_for(invoice) == 12345


async def test_a_payment_started_as_the_account_changes_settles_on_its_own_account(
    app, jane, admin, demo, settings
):
    """A pay request that read the business a moment before the relink (on another
    process) gets its card page from the old account; paying it there is recorded."""
    invoice = await new_invoice(demo, total=24000)
    before = await tenant_by_host(DEMO_HOST)
    await relink(admin)
    key = KEY_FIELD.search((await jane.get("/invoices")).text).group(1)
    outcome = await service.begin(
        settings,
        before,
        await customer_id(),
        JANE_EMAIL,
        service.PayForm(action="full", invoice_ids=[invoice["id"]], amount="", key=key),
    )
    assert outcome.redirect and "/sandbox-gateway/checkout/" in outcome.redirect
    assert (await checkout_row(outcome.redirect.rsplit("/", 1)[1]))["account_id"] == before[
        "payment_account_id"
    ]
    # The old account's card page still says whose it is.
    assert "Cancel and return to XYZ Services" in shown(await jane.get(path_of(outcome.redirect)))
    done = await enter_card(jane, path_of(outcome.redirect))
    assert done.status_code == 303
    back = await jane.get(path_of(done.headers["location"]))
    assert back.status_code == 200 and "Payment received" in shown(back)
    (payment,) = await payments_of(demo, invoice["id"])
    assert payment["status"] == "succeeded"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    assert await charged_for(invoice) == 24000


async def test_card_page_open_during_a_relink_is_closed_and_nothing_is_charged(jane, admin, demo):
    invoice = await new_invoice(demo, total=24100)
    started = await submit_pay(jane, [invoice["id"]])
    url = path_of(started.headers["location"])
    assert (await jane.get(url)).status_code == 200  # the customer is on the card page
    answer = await unlink(admin)
    notice = shown(await admin.get(answer.headers["location"]))
    await relink(admin)
    done = await enter_card(jane, url)
    assert done.status_code == 409
    assert "This payment page is closed. Nothing was charged." in shown(done)
    assert (await checkout_row(ref_of(started)))["status"] == "canceled"
    (payment,) = await payments_of(demo, invoice["id"])
    assert payment["status"] == "failed"
    back = await jane.get(f"/payments/{payment['id']}")
    message = shown(await jane.get(back.headers["location"]))
    assert "changed its payment account" in message and "Nothing was charged" in message
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 24100}
    # Trying again pays once, on the new account.
    again = await pay(jane, [invoice["id"]])
    assert "Payment received" in shown(again)
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    assert await charged_for(invoice) == 24100
    # The admin was told what the unlink did.
    assert "Card pages customers still had open on it were closed" in notice


async def test_a_callback_signed_by_another_of_the_business_accounts_settles_nothing(
    app, jane, admin, demo, settings
):
    """Old accounts still verify their own payments' callbacks, but never another's."""
    old = await linked_account()
    await relink(admin)
    invoice = await new_invoice(demo, total=3300)
    ref = ref_of(await submit_pay(jane, [invoice["id"]]))
    await paid_at_the_provider(ref)
    body = sandbox.callback_body(await checkout_row(ref))
    forged = body.replace(json.dumps(await linked_account()).encode(), json.dumps(old).encode())
    signature = sandbox.sign(sandbox.callback_secret(settings, old), forged)
    async with make_client(app) as stranger:
        answer = await stranger.post(
            "/payments/callback", content=forged, headers={"Sandbox-Signature": signature}
        )
    assert answer.status_code in (403, 409)
    (payment,) = await payments_of(demo, invoice["id"])
    assert payment["status"] == "pending"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 3300}
    assert await sandbox.deliver_callback(app, settings, ref) is True
    assert (await payments_of(demo, invoice["id"]))[0]["status"] == "succeeded"


# --- membership card updates -----------------------------------------------------------------


async def membership(external_id: str) -> int:
    row = (
        await Membership.select(Membership.id)
        .where(Membership.external_id == external_id)
        .first()
        .run()
    )
    return row["id"]


async def start_card_update(client, mid: int):
    page = (await client.get(f"/memberships/{mid}")).text
    data = {
        "_csrf_token": CSRF_FIELD.search(page).group(1),
        "key": KEY_FIELD.search(page).group(1),
    }
    return await client.post(f"/memberships/{mid}/card", data=data)


async def test_card_updates_complete_against_the_account_they_started_on(
    app, jane, admin, demo, settings
):
    mid = await membership("M-JANE-GOLD")
    saved = await start_card_update(jane, mid)  # paid at the provider before the relink
    saved_ref = ref_of(saved)
    await paid_at_the_provider(saved_ref, "Mastercard", "4444")
    left_open = await start_card_update(jane, mid)  # still on the card page
    open_url = path_of(left_open.headers["location"])
    await relink(admin)
    # The saved card's callback, signed for the old account, is accepted and applied.
    assert await sandbox.deliver_callback(app, settings, saved_ref) is True
    saved_update = (
        await CardUpdate.select().where(CardUpdate.gateway_ref == saved_ref).first().run()
    )
    assert saved_update["status"] == "succeeded"
    card = await Membership.select().where(Membership.id == mid).first().run()
    assert (card["card_brand"], card["card_last4"]) == ("Mastercard", "4444")
    # The page left open was closed by the unlink: nothing saved there.
    closed = await enter_card(jane, open_url)
    assert closed.status_code == 409
    open_update = (
        await CardUpdate.select().where(CardUpdate.gateway_ref == ref_of(left_open)).first().run()
    )
    assert open_update["status"] == "failed"
    back = await jane.get(f"/memberships/{mid}/card/{open_update['id']}")
    result = shown(await jane.get(back.headers["location"]))
    assert "Your card on file was not changed" in result
    assert "Your card on file is now" not in result


# --- never failed while payable; a late success is recorded ---------------------------------


async def test_a_payment_is_closed_at_the_gateway_before_it_is_marked_failed(jane, demo):
    """A payment whose card page reference was never stored (the request died between
    asking the gateway and recording its answer) is given up after a while: its card
    page is closed first, so it cannot be paid once the portal calls it failed."""
    invoice = await new_invoice(demo, total=700)
    started = await submit_pay(jane, [invoice["id"]])
    url = path_of(started.headers["location"])
    (payment,) = await payments_of(demo, invoice["id"])
    await (
        Payment.update(
            {Payment.gateway_ref: "", Payment.created_at: datetime.now(UTC) - timedelta(hours=1)}
        )
        .where(Payment.id == payment["id"])
        .run()
    )
    await jane.get("/invoices")  # the Invoices tab settles what has ended
    (payment,) = await payments_of(demo, invoice["id"])
    assert payment["status"] == "failed"
    done = await enter_card(jane, url)
    assert done.status_code == 409
    assert "This payment page is closed. Nothing was charged." in shown(done)
    assert await charged_for(invoice) == 0


async def test_a_success_for_a_payment_already_failed_is_recorded_and_the_office_alerted(
    app, jane, admin, office, demo
):
    invoice = await new_invoice(demo, total=700)
    started = await submit_pay(jane, [invoice["id"]])
    (payment,) = await payments_of(demo, invoice["id"])
    await mark_failed_while_open(payment["id"])
    admin_emails = len(await emails_to(ADMIN_EMAIL))
    receipts = len(await emails_to(JANE_EMAIL))
    # The customer pays on the page that was still open; its valid callback arrives.
    done = await enter_card(jane, path_of(started.headers["location"]))
    assert done.status_code == 303
    (payment,) = await payments_of(demo, invoice["id"])
    assert payment["status"] == "succeeded"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    back = await jane.get(path_of(done.headers["location"]))
    assert back.status_code == 200 and "Payment received" in shown(back)
    assert len(await emails_to(JANE_EMAIL)) == receipts + 1  # the receipt
    (event,) = await trail_of(invoice["id"])
    assert event["amount_cents"] == 700 and event["action"] == "payment"
    assert "recorded late" in event["detail"]
    # The office sees it at the top of its pages until someone marks it as seen.
    for page in ("/office/settings", "/office/bookings", "/office/customers"):
        alert = alerts_on((await office.get(page)).text)
        assert "$7.00" in alert and invoice["number"] in alert, page
        assert "Mark as seen" in alert
    (email,) = (await emails_to(ADMIN_EMAIL))[admin_emails:]
    assert "$7.00" in email["subject"] and invoice["number"] in email["text_body"]
    page = (await admin.get("/office/settings")).text
    alert_id = re.search(r'action="/office/alerts/(\d+)/seen"', page).group(1)
    seen = await post_form(
        admin, f"/office/alerts/{alert_id}/seen", {}, csrf_page="/office/settings"
    )
    assert seen.status_code == 303
    assert invoice["number"] not in alerts_on((await office.get("/office/settings")).text)
    # A replay of the same callback changes nothing more.
    assert await sandbox.deliver_callback(app, app.state.settings, ref_of(started)) is True
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    assert len(await trail_of(invoice["id"])) == 1


async def test_a_late_success_for_an_invoice_paid_meanwhile_is_refunded_and_alerted(
    jane, admin, demo
):
    invoice = await new_invoice(demo, total=5000)
    first = await submit_pay(jane, [invoice["id"]])
    (payment,) = await payments_of(demo, invoice["id"])
    await mark_failed_while_open(payment["id"])
    # Told it failed, the customer paid again: the invoice is paid.
    assert "Payment received" in shown(await pay(jane, [invoice["id"]]))
    # Then the first card page, still open, is paid too.
    done = await enter_card(jane, path_of(first.headers["location"]))
    assert done.status_code == 303
    assert (await checkout_row(ref_of(first)))["status"] == "refunded"
    assert await charged_for(invoice) == 5000  # charged once, the other given back
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    late, paid = await payments_of(demo, invoice["id"])
    assert (late["status"], paid["status"]) == ("failed", "succeeded")
    back = await jane.get(path_of(done.headers["location"]))
    message = shown(await jane.get(back.headers["location"]))
    assert "refunded in full" in message and "Nothing was charged" not in message
    trail = await trail_of(invoice["id"])
    assert [e["action"] for e in trail] == ["payment", "refund"]
    assert trail[1]["amount_cents"] == 5000 and trail[1]["reference"] == ref_of(first)
    alert = alerts_on((await admin.get("/office/settings")).text)
    assert "refunded" in alert and "$50.00" in alert and invoice["number"] in alert


async def test_a_form_sent_again_after_a_relink_opens_no_card_page_on_the_old_account(
    jane, admin, demo
):
    """A payment and a card update recorded on the old account by a request that died
    before it reached the gateway (just as the office relinked): the same form sent again
    never opens a card page on the unlinked account."""
    from portal.db import card_updates
    from portal.db import payments as payments_db

    old = await linked_account()
    await relink(admin)
    invoice = await new_invoice(demo, total=4200)
    customer = await customer_id()
    key = "resent-after-relink-0001"
    await payments_db.start_payment(
        tenant_id=demo,
        customer_id=customer,
        account_email=JANE_EMAIL,
        key=key,
        kind="full",
        gateway="sandbox",
        payment_account_id=old,
        allocations={invoice["id"]: 4200},
        balances_seen={invoice["id"]: 4200},
        numbers={invoice["id"]: invoice["number"]},
    )
    again = await submit_pay(jane, [invoice["id"]], key=key)
    assert again.status_code == 303
    (payment,) = await payments_of(demo, invoice["id"])
    assert again.headers["location"] == f"/payments/{payment['id']}"
    assert payment["status"] == "failed"
    message = shown(await jane.get((await jane.get(again.headers["location"])).headers["location"]))
    assert "changed its payment account" in message
    open_on_old = (
        await SandboxCheckout.count()
        .where((SandboxCheckout.account_id == old) & (SandboxCheckout.status == "open"))
        .run()
    )
    assert open_on_old == 0

    mid = await membership("M-JANE-GOLD")
    card_key = "resent-card-after-relink-1"
    await card_updates.begin(demo, customer, mid, JANE_EMAIL, card_key, old)
    page = (await jane.get(f"/memberships/{mid}")).text
    resent = await jane.post(
        f"/memberships/{mid}/card",
        data={"_csrf_token": CSRF_FIELD.search(page).group(1), "key": card_key},
    )
    assert resent.status_code == 422
    assert "The business changed its payment account meanwhile." in shown(resent)
    assert (
        await SandboxCheckout.count()
        .where((SandboxCheckout.account_id == old) & (SandboxCheckout.status == "open"))
        .run()
    ) == 0

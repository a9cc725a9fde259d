"""The Stripe test double, driven through the official `stripe` SDK as the gateway will
drive it: checkout on its hosted page, signed webhooks received by a real HTTP server and
verified with `stripe.Webhook.construct_event`, bank debits, setup mode, refunds,
idempotency, keys, parameter errors and the delivery controls tests rely on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import stripe

from portal.testing import CHROMIUM_ARGS, chromium_path, engine_kind
from tests.support.stripe_double import (
    API_VERSION,
    Account,
    StripeDouble,
    stripe_double_fixture,
)

stripe_double = stripe_double_fixture()


class Receiver:
    """A small real HTTP server standing where the portal will: it takes webhooks (POST,
    answered with `status`) and serves the pages the hosted page sends people back to."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[tuple[str, bytes]] = []  # (Stripe-Signature, raw body)
        self.hosts: list[str] = []  # the Host header of each webhook
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.received.append((self.headers["Stripe-Signature"], body))
                    receiver.hosts.append(self.headers["Host"])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                page = (
                    b"<!doctype html><title>Back at XYZ Plumbing</title><h1>Payment finished</h1>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def events(self, secret: str) -> list[stripe.Event]:
        """Every webhook received, verified by the SDK's own function (raises if forged)."""
        with self._lock:
            received = list(self.received)
        return [stripe.Webhook.construct_event(body, sig, secret) for sig, body in received]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def account(stripe_double: StripeDouble, receiver: Receiver) -> Account:
    return stripe_double.create_account(webhook_url=f"{receiver.url}/stripe/webhook")


@pytest.fixture
def client(stripe_double: StripeDouble, account: Account) -> stripe.StripeClient:
    return stripe_double.client(account)


def two_invoices(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    """Parameters for a Checkout Session paying two invoices in full ($120.00 + $80.50)."""
    return {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": amount,
                    "product_data": {"name": f"Invoice {number}"},
                },
                "quantity": 1,
            }
            for number, amount in (("1001", 12000), ("1002", 8050))
        ],
        "success_url": f"{receiver.url}/payments/41?session={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{receiver.url}/invoices",
        "client_reference_id": "pay_41",
        "customer_email": "jane@example.com",
        "metadata": {"payment": "pay_41", "allocations": "1001:12000,1002:8050"},
        "payment_intent_data": {"metadata": {"payment": "pay_41"}},
        **extra,
    }


def pay_by_card(url: str, number: str, **fields: str) -> httpx.Response:
    """Submit the hosted page's card form as a browser without JavaScript would."""
    form = {
        "method": "card",
        "email": "jane@example.com",
        "card_number": number,
        "card_expiry": "12 / 34",
        "card_cvc": "123",
        "card_name": "Jane Homeowner",
        **fields,
    }
    return httpx.post(url, data=form)


def pay_by_bank(url: str, account_number: str) -> httpx.Response:
    form = {
        "method": "us_bank_account",
        "email": "jane@example.com",
        "account_holder": "Jane Homeowner",
        "routing_number": "110000000",
        "account_number": account_number,
        "account_number_confirm": account_number,
    }
    return httpx.post(url, data=form)


def paid_intent(client: stripe.StripeClient, receiver: Receiver) -> stripe.PaymentIntent:
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert pay_by_card(session.url, "4242424242424242").status_code == 303
    return client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent"]})[
        "payment_intent"
    ]


def test_the_double_speaks_the_api_version_the_sdk_pins() -> None:
    # Upgrading `stripe` changes this: then re-check the double's shapes against the new version.
    assert stripe.api_version == API_VERSION


def test_paying_on_the_hosted_page_completes_the_session_and_sends_signed_webhooks(
    stripe_double: StripeDouble, account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert session.id.startswith("cs_test_")
    assert (session.status, session.payment_status, session.amount_total) == (
        "open",
        "unpaid",
        20050,
    )
    assert session.payment_intent is None  # created when the customer pays, as at Stripe
    assert session.url.startswith(f"{stripe_double.url}/c/pay/")

    page = httpx.get(session.url)
    assert page.status_code == 200
    assert "Test mode" in page.text and "$200.50" in page.text and "Invoice 1002" in page.text
    assert f'<a href="{receiver.url}/invoices">Back to XYZ Plumbing</a>' in page.text

    answer = pay_by_card(session.url, "4242 4242 4242 4242")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{receiver.url}/payments/41?session={session.id}"

    account.webhooks.wait_idle()
    events = receiver.events(account.webhook_secret)
    assert [e.type for e in events] == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    completed = events[-1].data.object
    assert completed.id == session.id and completed.payment_status == "paid"
    assert completed.metadata["allocations"] == "1001:12000,1002:8050"
    assert completed.client_reference_id == "pay_41"
    # The signature is Stripe's: another secret, or a changed body, does not verify.
    signature, body = receiver.received[-1]
    assert signature.startswith("t=") and ",v1=" in signature
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, signature, "whsec_someone_else")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            body.replace(b"pay_41", b"pay_99"), signature, account.webhook_secret
        )

    paid = client.v1.checkout.sessions.retrieve(
        session.id, {"expand": ["payment_intent.latest_charge"]}
    )
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    intent = paid.payment_intent
    assert (intent.status, intent.amount_received, intent.metadata["payment"]) == (
        "succeeded",
        20050,
        "pay_41",
    )
    card = intent.latest_charge.payment_method_details.card
    assert (card.brand, card.last4) == ("visa", "4242")
    assert [s.id for s in client.v1.checkout.sessions.list({"payment_intent": intent.id}).data] == [
        session.id
    ]
    lines = client.v1.checkout.sessions.line_items.list(session.id)
    assert [(li.description, li.amount_total) for li in lines.data] == [
        ("Invoice 1001", 12000),
        ("Invoice 1002", 8050),
    ]
    # A completed page cannot be paid twice.
    assert pay_by_card(session.url, "4242424242424242").status_code == 409


def test_declined_cards_leave_the_session_open_and_a_good_card_then_pays(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = client.v1.checkout.sessions.create(two_invoices(receiver))

    typo = pay_by_card(session.url, "4242 4242 4242 4241")
    assert typo.status_code == 400 and "Your card number is invalid." in typo.text
    assert client.v1.checkout.sessions.retrieve(session.id).payment_intent is None  # nothing tried

    declined = pay_by_card(session.url, "4000000000000002")
    assert declined.status_code == 402 and "Your card was declined." in declined.text
    short = pay_by_card(session.url, "4000000000009995")
    assert short.status_code == 402 and "Your card has insufficient funds." in short.text
    real = pay_by_card(session.url, "4111111111111111")  # not a Stripe test card
    assert real.status_code == 402 and "non test (live) card" in real.text

    open_session = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent"]})
    assert (open_session.status, open_session.payment_status) == ("open", "unpaid")
    intent = open_session.payment_intent
    assert intent.status == "requires_payment_method"
    error = intent.last_payment_error
    assert (error.type, error.code, error.decline_code) == (
        "card_error",
        "card_declined",
        "test_mode_live_card",
    )

    assert pay_by_card(session.url, "5555555555554444").status_code == 303
    retried = client.v1.payment_intents.retrieve(intent.id, {"expand": ["latest_charge"]})
    assert (
        retried.status == "succeeded"
        and retried.latest_charge.payment_method_details.card.last4 == "4444"
    )
    failures = account.webhooks.wait_for("payment_intent.payment_failed", count=3)
    assert len(failures) == 3
    assert len(account.webhooks.wait_for("checkout.session.completed")) == 1


@pytest.mark.parametrize(
    ("account_number", "outcome", "failure"),
    [
        ("000123456789", "auto", None),
        ("000222222227", "auto", "insufficient_funds"),
        ("000123456789", "account_closed", "account_closed"),
    ],
)
def test_a_bank_debit_processes_then_settles_or_fails_days_later(
    account: Account,
    client: stripe.StripeClient,
    receiver: Receiver,
    account_number: str,
    outcome: str,
    failure: str | None,
) -> None:
    session = client.v1.checkout.sessions.create(
        two_invoices(receiver, payment_method_types=["card", "us_bank_account"])
    )
    page = httpx.get(session.url, params={"method": "us_bank_account"})
    assert "Routing number" in page.text and "Card number" not in page.text

    assert pay_by_bank(session.url, account_number).status_code == 303
    submitted = client.v1.checkout.sessions.retrieve(
        session.id, {"expand": ["payment_intent.latest_charge"]}
    )
    assert (submitted.status, submitted.payment_status) == ("complete", "unpaid")
    intent = submitted.payment_intent
    assert intent.status == "processing"
    assert intent.latest_charge.id.startswith("py_")
    assert intent.latest_charge.payment_method_details.us_bank_account.last4 == account_number[-4:]
    account.webhooks.wait_for("payment_intent.processing")

    account.finish_bank_debit(intent.id, outcome)

    later = client.v1.payment_intents.retrieve(intent.id)
    if failure is None:
        assert later.status == "succeeded" and later.amount_received == 20050
        assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
        (delivery,) = account.webhooks.wait_for("checkout.session.async_payment_succeeded")
    else:
        assert later.status == "requires_payment_method"
        assert later.last_payment_error.code == failure
        assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "unpaid"
        (delivery,) = account.webhooks.wait_for("checkout.session.async_payment_failed")
        account.webhooks.wait_for("payment_intent.payment_failed")
    event = client.v1.events.retrieve(delivery.event_id)
    assert event.data.object.id == session.id and event.data.object.metadata["payment"] == "pay_41"


def test_setup_mode_saves_a_card_as_brand_and_last_four_never_the_number(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = client.v1.checkout.sessions.create(
        {
            "mode": "setup",
            "currency": "usd",
            "success_url": f"{receiver.url}/memberships/3?session={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{receiver.url}/memberships/3",
            "metadata": {"card_update": "card_7"},
            "setup_intent_data": {"metadata": {"card_update": "card_7"}},
        }
    )
    assert (
        session.setup_intent.startswith("seti_") and session.payment_status == "no_payment_required"
    )
    assert "Save card" in httpx.get(session.url).text

    assert pay_by_card(session.url, "5555 5555 5555 4444", card_expiry="08/2031").status_code == 303

    done = client.v1.checkout.sessions.retrieve(
        session.id, {"expand": ["setup_intent.payment_method"]}
    )
    assert done.status == "complete"
    intent = done.setup_intent
    assert intent.status == "succeeded" and intent.metadata["card_update"] == "card_7"
    method = client.v1.payment_methods.retrieve(intent.payment_method.id)
    assert (method.card.brand, method.card.last4, method.card.exp_month, method.card.exp_year) == (
        "mastercard",
        "4444",
        8,
        2031,
    )
    account.webhooks.wait_for("setup_intent.succeeded")
    account.webhooks.wait_idle()
    everything = json.dumps([account.events(), done.to_dict(), method.to_dict()])
    everything += "".join(body.decode() for _, body in receiver.received)
    assert "5555555555554444" not in everything


def test_refunds_full_and_partial_are_idempotent_and_never_exceed_the_payment(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent = paid_intent(client, receiver)
    partial = {"payment_intent": intent.id, "amount": 5000, "reason": "requested_by_customer"}
    partial["metadata"] = {"refund": "refund_1"}

    first = client.v1.refunds.create(partial, {"idempotency_key": "refund-1"})
    again = client.v1.refunds.create(partial, {"idempotency_key": "refund-1"})
    assert first.id == again.id and first.id.startswith("re_")
    assert (first.status, first.amount, first.metadata["refund"]) == ("succeeded", 5000, "refund_1")
    assert account.requests[-1].replayed
    assert client.v1.refunds.retrieve(first.id).charge == intent.latest_charge
    assert [r.id for r in client.v1.refunds.list({"payment_intent": intent.id}).data] == [first.id]

    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create({**partial, "amount": 6000}, {"idempotency_key": "refund-1"})

    rest = client.v1.refunds.create(
        {"charge": intent.latest_charge}, {"idempotency_key": "refund-2"}
    )
    assert rest.amount == 15050 and rest.payment_intent == intent.id
    charge = client.v1.charges.retrieve(intent.latest_charge, {"expand": ["refunds"]})
    assert (charge.amount_refunded, charge.refunded, len(charge.refunds.data)) == (20050, True, 2)
    with pytest.raises(stripe.InvalidRequestError) as already:
        client.v1.refunds.create({"payment_intent": intent.id})
    assert already.value.code == "charge_already_refunded"

    other = paid_intent(client, receiver)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create({"payment_intent": other.id, "amount": 20051})
    assert (too_much.value.code, too_much.value.param) == ("amount_too_large", "amount")
    assert "($200.51) is greater than unrefunded amount on charge ($200.50)" in str(too_much.value)

    in_dashboard = account.refund_in_dashboard(other.id, amount=2500)
    created = account.webhooks.wait_for("refund.created", count=3)[-1]
    event = client.v1.events.retrieve(created.event_id)
    assert event.data.object.id == in_dashboard["id"]
    assert event.request.id is None  # made in the dashboard, not through the API
    refunded = account.webhooks.wait_for("charge.refunded", count=3)
    assert client.v1.events.retrieve(refunded[-1].event_id).data.object.amount_refunded == 2500


def test_a_dispute_is_announced_and_blocks_refunds(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent = paid_intent(client, receiver)
    dispute = account.dispute(intent.id)
    (delivery,) = account.webhooks.wait_for("charge.dispute.created")
    assert client.v1.events.retrieve(delivery.event_id).data.object.id == dispute["id"]
    assert client.v1.disputes.retrieve(dispute["id"]).status == "needs_response"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create({"payment_intent": intent.id})
    assert refused.value.code == "charge_disputed"


def test_keys_wrong_revoked_restricted_and_another_accounts_objects(
    stripe_double: StripeDouble, account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    assert client.v1.accounts.retrieve_current().business_profile.name == "XYZ Plumbing"
    wrong = stripe_double.client(account, api_key="sk_test_" + "x" * 40)
    with pytest.raises(stripe.AuthenticationError) as invalid:
        wrong.v1.balance.retrieve()
    assert "Invalid API Key provided: sk_test_****" in str(invalid.value)

    restricted = stripe_double.client(account, api_key=account.restricted_key)
    assert restricted.v1.balance.retrieve().object == "balance"
    account.restricted_permissions["refunds"] = "read"
    intent = paid_intent(client, receiver)
    with pytest.raises(stripe.PermissionError) as denied:
        restricted.v1.refunds.create({"payment_intent": intent.id})
    assert "rak_refund_write" in str(denied.value)
    assert restricted.v1.refunds.list().data == []

    other = stripe_double.create_account("Comfort Air")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_double.client(other).v1.payment_intents.retrieve(intent.id)
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")

    account.revoke_key(account.secret_key)
    with pytest.raises(stripe.AuthenticationError) as expired:
        client.v1.balance.retrieve()
    assert expired.value.json_body["error"]["code"] == "api_key_expired"


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"mode": None}, "mode", "parameter_missing"),
        ({"mode": "gift"}, "mode", None),
        ({"colour": "blue"}, "colour", "parameter_unknown"),
        (
            {"line_items": [{"price_data": {"currency": "usd", "unit_amont": 100}, "quantity": 1}]},
            "line_items[0][price_data][unit_amont]",
            "parameter_unknown",
        ),
        (
            {
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": "12.50",
                            "product_data": {"name": "x"},
                        },
                        "quantity": 1,
                    }
                ]
            },
            "line_items[0][price_data][unit_amount]",
            "parameter_invalid_integer",
        ),
        (
            {
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 100,
                            "product_data": {"name": "x"},
                        }
                    }
                ]
            },
            "line_items[0][quantity]",
            "parameter_missing",
        ),
        ({"metadata": {"allocations": "9" * 501}}, "metadata[allocations]", None),
        ({"success_url": "not a web address"}, "success_url", "url_invalid"),
        ({"customer_email": "jane"}, "customer_email", "email_invalid"),
        ({"payment_method_types": ["paypal"]}, "payment_method_types[0]", None),
        ({"expand": ["customer"]}, "expand", None),
        ({"setup_intent_data": {"metadata": {"a": "b"}}}, "setup_intent_data", None),
    ],
)
def test_bad_parameters_are_refused_with_the_parameter_named(
    account: Account,
    client: stripe.StripeClient,
    receiver: Receiver,
    change: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    params = {k: v for k, v in {**two_invoices(receiver), **change}.items() if v is not None}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.create(params)
    assert refused.value.http_status == 400
    assert (refused.value.param, refused.value.code) == (param, code)
    assert client.v1.checkout.sessions.list().data == []  # nothing was created


def test_webhooks_held_then_delivered_late_out_of_order_and_twice(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    account.webhooks.hold()
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert pay_by_card(session.url, "4242424242424242").status_code == 303
    account.webhooks.wait_idle()
    assert receiver.received == []
    held = [e["type"] for e in account.webhooks.held]
    assert held[-1] == "checkout.session.completed"

    account.webhooks.deliver_held(newest_first=True)
    assert [e.type for e in receiver.events(account.webhook_secret)] == list(reversed(held))
    assert account.webhooks.held == []

    completed = account.events("checkout.session.completed")[0]
    deliveries = account.webhooks.deliver(completed, times=2)
    assert [d.attempt for d in deliveries] == [2, 3] and all(d.ok for d in deliveries)
    ids = [e.id for e in receiver.events(account.webhook_secret)]
    assert ids.count(completed["id"]) == 3  # the same event id each time: receivers dedupe


def test_dropped_webhooks_never_arrive_but_the_api_still_tells_the_truth(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    account.webhooks.drop()
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert pay_by_card(session.url, "4242424242424242").status_code == 303
    account.webhooks.wait_idle()
    assert receiver.received == [] and account.webhooks.deliveries == []
    assert "checkout.session.completed" in [e["type"] for e in account.webhooks.dropped]
    # What a reconciliation pass would ask:
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    recent = client.v1.events.list({"type": "checkout.session.completed"})
    assert recent.data[0].data.object.id == session.id and recent.data[0].pending_webhooks == 1


def test_failed_deliveries_are_recorded_and_retried_when_asked(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    receiver.status = 500
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert pay_by_card(session.url, "4242424242424242").status_code == 303
    account.webhooks.wait_idle()
    assert {d.status for d in account.webhooks.deliveries} == {500}
    assert len(account.webhooks.failed) == 4

    receiver.status = 200
    retried = account.webhooks.retry_failed()
    assert [(d.attempt, d.status) for d in retried] == [(2, 200)] * 4
    assert account.webhooks.failed == []
    event = client.v1.events.retrieve(retried[-1].event_id)
    assert event.pending_webhooks == 0

    # A delivery signed long ago (a replay) fails the SDK's timestamp tolerance.
    account.webhooks.deliver(event.id, signed_at=int(time.time()) - 3600)
    signature, body = receiver.received[-1]
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(body, signature, account.webhook_secret)


def test_only_the_enabled_event_types_are_sent(
    stripe_double: StripeDouble, receiver: Receiver
) -> None:
    account = stripe_double.create_account(
        webhook_url=f"{receiver.url}/stripe/webhook", enabled_events=["checkout.session.completed"]
    )
    client = stripe_double.client(account)
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert pay_by_card(session.url, "4242424242424242").status_code == 303
    account.webhooks.wait_idle()
    assert [e.type for e in receiver.events(account.webhook_secret)] == [
        "checkout.session.completed"
    ]


def test_delayed_webhooks_arrive_after_the_delay(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    account.webhooks.delay = 0.5
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    paid_at = time.time()
    assert pay_by_card(session.url, "4242424242424242").status_code == 303
    (delivery,) = account.webhooks.wait_for("checkout.session.completed")
    assert delivery.at - paid_at >= 0.5


def test_webhooks_reach_a_portal_host_name_under_localhost(
    stripe_double: StripeDouble, receiver: Receiver
) -> None:
    # The portal's webhook address is on the business's host; Python may not resolve
    # *.localhost, so the double connects to loopback and keeps the name in Host.
    port = receiver.url.rsplit(":", 1)[1]
    account = stripe_double.create_account(
        webhook_url=f"http://xyzplumbing.localhost:{port}/payments/stripe/webhook"
    )
    client = stripe_double.client(account)
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert pay_by_card(session.url, "4242424242424242").status_code == 303
    account.webhooks.wait_for("checkout.session.completed")
    assert set(receiver.hosts) == {f"xyzplumbing.localhost:{port}"}


def test_a_live_mode_account_has_live_keys_and_refuses_test_cards(
    stripe_double: StripeDouble, receiver: Receiver
) -> None:
    account = stripe_double.create_account(live=True)
    assert account.secret_key.startswith("sk_live_") and account.restricted_key.startswith(
        "rk_live_"
    )
    client = stripe_double.client(account)
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    assert session.id.startswith("cs_live_") and session.livemode is True
    page = httpx.get(session.url)
    assert "Test mode" not in page.text
    refused = pay_by_card(session.url, "4242424242424242")
    assert refused.status_code == 402 and "live mode, but used a known test card" in refused.text


def test_a_lost_answer_or_a_server_error_is_retried_with_the_same_key(
    stripe_double: StripeDouble, account: Account, receiver: Receiver
) -> None:
    client = stripe_double.client(account, max_network_retries=2)
    account.drop_next_responses(1)
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    creates = [r for r in account.requests if r.path == "/v1/checkout/sessions"]
    assert len(creates) == 2 and creates[0].idempotency_key == creates[1].idempotency_key
    assert (creates[0].replayed, creates[1].replayed) == (False, True)
    assert [s.id for s in client.v1.checkout.sessions.list().data] == [session.id]

    account.fail_next_requests(1, status=500)
    assert client.v1.checkout.sessions.retrieve(session.id).id == session.id
    assert [r.status for r in account.requests[-2:]] == [500, 200]


def test_an_expired_session_cannot_be_paid(
    account: Account, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = client.v1.checkout.sessions.create(two_invoices(receiver))
    expired = client.v1.checkout.sessions.expire(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    page = httpx.get(session.url)
    assert "This checkout page has expired" in page.text
    assert pay_by_card(session.url, "4242424242424242").status_code == 409
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)
    assert account.webhooks.wait_for("checkout.session.expired")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.mark.skipif(engine_kind() == "postgres", reason="browser checks run once, on SQLite")
@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_the_hosted_page_in_a_browser_with_javascript_on_and_off(
    browser: Any, account: Account, client: stripe.StripeClient, receiver: Receiver, js: bool
) -> None:
    session = client.v1.checkout.sessions.create(
        two_invoices(receiver, payment_method_types=["card", "us_bank_account"])
    )
    context = browser.new_context(java_script_enabled=js)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(session.url)
        page.get_by_label("Card number").fill("4000 0000 0000 0002")
        page.get_by_label("Expiration (MM / YY)").fill("12 / 34")
        page.get_by_label("CVC").fill("123")
        page.get_by_label("Cardholder name").fill("Jane Homeowner")
        page.get_by_role("button", name="Pay $200.50").click()
        assert page.get_by_role("alert").inner_text() == "Your card was declined."

        page.get_by_role("link", name="US bank account").click()
        page.get_by_label("Account holder name").fill("Jane Homeowner")
        page.get_by_label("Routing number").fill("110000000")
        page.get_by_label("Account number", exact=True).fill("000123456789")
        page.get_by_label("Confirm account number").fill("000123456789")
        page.get_by_role("button", name="Pay $200.50").click()
        page.wait_for_url(f"{receiver.url}/payments/41?session={session.id}")
        assert page.get_by_role("heading", name="Payment finished").is_visible()
    finally:
        context.close()
    intent = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent"]})
    assert intent.payment_intent.status == "processing"

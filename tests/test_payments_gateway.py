"""The gateway interface on its own: the sandbox's "setup" mode (save a card, no charge)
with a callback over real HTTP, checkout idempotency, account scoping, and the card
checks of its hosted page."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import date
from html import unescape

import pytest

from portal.mail.links import portal_url
from portal.payments.cards import brand_of, check_card, clean_expiry, luhn_ok
from portal.payments.gateway import BadCallback, GatewayError
from portal.payments.registry import gateway_for
from portal.payments.sandbox import SIGNATURE_HEADER, SandboxGateway
from portal.testing import free_port
from tests.support.http import make_client
from tests.support.paying import enter_card, future_expiry, path_of

ACCOUNT = "sandbox_acct_xyzservices"


class Receiver:
    """A real HTTP server that records the callbacks posted to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        calls = self.calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                calls.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/card-callback"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def gateway(settings) -> SandboxGateway:
    return SandboxGateway(settings, ACCOUNT, "xyzplumbing")


async def new_setup_checkout(settings, receiver: Receiver, reference: str):
    return await gateway(settings).create_checkout(
        mode="setup",
        merchant_reference=reference,
        amount_cents=0,
        currency="USD",
        description="Card on file for Comfort Club Gold",
        return_url=portal_url(settings, "xyzplumbing", "/memberships"),
        callback_url=receiver.url,
    )


async def test_setup_mode_saves_a_card_and_reports_brand_last4_token(app, demo, settings, receiver):
    checkout = await new_setup_checkout(settings, receiver, "card_test_1")
    assert (checkout.mode, checkout.status, checkout.amount_cents) == ("setup", "open", 0)
    async with make_client(app) as browser:
        page = await browser.get(checkout.url)
        assert "Test mode" in page.text
        assert "Save a card for" in page.text and "Save card" in page.text
        assert "Card on file for Comfort Club Gold" in page.text
        done = await enter_card(browser, checkout.url, "5555 5555 5555 4444")
    assert done.status_code == 303
    assert done.headers["location"] == portal_url(settings, "xyzplumbing", "/memberships")
    # The callback went over the network, signed.
    assert len(receiver.calls) == 1
    headers, body = receiver.calls[0]
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    event = gateway(settings).verify_callback(headers, body)
    assert event.checkout.ref == checkout.ref
    assert event.checkout.merchant_reference == "card_test_1"
    assert event.checkout.status == "succeeded" and event.checkout.mode == "setup"
    card = event.checkout.card
    assert (card.brand, card.last4) == ("Mastercard", "4444")
    assert card.token.startswith("tok_sbx_") and "5555" not in card.token
    assert b"5555555555554444" not in body
    # The same state when asked directly (the customer came back first).
    fetched = await gateway(settings).get_checkout(checkout.ref)
    assert fetched.card == card and fetched.status == "succeeded"


async def test_setup_mode_declined_card_saves_nothing(app, demo, settings, receiver):
    checkout = await new_setup_checkout(settings, receiver, "card_test_2")
    async with make_client(app) as browser:
        await enter_card(browser, checkout.url, "4000 0000 0000 0002")
    event = gateway(settings).verify_callback(*receiver.calls[0])
    assert event.checkout.status == "declined"
    assert event.checkout.card is None
    assert event.checkout.failure_reason == "Your card was declined."


async def test_setup_checkout_can_be_canceled(app, demo, settings, receiver):
    checkout = await new_setup_checkout(settings, receiver, "card_test_3")
    canceled = await gateway(settings).cancel_checkout(checkout.ref)
    assert canceled.status == "canceled" and canceled.card is None
    async with make_client(app) as browser:
        page = await browser.get(checkout.url)
    assert "This payment page is closed" in page.text


async def test_same_reference_gives_the_same_checkout(demo, settings, receiver):
    first = await new_setup_checkout(settings, receiver, "card_test_4")
    again = await new_setup_checkout(settings, receiver, "card_test_4")
    assert first.ref == again.ref and first.url == again.url


async def test_checkouts_belong_to_their_account(demo, settings, receiver):
    checkout = await new_setup_checkout(settings, receiver, "card_test_5")
    other = SandboxGateway(settings, "sandbox_acct_someone_else")
    assert await other.get_checkout(checkout.ref) is None
    assert (await other.cancel_checkout(checkout.ref)) is None
    assert (await gateway(settings).get_checkout(checkout.ref)).status == "open"


async def test_bad_requests_to_the_gateway_are_refused(demo, settings):
    g = gateway(settings)
    common = {
        "merchant_reference": "x1",
        "currency": "USD",
        "description": "",
        "return_url": "http://xyzplumbing.localhost/",
        "callback_url": "http://xyzplumbing.localhost/payments/callback",
    }
    with pytest.raises(GatewayError):
        await g.create_checkout(mode="subscribe", amount_cents=100, **common)
    with pytest.raises(GatewayError):
        await g.create_checkout(mode="payment", amount_cents=0, **common)
    with pytest.raises(GatewayError):
        await g.create_checkout(mode="payment", amount_cents=100, **{**common, "return_url": "/x"})


def test_verify_callback_refuses_missing_or_wrong_signatures(settings):
    g = gateway(settings)
    with pytest.raises(BadCallback):
        g.verify_callback({}, b"{}")
    with pytest.raises(BadCallback):
        g.verify_callback({SIGNATURE_HEADER: "sha256=00"}, b"{}")


def test_gateway_for_needs_a_linked_account(settings):
    from portal.payments.gateway import PaymentsUnavailable

    with pytest.raises(PaymentsUnavailable):
        gateway_for(settings, "")
    assert gateway_for(settings, ACCOUNT).name == "sandbox"


async def test_unknown_checkout_page_is_404(app, demo):
    async with make_client(app) as browser:
        assert (await browser.get("/sandbox-gateway/checkout/chk_nope")).status_code == 404
        assert (await browser.get("/sandbox-gateway/checkout/" + "x" * 100)).status_code == 404


async def test_card_page_with_htmx_swaps_the_form_and_redirects_with_a_page_load(
    app, demo, settings, receiver
):
    checkout = await new_setup_checkout(settings, receiver, "card_test_6")
    hx = {"HX-Request": "true", "HX-Request-Type": "partial"}
    async with make_client(app) as browser:
        page = await browser.get(checkout.url)
        token = page.text.split('name="_csrf_token" value="')[1].split('"')[0]
        bad = await browser.post(
            path_of(checkout.url),
            data={"number": "1234", "expiry": "1", "cvc": "1"},
            headers={**hx, "x-csrftoken": token},
        )
        assert bad.status_code == 422
        assert bad.text.lstrip().startswith("<form") and "<html" not in bad.text
        assert "That card number isn't valid." in unescape(bad.text)
        good = await browser.post(
            path_of(checkout.url),
            data={"number": "4242424242424242", "expiry": future_expiry(), "cvc": "123"},
            headers={**hx, "x-csrftoken": token},
        )
    assert good.status_code == 200
    assert good.headers["hx-redirect"] == portal_url(settings, "xyzplumbing", "/memberships")


async def test_card_page_sends_no_referrer(app, demo, settings, receiver):
    """The card page keeps its own stricter referrer policy: the checkout's address never
    leaves it, even to the portal it sends the customer back to."""
    checkout = await new_setup_checkout(settings, receiver, "card_test_7")
    async with make_client(app) as browser:
        page = await browser.get(checkout.url)
    assert page.status_code == 200
    assert page.headers.get_list("referrer-policy") == ["no-referrer"]
    assert page.headers["x-content-type-options"] == "nosniff"


# --- card checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number,ok",
    [
        ("4242424242424242", True),
        ("4000000000000002", True),
        ("378282246310005", True),
        ("4242424242424241", False),
        ("", False),
        ("42a2", False),
    ],
)
def test_luhn(number, ok):
    assert luhn_ok(number) is ok


@pytest.mark.parametrize(
    "number,brand",
    [
        ("4242424242424242", "Visa"),
        ("5555555555554444", "Mastercard"),
        ("2223003122003222", "Mastercard"),
        ("378282246310005", "American Express"),
        ("6011111111111117", "Discover"),
    ],
)
def test_brand(number, brand):
    assert brand_of(number) == brand


def test_expiry_is_good_through_the_end_of_its_month():
    today = date(2026, 5, 31)
    assert clean_expiry("05 / 26", today)[1] is None
    assert clean_expiry("5/2026", today)[1] is None
    assert clean_expiry("0526", today)[1] is None
    assert (
        clean_expiry("04 / 26", today)[1]
        == "This card has expired. Check the date or use another card."
    )
    assert clean_expiry("05 / 99", today)[1] == "Check the expiry year."


def test_test_cards_decide_the_outcome():
    today = date(2026, 1, 1)
    good = check_card("4242 4242 4242 4242", "12/30", "123", today).clean
    assert good and good.decline_reason is None and (good.brand, good.last4) == ("Visa", "4242")
    declined = check_card("4000 0000 0000 0002", "12/30", "123", today).clean
    assert declined and declined.decline_reason == "Your card was declined."
    amex = check_card("3782 822463 10005", "12/30", "1234", today).clean
    assert amex and amex.brand == "American Express"

"""The built-in sandbox gateway: a stand-in card provider for trying the portal.

It plays the provider's side honestly: its own table (`SandboxCheckout`), its own
hosted card page under `/sandbox-gateway/checkout/<id>` (marked "Test mode"), its own
card checks (Luhn, expiry, security code, test cards), and a signed callback to the
merchant's callback URL when a checkout ends.

Card numbers are checked and forgotten: only brand, last four digits and a token are
kept. Callbacks are signed with HMAC-SHA256 over the raw body, with a secret derived
from the portal's secret key and the merchant's account id.

Delivery of callbacks: the sandbox runs inside the portal, and server-side Python
cannot resolve `*.localhost` names the way browsers do, so a callback addressed to a
portal host is delivered in-process through the app's full HTTP stack (an ASGI
request with the callback URL's Host header, body and signature, exactly what the
network would carry). Any other callback URL is posted over the network.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from piccolo.custom_types import Combinable

from portal.config import Settings
from portal.db.tables import PaymentAccount, SandboxCheckout, Tenant
from portal.payments.cards import check_card
from portal.payments.gateway import (
    MODES,
    BadCallback,
    CallbackEvent,
    Card,
    Checkout,
    GatewayError,
)
from portal.tenancy import host_label
from portal.web import form_data, render, see_other

log = logging.getLogger("portal.payments.sandbox")

PAGE_PATH = "/sandbox-gateway/checkout/"
SIGNATURE_HEADER = "Sandbox-Signature"
USER_AGENT = "portal-sandbox-gateway/1"
CHECKOUT_LIFETIME = timedelta(minutes=30)
MAX_ATTEMPTS = 20
CALLBACK_TIMEOUT_SECONDS = 10.0


def now() -> datetime:
    return datetime.now(UTC)


# --- signatures --------------------------------------------------------------------------------


def callback_secret(settings: Settings, account_id: str) -> bytes:
    """The key that signs one merchant account's callbacks (derived, never stored)."""
    return hmac.new(
        settings.secret_key.encode(), b"sandbox-callback\x00" + account_id.encode(), hashlib.sha256
    ).digest()


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for a raw callback body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class _CardIn(msgspec.Struct):
    brand: str
    last4: str
    token: str = ""


class _CheckoutIn(msgspec.Struct):
    id: str
    mode: str
    status: str
    amount_cents: int
    currency: str
    merchant_reference: str
    url: str = ""
    card: _CardIn | None = None
    failure_reason: str = ""


class _EventIn(msgspec.Struct):
    id: str
    type: str
    account_id: str
    checkout: _CheckoutIn


# --- the provider's records ----------------------------------------------------------------------


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_url(row: dict[str, Any]) -> str:
    """The hosted card page of a checkout, on the site the customer comes from."""
    return _origin(row["return_url"]) + PAGE_PATH + str(row["public_id"])


def status_of(row: dict[str, Any], moment: datetime | None = None) -> str:
    """The checkout's status; an open checkout past its lifetime has expired."""
    if row["status"] == "open" and row["expires_at"] <= (moment or now()):
        return "expired"
    return str(row["status"])


def to_checkout(row: dict[str, Any]) -> Checkout:
    status = status_of(row)
    card = (
        Card(row["card_brand"], row["card_last4"], row["card_token"])
        if row["card_last4"] and status in ("succeeded", "refunded")
        else None
    )
    reasons = {
        "expired": "The payment page expired before a card was entered.",
        "canceled": "The payment was canceled on the payment page.",
    }
    return Checkout(
        ref=row["public_id"],
        url=page_url(row),
        mode=row["mode"],
        status=status,
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        merchant_reference=row["merchant_reference"],
        card=card,
        failure_reason=row["decline_reason"] or reasons.get(status, ""),
    )


async def _row(public_id: str, account_id: str | None = None) -> dict[str, Any] | None:
    where: Combinable = SandboxCheckout.public_id == public_id
    if account_id is not None:
        where &= SandboxCheckout.account_id == account_id
    return await SandboxCheckout.select().where(where).first().run()


class SandboxGateway:
    """The sandbox provider, as seen by one merchant account."""

    name = "sandbox"

    def __init__(self, settings: Settings, account_id: str, host: str = "") -> None:
        self.settings = settings
        self.account_id = account_id
        self.host = host

    async def create_checkout(
        self,
        *,
        mode: str,
        merchant_reference: str,
        amount_cents: int,
        currency: str,
        description: str,
        return_url: str,
        callback_url: str,
        metadata: Mapping[str, str] | None = None,
        customer_email: str = "",
    ) -> Checkout:
        """A hosted card page; the same merchant reference gives the same checkout
        (`metadata` is not kept: the portal's own rows hold the allocations; the
        sandbox's page asks for no email, so `customer_email` is unused)."""
        if mode not in MODES:
            raise GatewayError(f"unknown checkout mode {mode!r}")
        if mode == "payment" and amount_cents <= 0:
            raise GatewayError("a payment needs a positive amount")
        for url in (return_url, callback_url):
            if not url.startswith(("http://", "https://")):
                raise GatewayError("return and callback URLs must be absolute")
        if not merchant_reference or len(merchant_reference) > 80:
            raise GatewayError("a merchant reference of 1 to 80 characters is required")
        found = await self._by_reference(merchant_reference)
        if found is None:
            try:
                await SandboxCheckout.insert(
                    SandboxCheckout(
                        public_id="chk_" + secrets.token_urlsafe(18),
                        account_id=self.account_id,
                        mode=mode,
                        amount_cents=amount_cents if mode == "payment" else 0,
                        currency=currency,
                        description=description[:300],
                        merchant_reference=merchant_reference,
                        return_url=return_url,
                        callback_url=callback_url,
                        expires_at=now() + CHECKOUT_LIFETIME,
                    )
                ).run()
            except Exception as exc:  # a racing request with the same reference won
                found = await self._by_reference(merchant_reference)
                if found is None:
                    raise GatewayError("could not create the checkout") from exc
            else:
                found = await self._by_reference(merchant_reference)
        assert found is not None
        return to_checkout(found)

    async def _by_reference(self, merchant_reference: str) -> dict[str, Any] | None:
        return (
            await SandboxCheckout.select()
            .where(
                (SandboxCheckout.account_id == self.account_id)
                & (SandboxCheckout.merchant_reference == merchant_reference)
            )
            .first()
            .run()
        )

    async def get_checkout(self, ref: str) -> Checkout | None:
        row = await _row(ref, self.account_id)
        return to_checkout(row) if row else None

    async def cancel_checkout(self, ref: str) -> Checkout | None:
        moment = now()
        await (
            SandboxCheckout.update(
                {SandboxCheckout.status: "canceled", SandboxCheckout.completed_at: moment}
            )
            .where(
                (SandboxCheckout.public_id == ref)
                & (SandboxCheckout.account_id == self.account_id)
                & (SandboxCheckout.status == "open")
                & (SandboxCheckout.expires_at > moment)  # an expired page is closed already
            )
            .run()
        )
        return await self.get_checkout(ref)

    async def refund(self, ref: str) -> Checkout | None:
        await (
            SandboxCheckout.update({SandboxCheckout.status: "refunded"})
            .where(
                (SandboxCheckout.public_id == ref)
                & (SandboxCheckout.account_id == self.account_id)
                & (SandboxCheckout.status == "succeeded")
                & (SandboxCheckout.mode == "payment")
            )
            .run()
        )
        return await self.get_checkout(ref)

    async def refund_amount(self, ref: str, amount_cents: int, *, key: str, reason: str) -> str:
        """A refund of a succeeded payment: in full, the checkout becomes "refunded"; in
        part, nothing changes here (the sandbox keeps no balances: the portal's refund
        row is the record)."""
        found = await self.get_checkout(ref)
        if found is None or found.mode != "payment" or found.status not in ("succeeded",):
            raise GatewayError("only a payment that went through can be refunded")
        if not 0 < amount_cents <= found.amount_cents:
            raise GatewayError("a refund is more than the payment")
        if amount_cents == found.amount_cents:
            await self.refund(ref)
        return f"sbr_{hashlib.sha256(f'{self.account_id}:{key}'.encode()).hexdigest()[:24]}"

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackEvent:
        """Check the signature over the raw body, then parse it (raises BadCallback)."""
        given = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower()) or ""
        expected = sign(callback_secret(self.settings, self.account_id), body)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise BadCallback("missing or wrong signature")
        try:
            event = msgspec.json.decode(body, type=_EventIn)
        except msgspec.DecodeError as exc:
            raise BadCallback("malformed body") from exc
        if event.account_id != self.account_id:
            raise BadCallback("callback for another account")
        c = event.checkout
        card = Card(c.card.brand, c.card.last4, c.card.token) if c.card else None
        return CallbackEvent(
            id=event.id,
            account_id=event.account_id,
            checkout=Checkout(
                ref=c.id,
                url=c.url,
                mode=c.mode,
                status=c.status,
                amount_cents=c.amount_cents,
                currency=c.currency,
                merchant_reference=c.merchant_reference,
                card=card,
                failure_reason=c.failure_reason,
            ),
        )


# --- callbacks -----------------------------------------------------------------------------------


def callback_body(row: dict[str, Any]) -> bytes:
    """The callback of a finished checkout; a redelivery carries the same event id."""
    checkout = to_checkout(row)
    event = {
        "id": f"evt_{row['public_id']}_{checkout.status}",
        "type": "checkout.completed",
        "account_id": row["account_id"],
        "checkout": checkout.to_json(),
    }
    return json.dumps(event, separators=(",", ":")).encode()


async def deliver_callback(app: Litestar, settings: Settings, public_id: str) -> bool:
    """Send a finished checkout's signed callback to the merchant; True if it was accepted.

    Safe to call again (a retry): the merchant must treat a repeated event as one.
    """
    row = await _row(public_id)
    if row is None or status_of(row) == "open":
        return False
    body = callback_body(row)
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(callback_secret(settings, row["account_id"]), body),
        "user-agent": USER_AGENT,
    }
    url = row["callback_url"]
    portal_host = host_label(urlsplit(url).netloc, settings.base_domain)
    # Litestar declares a narrower ASGI signature than httpx asks for; it is one all the same.
    transport = httpx.ASGITransport(app=cast(Any, app)) if portal_host else None
    try:
        async with httpx.AsyncClient(
            transport=transport, timeout=CALLBACK_TIMEOUT_SECONDS, follow_redirects=False
        ) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        log.warning("callback for checkout %s not delivered: %s", public_id, exc)
        return False
    if not 200 <= response.status_code < 300:
        log.warning("callback for checkout %s refused with %s", public_id, response.status_code)
        return False
    await (
        SandboxCheckout.update({SandboxCheckout.callback_delivered_at: now()})
        .where(SandboxCheckout.public_id == public_id)
        .run()
    )
    return True


# --- the hosted card page ------------------------------------------------------------------------


async def _merchant(account_id: str) -> dict[str, Any]:
    """The merchant's display name and contact, as the provider knows its accounts
    (also an account the merchant has unlinked since: its open pages still say whose)."""
    row = (
        await Tenant.select(Tenant.name, Tenant.phone, Tenant.time_zone, Tenant.currency)
        .where(Tenant.payment_account_id == account_id)
        .order_by(Tenant.id)
        .first()
        .run()
    )
    if row is None:
        merchant = PaymentAccount.tenant
        row = (
            await PaymentAccount.select(
                merchant.name.as_alias("name"),
                merchant.phone.as_alias("phone"),
                merchant.time_zone.as_alias("time_zone"),
                merchant.currency.as_alias("currency"),
            )
            .where(PaymentAccount.account_id == account_id)
            .order_by(PaymentAccount.id)
            .first()
            .run()
        )
    return row or {"name": "the merchant", "phone": "", "time_zone": "UTC", "currency": "USD"}


def _today(merchant: dict[str, Any]) -> date:
    return now().astimezone(ZoneInfo(merchant["time_zone"] or "UTC")).date()


async def _page(
    request: Request[Any, Any, Any],
    row: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response[Any]:
    merchant = await _merchant(row["account_id"])
    return render(
        request,
        "payments/checkout.html",
        {
            "checkout": to_checkout(row),
            "row": row,
            "merchant": merchant,
            "errors": errors or {},
            "values": values or {},
        },
        block="form",
        status_code=status_code,
        headers={"Referrer-Policy": "no-referrer"},
    )


async def _load(checkout_id: str) -> dict[str, Any]:
    row = await _row(checkout_id) if len(checkout_id) <= 64 else None
    if row is None:
        raise NotFoundException()
    return row


@get(PAGE_PATH + "{checkout_id:str}", include_in_schema=False)
async def checkout_page(
    request: Request[Any, Any, Any], checkout_id: FromPath[str]
) -> Response[Any]:
    """The hosted card page (or why it is closed)."""
    return await _page(request, await _load(checkout_id))


@post(PAGE_PATH + "{checkout_id:str}", include_in_schema=False)
async def submit_card(request: Request[Any, Any, Any], checkout_id: FromPath[str]) -> Response[Any]:
    """Check the card; a good card pays (or is saved), a declined one ends the checkout.
    Either way the merchant gets a signed callback and the customer goes back."""
    row = await _load(checkout_id)
    if status_of(row) != "open":
        return await _page(request, row, status_code=409)
    form = await form_data(request)
    values = {"expiry": form.get("expiry", "")[:10], "name": form.get("name", "")[:100]}
    merchant = await _merchant(row["account_id"])
    check = check_card(
        form.get("number", "")[:40], values["expiry"], form.get("cvc", "")[:8], _today(merchant)
    )
    moment = now()
    still_open = (SandboxCheckout.public_id == row["public_id"]) & (
        SandboxCheckout.status == "open"
    )
    if not check.ok:
        counted = (
            await SandboxCheckout.update({SandboxCheckout.attempts: SandboxCheckout.attempts + 1})
            .where(still_open)
            .returning(SandboxCheckout.attempts)
            .run()
        )
        if counted and counted[0]["attempts"] >= MAX_ATTEMPTS:
            changes = {
                "status": "canceled",
                "decline_reason": "Too many attempts on the card page.",
            }
            return await _finish(request, row, changes, moment)
        return await _page(request, row, errors=check.problems, values=values, status_code=422)
    card = check.clean
    assert card is not None
    if card.decline_reason:
        changes = {"status": "declined", "decline_reason": card.decline_reason}
    else:
        changes = {
            "status": "succeeded",
            "card_brand": card.brand,
            "card_last4": card.last4,
            "card_token": "tok_sbx_" + secrets.token_urlsafe(18) if row["mode"] == "setup" else "",
        }
    return await _finish(request, row, changes, moment)


async def _finish(
    request: Request[Any, Any, Any], row: dict[str, Any], changes: dict[str, Any], moment: datetime
) -> Response[Any]:
    """End an open checkout (once), tell the merchant, send the customer back."""
    done = (
        await SandboxCheckout.update(
            {
                **{getattr(SandboxCheckout, k): v for k, v in changes.items()},
                SandboxCheckout.completed_at: moment,
                SandboxCheckout.attempts: SandboxCheckout.attempts + 1,
            }
        )
        .where(
            (SandboxCheckout.public_id == row["public_id"])
            & (SandboxCheckout.status == "open")
            & (SandboxCheckout.expires_at > moment)
        )
        .returning(SandboxCheckout.id)
        .run()
    )
    fresh = await _row(row["public_id"])
    assert fresh is not None
    if not done:  # a racing submission or the clock ended it first
        return await _page(request, fresh, status_code=409)
    await deliver_callback(request.app, request.app.state.settings, row["public_id"])
    return see_other(request, fresh["return_url"])


@post(PAGE_PATH + "{checkout_id:str}/cancel", include_in_schema=False)
async def cancel_checkout(
    request: Request[Any, Any, Any], checkout_id: FromPath[str]
) -> Response[Any]:
    """The customer gave up: close the checkout, tell the merchant, go back."""
    row = await _load(checkout_id)
    if status_of(row) != "open":
        return see_other(request, row["return_url"])
    return await _finish(request, row, {"status": "canceled"}, now())


ROUTES = [checkout_page, submit_card, cancel_checkout]


def new_account_id() -> str:
    """A new account at the sandbox gateway (stands in for signing up with a provider)."""
    return f"sandbox_acct_{secrets.token_hex(8)}"

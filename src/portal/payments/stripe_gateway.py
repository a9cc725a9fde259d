"""The Stripe gateway: invoice payments and card-on-file updates through Stripe Checkout,
Stripe's hosted page (no card or bank number ever reaches the portal: PCI SAQ A).

One `StripeGateway` acts for one linked Stripe account (`stripe_acct_...`), whose keys are
read from the database and opened with PORTAL_ENCRYPTION_KEY on first use.

- A checkout is a Checkout Session; `Checkout.ref` is its id (`cs_...`), and the
  merchant reference ("pay_12", "card_3") is its `client_reference_id` and metadata, as
  are the allocations to invoices (`metadata["allocations"]`, "invoice id:cents,...").
- Every create call carries an Idempotency-Key derived from the account and the merchant
  reference, so a retry (the SDK's own, or the portal asking again for the same payment)
  gets the same session and never a second charge.
- Stripe is always asked for the current state (`get_checkout`): a webhook only says
  that something changed.
- A session completed with a bank debit (ACH) is *processing* until the debit settles
  or fails, days later: `Checkout.status` stays "open" with `processing` set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import stripe

from portal.config import Settings
from portal.db import stripe_accounts
from portal.payments.gateway import (
    MODES,
    BadCallback,
    CallbackEvent,
    Card,
    Checkout,
    GatewayError,
)
from portal.vault import VaultUnavailable

log = logging.getLogger("portal.payments.stripe")

BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
}
BANK = "Bank account"
EXPAND = ["payment_intent.payment_method", "setup_intent.payment_method"]
NETWORK_RETRIES = 2


class KeyRefused(GatewayError):
    """Stripe refused the key (wrong, revoked, or a restricted key without a permission)."""


@dataclass(frozen=True)
class AccountCheck:
    """What a live call with a key found out."""

    stripe_account_id: str
    livemode: bool
    name: str


def client_for(settings: Settings, secret_key: str) -> stripe.StripeClient:
    """An SDK client for one key (async calls over httpx; the API base is Stripe's unless
    the settings point it at the test double)."""
    return stripe.StripeClient(
        secret_key,
        base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else None,
        http_client=stripe.HTTPXClient(),
        max_network_retries=NETWORK_RETRIES,
    )


def _refusal(exc: stripe.StripeError) -> GatewayError:
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return KeyRefused(exc.user_message or str(exc))
    return GatewayError(exc.user_message or str(exc))


async def check_key(settings: Settings, secret_key: str) -> AccountCheck:
    """A live call with the key (`GET /v1/account`): which account it opens and whether
    it is a test key. Raises KeyRefused or GatewayError."""
    try:
        account = await client_for(settings, secret_key).v1.accounts.retrieve_current_async()
    except stripe.StripeError as exc:
        raise _refusal(exc) from exc
    data = account.to_dict()
    profile = data.get("business_profile") or {}
    settings_ = (data.get("settings") or {}).get("dashboard") or {}
    return AccountCheck(
        stripe_account_id=data["id"],
        livemode=not secret_key.startswith(("sk_test_", "rk_test_")),
        name=profile.get("name") or settings_.get("display_name") or data["id"],
    )


def is_test_key(secret_key: str) -> bool:
    return secret_key.startswith(("sk_test_", "rk_test_"))


def _card_of(method: Any) -> Card | None:
    if not isinstance(method, dict):
        return None
    if method.get("type") == "card" and method.get("card"):
        card = method["card"]
        brand = BRANDS.get(card.get("brand", ""), (card.get("brand") or "Card").title())
        return Card(brand=brand[:20], last4=card.get("last4", "")[:4], token=method["id"])
    if method.get("type") == "us_bank_account" and method.get("us_bank_account"):
        bank = method["us_bank_account"]
        return Card(brand=BANK, last4=bank.get("last4", "")[:4], token=method["id"])
    return None


def to_checkout(session: dict[str, Any]) -> Checkout:
    """A Checkout Session (with its intent expanded) as the portal's Checkout."""
    mode = session["mode"]
    intent = session.get("payment_intent" if mode == "payment" else "setup_intent")
    intent = intent if isinstance(intent, dict) else {}
    card = _card_of(intent.get("payment_method"))
    status, reason, processing = "open", "", False
    if session["status"] == "expired":
        status = "expired"
        reason = "The payment page expired before the payment was made."
    elif session["status"] == "complete":
        if mode == "setup" or session.get("payment_status") == "paid":
            status = "succeeded"
        elif intent.get("status") == "processing":
            processing = True
        elif intent.get("status") == "succeeded":
            status = "succeeded"
        elif intent.get("status") == "canceled":
            status = "canceled"
        else:  # requires_payment_method: the bank debit failed
            status = "declined"
            error = intent.get("last_payment_error") or {}
            reason = error.get("message") or "The bank debit did not go through."
    metadata = session.get("metadata") or {}
    return Checkout(
        ref=session["id"],
        url=session.get("url") or "",
        mode=mode,
        status=status,
        amount_cents=session.get("amount_total") or 0,
        currency=(session.get("currency") or "").upper(),
        merchant_reference=session.get("client_reference_id")
        or metadata.get("merchant_reference", ""),
        card=card,
        failure_reason=reason,
        processing=processing,
        payment_intent=intent.get("id", "") if mode == "payment" else "",
    )


class StripeGateway:
    """The PaymentGateway of one linked Stripe account."""

    name = "stripe"

    def __init__(self, settings: Settings, account_id: str) -> None:
        self.settings = settings
        self.account_id = account_id
        self._client: stripe.StripeClient | None = None
        self.bank_debits = False
        self.livemode = False

    async def client(self) -> stripe.StripeClient:
        """The SDK client with the account's key (opened once per gateway object)."""
        if self._client is None:
            try:
                found = await stripe_accounts.credentials(self.settings, self.account_id)
            except VaultUnavailable as exc:
                raise GatewayError(str(exc)) from exc
            if found is None:
                raise GatewayError(f"no Stripe account {self.account_id}")
            self.bank_debits = found["bank_debits"]
            self.livemode = found["livemode"]
            self._client = client_for(self.settings, found["secret_key"])
        return self._client

    def _key(self, merchant_reference: str, what: str) -> str:
        return f"portal-{self.account_id}-{merchant_reference}-{what}"

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
        """A Checkout Session; the same merchant reference gives the same session (the
        idempotency key is derived from it, so a second call must send the same
        arguments). `callback_url` is unused: Stripe reports by webhook to the business's
        endpoint. `customer_email` pre-fills the payment page's email (and receipt)."""
        if mode not in MODES:
            raise GatewayError(f"unknown checkout mode {mode!r}")
        client = await self.client()
        meta = {"merchant_reference": merchant_reference, **(metadata or {})}
        methods = ["card", "us_bank_account"] if self.bank_debits else ["card"]
        params: dict[str, Any] = {
            "mode": mode,
            "client_reference_id": merchant_reference,
            "metadata": meta,
            "success_url": return_url,
            "cancel_url": return_url,
            "payment_method_types": methods if mode == "payment" else ["card"],
        }
        if mode == "payment":
            params["line_items"] = [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_cents,
                        "product_data": {"name": description[:250] or "Invoice payment"},
                    },
                }
            ]
            params["payment_intent_data"] = {"metadata": meta, "description": description[:250]}
            if customer_email:
                params["customer_email"] = customer_email
        else:
            params["currency"] = currency.lower()
            params["setup_intent_data"] = {"metadata": meta, "description": description[:250]}
        try:
            session = await client.v1.checkout.sessions.create_async(
                cast(Any, params), {"idempotency_key": self._key(merchant_reference, "checkout")}
            )
        except stripe.StripeError as exc:
            raise _refusal(exc) from exc
        return to_checkout(session.to_dict())

    async def get_checkout(self, ref: str) -> Checkout | None:
        """The session's state now, with its intent and payment method."""
        client = await self.client()
        try:
            session = await client.v1.checkout.sessions.retrieve_async(ref, {"expand": EXPAND})
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise _refusal(exc) from exc
        except stripe.StripeError as exc:
            raise _refusal(exc) from exc
        return to_checkout(session.to_dict())

    async def cancel_checkout(self, ref: str) -> Checkout | None:
        """Expire an open session (one paid meanwhile stays paid: Stripe refuses)."""
        client = await self.client()
        try:
            await client.v1.checkout.sessions.expire_async(ref)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            # Not open any more (completed or expired): its state is the answer.
        except stripe.StripeError as exc:
            raise _refusal(exc) from exc
        return await self.get_checkout(ref)

    async def refund(self, ref: str) -> Checkout | None:
        """Give a session's payment back in full (once: the idempotency key is fixed)."""
        checkout = await self.get_checkout(ref)
        if checkout is None or not checkout.payment_intent:
            return checkout
        await self._refund_intent(checkout.payment_intent, None, key=f"{ref}-full")
        return checkout

    async def refund_amount(self, ref: str, amount_cents: int, *, key: str, reason: str) -> str:
        """A refund of part or all of a session's payment; the office's reason travels
        in the refund's metadata (Stripe's own `reason` is a short list)."""
        checkout = await self.get_checkout(ref)
        if checkout is None or not checkout.payment_intent or not checkout.succeeded:
            raise GatewayError("only a payment that went through can be refunded")
        refund = await self._refund_intent(
            checkout.payment_intent,
            amount_cents,
            key=key,
            metadata={"portal_refund": key, "reason": reason[:500]},
        )
        if refund.get("status") in ("failed", "canceled"):
            raise GatewayError(refund.get("failure_reason") or "Stripe could not refund it")
        return str(refund["id"])

    async def _refund_intent(
        self,
        payment_intent: str,
        amount_cents: int | None,
        *,
        key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A refund of `amount_cents` (None: all that is left) of a PaymentIntent. Raises
        GatewayError with Stripe's message when it is refused."""
        client = await self.client()
        params: dict[str, Any] = {
            "payment_intent": payment_intent,
            "reason": "requested_by_customer",
        }
        if amount_cents is not None:
            params["amount"] = amount_cents
        if metadata:
            params["metadata"] = dict(metadata)
        try:
            refund = await client.v1.refunds.create_async(
                cast(Any, params), {"idempotency_key": f"portal-{self.account_id}-refund-{key}"}
            )
        except stripe.StripeError as exc:
            raise _refusal(exc) from exc
        return refund.to_dict()

    async def refunds_of(self, payment_intent: str) -> list[dict[str, Any]]:
        """Every refund of a payment (the portal's and the dashboard's)."""
        client = await self.client()
        try:
            found = await client.v1.refunds.list_async(
                {"payment_intent": payment_intent, "limit": 100}
            )
        except stripe.StripeError as exc:
            raise _refusal(exc) from exc
        data: list[dict[str, Any]] = found.to_dict()["data"]
        return data

    async def retrieve(self, kind: str, object_id: str) -> dict[str, Any] | None:
        """An object by id: "payment_intent", "charge", "dispute" or "refund"."""
        client = await self.client()
        service: Any = {
            "payment_intent": client.v1.payment_intents,
            "charge": client.v1.charges,
            "dispute": client.v1.disputes,
            "refund": client.v1.refunds,
        }[kind]
        try:
            found: dict[str, Any] = (await service.retrieve_async(object_id)).to_dict()
            return found
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise _refusal(exc) from exc
        except stripe.StripeError as exc:
            raise _refusal(exc) from exc

    async def session_of_intent(self, payment_intent: str) -> Checkout | None:
        """The Checkout Session that made a PaymentIntent."""
        client = await self.client()
        try:
            found = await client.v1.checkout.sessions.list_async(
                {"payment_intent": payment_intent, "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _refusal(exc) from exc
        data = found.to_dict()["data"]
        return await self.get_checkout(data[0]["id"]) if data else None

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackEvent:
        """Stripe reports by webhook (portal.payments.webhooks), never by the sandbox's
        callback: nothing posted there is Stripe's."""
        raise BadCallback("Stripe does not sign sandbox callbacks")

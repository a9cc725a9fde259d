"""The payment gateway interface: what the portal asks of a card provider.

A gateway hosts the card page itself (card numbers never reach the portal): the
portal creates a *checkout*, sends the customer's browser to `Checkout.url`, and
learns the result from a signed callback (`verify_callback`) or by asking
(`get_checkout`) when the customer comes back first.

Two modes:

- ``"payment"``: charge `amount_cents` once.
- ``"setup"``: charge nothing; save a card and return its brand, last four digits
  and a reusable token (for a membership's card on file).

Every checkout carries the merchant's own `merchant_reference`. Creating a
checkout twice with the same reference returns the first one, so a retried
request never makes a second checkout.

A gateway object acts for one merchant *account*. A payment (or card update) keeps
the account it started on and is settled, closed and refunded through that account's
gateway, even after the office unlinks it: `registry.gateway_for(settings, account_id)`.

This module is the protocol only: it knows no gateway. The gateways are listed in
`registry.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from portal.config import Settings

MODES = ("payment", "setup")
# "open": waiting for the customer; the others are final.
STATUSES = ("open", "succeeded", "declined", "canceled", "expired", "refunded")


class GatewayError(Exception):
    """The gateway could not be reached or refused the request (nothing was charged)."""


class BadCallback(Exception):
    """A callback whose signature is missing or wrong, or whose body is malformed."""


class PaymentsUnavailable(Exception):
    """The business has no payment account linked and enabled."""


@dataclass(frozen=True)
class Card:
    """What the portal may know of a card: never its number."""

    brand: str
    last4: str
    token: str = ""  # reusable token (setup mode); "" for one-off payments

    @property
    def label(self) -> str:
        """ "Visa ending 4242"."""
        return f"{self.brand} ending {self.last4}"


@dataclass(frozen=True)
class Checkout:
    """A hosted card page and its outcome, as the gateway reports it."""

    ref: str  # the gateway's id of the checkout (the payment's reference)
    url: str  # where to send the customer's browser
    mode: str
    status: str  # one of STATUSES
    amount_cents: int
    currency: str
    merchant_reference: str
    card: Card | None = None
    failure_reason: str = ""
    # A bank debit (ACH) submitted and not yet settled: still "open", nothing to apply
    # yet, but the customer is done with the page (it cannot be closed any more).
    processing: bool = False
    payment_intent: str = ""  # Stripe's PaymentIntent id ("" for the sandbox)

    @property
    def is_final(self) -> bool:
        return self.status != "open"

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> dict[str, Any]:
        """The checkout as it travels in a callback body."""
        return {
            "id": self.ref,
            "url": self.url,
            "mode": self.mode,
            "status": self.status,
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "merchant_reference": self.merchant_reference,
            "card": (
                {"brand": self.card.brand, "last4": self.card.last4, "token": self.card.token}
                if self.card
                else None
            ),
            "failure_reason": self.failure_reason,
        }


@dataclass(frozen=True)
class CallbackEvent:
    """A verified callback: the checkout's final state."""

    id: str  # the same for a retried or replayed delivery
    account_id: str
    checkout: Checkout


class PaymentGateway(Protocol):
    """What a card provider adapter offers the portal."""

    name: str  # stored in Payment.gateway
    account_id: str  # the merchant account this gateway acts for

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
        """A hosted card page for `amount_cents` (mode "payment") or to save a card
        (mode "setup", amount 0). The same `merchant_reference` returns the same
        checkout (asked again, pass the same arguments). `customer_email` fills in the
        page's email field where it has one. Raises GatewayError."""
        ...

    async def get_checkout(self, ref: str) -> Checkout | None:
        """The checkout's current state (None if the gateway does not know it)."""
        ...

    async def cancel_checkout(self, ref: str) -> Checkout | None:
        """Close an open checkout so it can no longer be paid; returns its final state
        (which is "succeeded" if the customer paid first)."""
        ...

    async def refund(self, ref: str) -> Checkout | None:
        """Give back a succeeded payment in full."""
        ...

    async def refund_amount(self, ref: str, amount_cents: int, *, key: str, reason: str) -> str:
        """Give back `amount_cents` of a succeeded payment (all or part; the same `key`
        never refunds twice) with the office's `reason`; returns the gateway's id of the
        refund. Raises GatewayError with the gateway's reason when it refuses."""
        ...

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackEvent:
        """Check a callback's signature over the raw `body` and parse it.
        Raises BadCallback."""
        ...


# What the registry (`registry.py`) holds per gateway: the class, called with the
# settings and the merchant account it acts for.
GatewayFactory = Callable[[Settings, str], PaymentGateway]


def is_test_mode(account_id: str) -> bool:
    """Whether payments on this account are tests (no real money moves): the sandbox
    always, a Stripe account linked with test keys ("stripe_test_...")."""
    return bool(account_id) and not account_id.startswith("stripe_live_")


def allocation_metadata(allocations: Mapping[int, int]) -> dict[str, str]:
    """A payment's allocations to invoices as checkout metadata: "id:cents,..." in values
    of at most 500 characters."""
    parts = [f"{invoice}:{cents}" for invoice, cents in sorted(allocations.items())]
    chunks: list[str] = []
    for part in parts:
        if chunks and len(chunks[-1]) + 1 + len(part) <= 500:
            chunks[-1] += "," + part
        else:
            chunks.append(part)
    if len(chunks) == 1:
        return {"allocations": chunks[0]}
    return {f"allocations_{i + 1}": chunk for i, chunk in enumerate(chunks[:40])}

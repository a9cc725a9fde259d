"""TEST DOUBLE for Stripe: a local stand-in for Stripe's API, hosted Checkout page and webhooks.

Stripe is a service outside this machine, which cannot reach it, so the test suites talk
to this double instead. It is NOT Stripe and never moves money. It is a real HTTP server
on a free loopback port (a background thread) that the official `stripe` SDK reaches
through its API base address, and whose hosted payment page a browser (Playwright, with
JavaScript on or off) or a plain HTTP client can fill in. It delivers webhooks signed
exactly as Stripe signs them, so `stripe.Webhook.construct_event` verifies them.

Request and response shapes follow Stripe's API reference (object fields, id prefixes,
form-encoded bodies with `metadata[key]` / `line_items[0][price_data][currency]` nesting,
`expand[]`, list objects, error objects with their HTTP statuses).

What it implements
  GET  /v1/account, /v1/balance                     a live check of a key
  POST /v1/checkout/sessions                        mode payment (line_items[][price_data])
                                                    or setup; card and us_bank_account
  GET  /v1/checkout/sessions[/{id}[/line_items]]    list filters payment_intent, status
  POST /v1/checkout/sessions/{id}/expire
  GET  /v1/payment_intents[/{id}], /v1/setup_intents/{id}, /v1/payment_methods/{id},
       /v1/charges[/{id}], /v1/disputes[/{id}]
  POST /v1/refunds; GET /v1/refunds[/{id}]          full or partial, by payment_intent or charge
  GET  /v1/events[/{id}]                            every state change records an Event
  GET/POST /c/pay/{session id}                      the hosted page (plain HTML forms, no JS)
Semantics: Bearer (or Basic) secret-key auth with sk_test_/rk_test_ keys (wrong key 401,
revoked key 401 api_key_expired, restricted key without the permission 403); unknown,
missing and malformed parameters named in the error; metadata limits (50 keys, 40-char
keys, 500-char values); `Idempotency-Key` on POST (same key and parameters replay the
saved response with `Idempotent-Replayed: true`, different parameters or endpoint 400
idempotency_error; parameter-validation failures are not saved, as at Stripe).

Test cards on the hosted page: 4242424242424242 (Visa), 5555555555554444 (Mastercard),
378282246310005 (Amex) and the others in TEST_CARDS succeed; 4000000000000002 is declined
(card_declined / generic_decline), 4000000000009995 insufficient_funds, 4000000000009987
lost_card, 4000000000000069 expired_card, 4000000000000127 incorrect_cvc. Any other
number that passes the Luhn check is refused as a live card. US bank accounts: routing
110000000 with account 000123456789 (debit settles), 000222222227 (insufficient_funds),
000111111113 (account_closed), 000111111116 (no_account), 000333333335
(debit_not_authorized). A bank debit stays `processing` until the test calls
`Account.finish_bank_debit` (the days a real debit takes).

Controls for tests (on `Account`): `webhooks` (hold, drop, delay, copies, deliver an event
any number of times in any order, retry failed deliveries now, wait until delivered; every
attempt is recorded with the HTTP status it got), `finish_bank_debit`,
`refund_in_dashboard`, `dispute`, `expire_session`, `revoke_key`,
`restricted_permissions`, `capabilities`, `fail_next_requests` (5xx/429 before the
request runs) and `drop_next_responses` (the request runs, its response is lost, so a
client retries with the same idempotency key), and `requests` (every API call received).

What it does NOT implement: customers, products and prices as objects (only inline
price_data), subscriptions and invoices, PaymentIntents or SetupIntents created or
confirmed through the API, manual capture, 3-D Secure, Connect (`Stripe-Account`), the
webhook-endpoints API (one endpoint per account, set on the Account), Stripe's automatic
retry schedule and endpoint disabling (retries are the test's explicit `retry_failed()`),
idempotency-key expiry and the 409 for two in-flight requests with one key (requests are
served one at a time), API-version-dependent shapes (one shape, API_VERSION), and
anything not listed above (an unknown URL answers 404 as Stripe does).

Usage:

    with StripeDouble() as double:
        account = double.create_account(webhook_url="http://127.0.0.1:8001/stripe/webhook")
        client = stripe.StripeClient(account.secret_key, base_addresses={"api": double.url})
        session = client.v1.checkout.sessions.create({...})   # session.url is the page
        account.webhooks.wait_idle()

or, in a test module, `stripe_double = stripe_double_fixture()` for a module-scoped fixture.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import html
import http.client
import json
import queue
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

API_VERSION = "2026-10-28.endive"  # the version the `stripe` package pins; shapes follow it
CHECKOUT_PATH = "/c/pay/"
TEST_ROUTING_NUMBER = "110000000"
_ALPHABET = string.ascii_letters + string.digits
# Stripe adds a `v0` signature to test-mode webhooks, made with a non-secret key; a
# receiver must ignore every scheme but v1. Sent here too, so naive parsers fail here.
_V0_KEY = b"stripe-test-double-v0-signature-not-a-secret"
_DAY = 86_400


# --------------------------------------------------------------------------- test data


@dataclass(frozen=True)
class TestCard:
    brand: str
    funding: str = "credit"
    decline: tuple[str, str, str] | None = None  # (code, decline_code, message)

    __test__ = False  # not a pytest test class


_DECLINED = "Your card was declined."
TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard("visa"),
    "4000056655665556": TestCard("visa", "debit"),
    "5555555555554444": TestCard("mastercard"),
    "2223003122003222": TestCard("mastercard"),
    "5200828282828210": TestCard("mastercard", "debit"),
    "378282246310005": TestCard("amex"),
    "6011111111111117": TestCard("discover"),
    "4000000000000002": TestCard("visa", decline=("card_declined", "generic_decline", _DECLINED)),
    "4000000000009995": TestCard(
        "visa",
        decline=("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    ),
    "4000000000009987": TestCard("visa", decline=("card_declined", "lost_card", _DECLINED)),
    "4000000000009979": TestCard("visa", decline=("card_declined", "stolen_card", _DECLINED)),
    "4000000000000069": TestCard(
        "visa", decline=("expired_card", "expired_card", "Your card has expired.")
    ),
    "4000000000000127": TestCard(
        "visa",
        decline=("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ),
    "4000000000000119": TestCard(
        "visa",
        decline=(
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
}

BANK_FAILURES = {
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "account_closed": "The customer's bank account has been closed.",
    "no_account": "The customer's bank account could not be located.",
    "debit_not_authorized": "The customer has notified their bank that this payment was unauthorized.",
}
# Test account number -> the failure code its debit ends with (None: the debit settles).
TEST_BANK_ACCOUNTS: dict[str, str | None] = {
    "000123456789": None,
    "000222222227": "insufficient_funds",
    "000111111113": "account_closed",
    "000111111116": "no_account",
    "000333333335": "debit_not_authorized",
}

# Restricted keys carry a permission per resource group ("none" | "read" | "write").
PERMISSION_GROUPS = {
    "account": "rak_account",
    "balance": "rak_balance",
    "checkout_sessions": "rak_checkout_session",
    "payment_intents": "rak_payment_intent",
    "setup_intents": "rak_setup_intent",
    "payment_methods": "rak_payment_method",
    "charges": "rak_charge",
    "refunds": "rak_refund",
    "disputes": "rak_dispute",
    "events": "rak_event",
}

_ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx"}
_ZERO_DECIMAL |= {"vnd", "vuv", "xaf", "xof", "xpf"}
_MINIMUM_CHARGE = {"usd": 50, "cad": 50, "eur": 50, "gbp": 30, "aud": 50}


# --------------------------------------------------------------------------- errors, ids


class StripeError(Exception):
    """An error answered as Stripe answers it: `{"error": {type, code, message, param}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.error_type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def _missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def _no_such(kind: str, object_id: str, param: str, status: int = 404) -> StripeError:
    return StripeError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def _too_small(param: str, minimum: int) -> StripeError:
    return StripeError(400, f"This value must be greater than or equal to {minimum}.", param=param)


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-style object id: prefix plus random base62 characters."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _now() -> int:
    return int(time.time())


def _money(amount: int, currency: str) -> str:
    if currency in _ZERO_DECIMAL:
        return f"{amount:,} {currency.upper()}"
    if currency == "usd":
        return f"${amount / 100:,.2f}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def _mask(key: str) -> str:
    prefix = key[: key.find("_", 3) + 1] if key.count("_") >= 2 else ""
    return prefix + "*" * max(0, len(key) - len(prefix) - 4) + key[-4:]


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """`Stripe-Signature` as Stripe computes it: HMAC-SHA256 of "<t>.<payload>" keyed
    with the endpoint's whole `whsec_…` secret, as `t=<t>,v1=<hex>` (plus test-mode v0)."""
    signed = f"{timestamp}.".encode() + payload
    v1 = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    v0 = hmac.new(_V0_KEY, signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={v1},v0={v0}"


# --------------------------------------------------------------------------- parameters

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_INTEGER = re.compile(r"^-?\d+$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def parse_params(encoded: str) -> dict[str, Any]:
    """Decode a form-encoded body or query string with Stripe's nesting:
    `metadata[k]=v` is a hash, `expand[0]=x` or `expand[]=x` an array (kept as a hash of
    indexes until the endpoint's schema says it is an array)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(encoded, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            raise StripeError(400, f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for depth, part in enumerate(parts):
            name = part if part != "" else str(len(node))
            if depth == len(parts) - 1:
                if isinstance(node.get(name), dict):
                    raise StripeError(400, f"Invalid hash: {key}", param=key)
                node[name] = value
                break
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise StripeError(400, f"Invalid hash: {key}", param=key)
            node = child
    return root


# A schema is a dict (a hash with known keys), [schema] (an array), a tuple (an enum) or
# one of these names: string, integer, boolean, currency, url, email, metadata, hash
# (free-form), range (an integer or a hash of gt/gte/lt/lte).
Schema = Any
_RANGE = {"gt": "integer", "gte": "integer", "lt": "integer", "lte": "integer"}


def coerce(value: Any, schema: Schema, path: str = "") -> Any:
    """Check decoded parameters against an endpoint's schema and convert their types.
    An empty string means "unset" (None), as in Stripe's API."""
    if isinstance(schema, dict):
        if value == "":
            return None
        if not isinstance(value, dict):
            raise StripeError(400, f"Invalid object: {path} must be a hash", param=path)
        out = {}
        for key, item in value.items():
            name = f"{path}[{key}]" if path else key
            if key not in schema:
                raise StripeError(
                    400,
                    f"Received unknown parameter: {name}",
                    code="parameter_unknown",
                    param=name,
                )
            out[key] = coerce(item, schema[key], name)
        return out
    if isinstance(schema, list):
        if value == "":
            return []
        if not isinstance(value, dict) or not all(k.isdigit() for k in value):
            raise StripeError(400, f"Invalid array: {path} must be an array", param=path)
        return [coerce(value[k], schema[0], f"{path}[{k}]") for k in sorted(value, key=int)]
    if schema == "metadata":
        return _metadata(value, path)
    if schema == "hash":
        if value == "":
            return None
        if not isinstance(value, dict):
            raise StripeError(400, f"Invalid object: {path} must be a hash", param=path)
        return value
    if schema == "range" and isinstance(value, dict):
        return coerce(value, _RANGE, path)
    if isinstance(value, dict):
        raise StripeError(400, f"Invalid {path}: expected a value, not a hash", param=path)
    if value == "":
        return None
    if len(value) > 5000:
        raise StripeError(
            400, f"Invalid string: {path} must be at most 5000 characters", param=path
        )
    if isinstance(schema, tuple):
        if value not in schema:
            choices = ", ".join(schema[:-1]) + (f", or {schema[-1]}" if len(schema) > 1 else "")
            raise StripeError(400, f"Invalid {path}: must be one of {choices}", param=path)
        return value
    if schema in ("integer", "range"):
        if not _INTEGER.match(value):
            raise StripeError(
                400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=path
            )
        return int(value)
    if schema == "boolean":
        if value not in ("true", "false"):
            raise StripeError(400, f"Invalid boolean: {value}", param=path)
        return value == "true"
    if schema == "currency":
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise StripeError(400, f"Invalid currency: {value.lower()}", param=path)
        return value.lower()
    if schema == "url" and not _URL.match(value):
        raise StripeError(400, "Not a valid URL", code="url_invalid", param=path)
    if schema == "email" and not _EMAIL.match(value):
        raise StripeError(400, f"Invalid email address: {value}", code="email_invalid", param=path)
    return value


def _metadata(value: Any, path: str) -> dict[str, str]:
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeError(400, f"Invalid object: {path} must be a hash", param=path)
    out = {}
    for key, item in value.items():
        name = f"{path}[{key}]"
        if isinstance(item, dict):
            raise StripeError(400, f"Invalid value for {name}: must be a string", param=name)
        if item == "":
            continue  # an empty value unsets the key
        if len(key) > 40:
            raise StripeError(
                400,
                "Metadata keys can have up to 40 characters, but you passed in a key that "
                f"is {len(key)} characters.",
                param=name,
            )
        if len(item) > 500:
            raise StripeError(
                400,
                "Metadata values can have up to 500 characters, but you passed in a value "
                f"that is {len(item)} characters.",
                param=name,
            )
        out[key] = item
    if len(out) > 50:
        raise StripeError(
            400, f"You can have up to 50 metadata keys, but you passed {len(out)}.", param=path
        )
    return out


_EXPAND = ["string"]
_LIST = {"limit": "integer", "starting_after": "string", "ending_before": "string"}
_LIST |= {"expand": _EXPAND}
_RETRIEVE = {"expand": _EXPAND}
_METHOD_TYPES = ("card", "us_bank_account")

CHECKOUT_SESSION_CREATE: Schema = {
    "mode": ("payment", "setup", "subscription"),
    "line_items": [
        {
            "price": "string",
            "quantity": "integer",
            "price_data": {
                "currency": "currency",
                "unit_amount": "integer",
                "unit_amount_decimal": "string",
                "product": "string",
                "product_data": {
                    "name": "string",
                    "description": "string",
                    "images": ["string"],
                    "metadata": "metadata",
                },
                "tax_behavior": ("exclusive", "inclusive", "unspecified"),
            },
        }
    ],
    "currency": "currency",
    "success_url": "url",
    "cancel_url": "url",
    "metadata": "metadata",
    "client_reference_id": "string",
    "customer": "string",
    "customer_email": "email",
    "payment_method_types": [_METHOD_TYPES],
    "payment_method_options": "hash",
    "payment_intent_data": {
        "metadata": "metadata",
        "description": "string",
        "receipt_email": "email",
        "statement_descriptor": "string",
        "statement_descriptor_suffix": "string",
    },
    "setup_intent_data": {"metadata": "metadata", "description": "string"},
    "expires_at": "integer",
    "locale": "string",
    "submit_type": ("auto", "book", "donate", "pay", "subscribe"),
    "billing_address_collection": ("auto", "required"),
    "ui_mode": ("hosted", "embedded", "custom"),
    "expand": _EXPAND,
}
REFUND_CREATE: Schema = {
    "payment_intent": "string",
    "charge": "string",
    "amount": "integer",
    "reason": ("duplicate", "fraudulent", "requested_by_customer"),
    "metadata": "metadata",
    "expand": _EXPAND,
}

# What `expand[]` may name on each kind of object, and the kind each expansion gives
# (None: a list, not expandable further).
_EXPANDABLE: dict[str, dict[str, str | None]] = {
    "checkout.session": {
        "payment_intent": "payment_intent",
        "setup_intent": "setup_intent",
        "line_items": None,
    },
    "payment_intent": {"latest_charge": "charge", "payment_method": "payment_method"},
    "setup_intent": {"payment_method": "payment_method"},
    "charge": {"payment_intent": "payment_intent", "refunds": None},
    "refund": {"charge": "charge", "payment_intent": "payment_intent"},
    "dispute": {"charge": "charge", "payment_intent": "payment_intent"},
}


def check_expand(kind: str | None, paths: list[str]) -> None:
    """Refuse an `expand[]` path the object cannot expand, before the request runs.
    `kind` "list:<kind>" is a list endpoint, whose paths start with `data.`."""
    for path in paths:
        current: str | None = kind
        for i, part in enumerate(path.split(".")):
            if current and current.startswith("list:") and part == "data":
                current = current[len("list:") :]
                continue
            fields = _EXPANDABLE.get(current or "", {})
            if part not in fields:
                shown = ".".join(path.split(".")[: i + 1])
                raise StripeError(
                    400, f"This property cannot be expanded ({shown}).", param="expand"
                )
            current = fields[part]


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver an event to the account's webhook endpoint."""

    event_id: str
    event_type: str
    attempt: int
    status: int | None  # the endpoint's HTTP status; None when it could not be reached
    error: str | None
    signed_at: int
    at: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Webhooks:
    """An account's webhook endpoint and the test's control over deliveries.

    By default each event is POSTed once, right after it happens, from a background
    thread (as Stripe does, after the API call or page submit has been answered).
    `hold()` keeps new events back until the test delivers them (late, in any order, any
    number of times); `drop()` records new events but never delivers them; `resume()`
    returns to automatic delivery. `delay` (seconds) and `copies` shape automatic
    deliveries. A delivery that gets no 2xx answer waits for `retry_failed()`.
    """

    def __init__(self, account: Account) -> None:
        self._account = account
        self.mode = "deliver"  # "deliver" | "hold" | "drop"
        self.delay = 0.0
        self.copies = 1
        self.timeout = 10.0
        self.deliveries: list[Delivery] = []
        self._held: list[str] = []
        self._dropped: list[str] = []

    def hold(self) -> None:
        """Keep new events back until `deliver`/`deliver_held` (webhooks that arrive late)."""
        self.mode = "hold"

    def drop(self) -> None:
        """Never deliver new events (lost webhooks: only reconciliation can settle them)."""
        self.mode = "drop"

    def resume(self) -> None:
        """Deliver new events automatically again (held ones stay held)."""
        self.mode = "deliver"

    @property
    def held(self) -> list[dict[str, Any]]:
        with self._account._lock:
            return [copy.deepcopy(self._account._event(i)) for i in self._held]

    @property
    def dropped(self) -> list[dict[str, Any]]:
        with self._account._lock:
            return [copy.deepcopy(self._account._event(i)) for i in self._dropped]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Events whose delivery was attempted and never got a 2xx answer."""
        with self._account._lock:
            attempted = {d.event_id for d in self.deliveries}
            succeeded = {d.event_id for d in self.deliveries if d.ok}
            return [
                copy.deepcopy(e)
                for e in self._account._events
                if e["id"] in attempted and e["id"] not in succeeded
            ]

    def succeeded(self, event_type: str | None = None) -> list[Delivery]:
        """Deliveries that got a 2xx answer, oldest first."""
        with self._account._lock:
            return [
                d
                for d in self.deliveries
                if d.ok and (event_type is None or d.event_type == event_type)
            ]

    def deliver(
        self, event: str | dict[str, Any], times: int = 1, signed_at: int | None = None
    ) -> list[Delivery]:
        """POST an event (any event, held or not, again and again) now, in this thread.
        `signed_at` signs with another timestamp (e.g. an old one, as a replayed request)."""
        event_id = event if isinstance(event, str) else event["id"]
        with self._account._lock:
            self._account._event(event_id)
            if event_id in self._held:
                self._held.remove(event_id)
        return [self._send(event_id, signed_at) for _ in range(times)]

    def deliver_held(self, newest_first: bool = False) -> list[Delivery]:
        """Deliver every held event, oldest first (or newest first: out of order)."""
        with self._account._lock:
            ids = list(reversed(self._held)) if newest_first else list(self._held)
            self._held.clear()
        return [self._send(i) for i in ids]

    def retry_failed(self) -> list[Delivery]:
        """Stripe's retry of failed deliveries, done now: each failed event once more."""
        return [self._send(e["id"]) for e in self.failed]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until automatic deliveries queued so far have been attempted."""
        self._account._double._wait(lambda: self._account._double._in_flight == 0, timeout)

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 10.0) -> list[Delivery]:
        """Block until `count` deliveries of `event_type` got a 2xx answer."""
        self._account._double._wait(lambda: len(self.succeeded(event_type)) >= count, timeout)
        return self.succeeded(event_type)

    # -- inside the double

    def _wants(self, event_type: str) -> bool:
        events = self._account.enabled_events
        return self._account.webhook_url is not None and ("*" in events or event_type in events)

    def _on_event(self, event: dict[str, Any]) -> None:
        if not self._wants(event["type"]):
            return
        if self.mode == "hold":
            self._held.append(event["id"])
        elif self.mode == "drop":
            self._dropped.append(event["id"])
        else:
            self._account._double._enqueue(self._account, event["id"], self.delay, self.copies)

    def _send(self, event_id: str, signed_at: int | None = None) -> Delivery:
        account = self._account
        with account._lock:
            event = account._event(event_id)
            url, secret = account.webhook_url, account.webhook_secret
            payload = json.dumps(event, indent=2).encode()  # Stripe sends it pretty-printed
            attempt = 1 + sum(1 for d in self.deliveries if d.event_id == event_id)
        if url is None:
            raise ValueError(f"account {account.id} has no webhook endpoint")
        timestamp = _now() if signed_at is None else signed_at
        status, error = _post_webhook(
            url, payload, signature_header(payload, secret, timestamp), self.timeout
        )
        delivery = Delivery(event_id, event["type"], attempt, status, error, timestamp, time.time())
        with account._lock:
            self.deliveries.append(delivery)
            if delivery.ok:
                event["pending_webhooks"] = 0
        account._double._notify()
        return delivery


def _post_webhook(
    url: str, payload: bytes, signature: str, timeout: float
) -> tuple[int | None, str | None]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    # Browsers resolve *.localhost to loopback (RFC 6761); Python's resolver may not.
    local = parts.scheme == "http" and (host == "localhost" or host.endswith(".localhost"))
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class("127.0.0.1" if local else host, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Accept": "*/*; q=0.5, application/xml",
        "Cache-Control": "no-cache",
        "Stripe-Signature": signature,
    }
    try:
        connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, None
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


# --------------------------------------------------------------------------- accounts


@dataclass
class ApiRequest:
    """One API call the account received (for tests: which keys, which retries)."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    status: int
    request_id: str
    replayed: bool = False


@dataclass
class _Saved:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: bytes
    request_id: str


@dataclass
class _Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class Account:
    """One Stripe account held by the double: keys, objects, events, webhook endpoint."""

    def __init__(
        self,
        double: StripeDouble,
        *,
        business_name: str,
        live: bool,
        secret_key: str | None,
        restricted_key: str | None,
        webhook_secret: str | None,
        webhook_url: str | None,
        enabled_events: list[str],
        api_version: str,
    ) -> None:
        mode = "live" if live else "test"
        self._double = double
        self._lock = double._lock
        self.id = new_id("acct_", 16)
        self.business_name = business_name
        self.live = live
        self.secret_key = secret_key or new_id(f"sk_{mode}_51", 96)
        self.restricted_key = restricted_key or new_id(f"rk_{mode}_51", 96)
        self.webhook_secret = webhook_secret or new_id("whsec_", 32)
        self.webhook_url = webhook_url
        self.enabled_events = enabled_events
        self.api_version = api_version
        self.capabilities = {
            "card_payments": "active",
            "us_bank_account_ach_payments": "active",
            "transfers": "active",
        }
        self.restricted_permissions = dict.fromkeys(PERMISSION_GROUPS, "write")
        self.revoked_keys: set[str] = set()
        self.requests: list[ApiRequest] = []
        self.webhooks = Webhooks(self)
        self._objects: dict[str, dict[str, Any]] = {}
        self._line_items: dict[str, list[dict[str, Any]]] = {}
        self._intent_data: dict[str, dict[str, Any]] = {}  # session id -> payment_intent_data
        self._events: list[dict[str, Any]] = []
        self._events_by_id: dict[str, dict[str, Any]] = {}
        self._idempotent: dict[str, _Saved] = {}
        self._bank_outcome: dict[str, str | None] = {}  # payment intent id -> failure code
        self._fail_next: list[int] = []
        self._drop_next = 0
        self._request: tuple[str | None, str | None] = (None, None)

    # -- reading state (tests)

    def get(self, object_id: str) -> dict[str, Any]:
        """A copy of any object of this account by id (checkout session, pi_, re_, evt_…)."""
        with self._lock:
            found = self._objects.get(object_id) or self._events_by_id.get(object_id)
            if found is None:
                raise KeyError(object_id)
            return copy.deepcopy(found)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """This account's events, oldest first, optionally of one type."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._events
                if event_type is None or e["type"] == event_type
            ]

    # -- test helpers: what happens at Stripe or in its dashboard

    def finish_bank_debit(self, payment_intent_id: str, outcome: str = "auto") -> dict[str, Any]:
        """The days a US bank debit takes, passed: the `processing` PaymentIntent succeeds
        or fails. `outcome` "auto" follows the test account number entered on the page;
        "succeeded" or a failure code (insufficient_funds, account_closed, …) forces it."""
        with self._lock:
            intent = self._find(payment_intent_id, "payment_intent", "intent")
            if intent["status"] != "processing":
                raise ValueError(f"{payment_intent_id} is {intent['status']}, not processing")
            if outcome == "auto":
                failure = self._bank_outcome.get(payment_intent_id)
            elif outcome == "succeeded":
                failure = None
            elif outcome in BANK_FAILURES:
                failure = outcome
            else:
                raise ValueError(f"unknown outcome {outcome!r}")
            charge = self._objects[intent["latest_charge"]]
            session = self._session_of(payment_intent_id)
            if failure is None:
                self._charge_succeeded(intent, charge)
                session["payment_status"] = "paid"
                self._emit("checkout.session.async_payment_succeeded", session)
            else:
                charge.update(
                    status="failed", failure_code=failure, failure_message=BANK_FAILURES[failure]
                )
                intent.update(
                    status="requires_payment_method",
                    payment_method=None,
                    last_payment_error=self._payment_error(
                        "card_error", failure, None, BANK_FAILURES[failure], charge
                    ),
                )
                self._emit("charge.failed", charge)
                self._emit("payment_intent.payment_failed", intent)
                self._emit("checkout.session.async_payment_failed", session)
            return copy.deepcopy(intent)

    def refund_in_dashboard(
        self, payment: str, amount: int | None = None, reason: str = "requested_by_customer"
    ) -> dict[str, Any]:
        """A refund made by the business in Stripe's dashboard (payment: pi_… or ch_…)."""
        with self._lock:
            key = "charge" if payment.startswith(("ch_", "py_")) else "payment_intent"
            params: dict[str, Any] = {key: payment, "reason": reason}
            if amount is not None:
                params["amount"] = amount
            return copy.deepcopy(self._create_refund(params))

    def dispute(self, payment: str, reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder disputes a payment (pi_… or ch_…): `charge.dispute.created`."""
        with self._lock:
            if payment.startswith(("ch_", "py_")):
                charge = self._find(payment, "charge", "charge")
            else:
                intent = self._find(payment, "payment_intent", "payment_intent")
                charge = self._objects[intent["latest_charge"]]
            details = charge["payment_method_details"]
            dispute = self._store(
                {
                    "id": new_id("du_"),
                    "object": "dispute",
                    "amount": charge["amount"],
                    "balance_transactions": [],
                    "charge": charge["id"],
                    "created": _now(),
                    "currency": charge["currency"],
                    "evidence": {},
                    "evidence_details": {
                        "due_by": _now() + 7 * _DAY,
                        "has_evidence": False,
                        "past_due": False,
                        "submission_count": 0,
                    },
                    "is_charge_refundable": False,
                    "livemode": self.live,
                    "metadata": {},
                    "payment_intent": charge["payment_intent"],
                    "payment_method_details": {
                        "type": details["type"],
                        **(
                            {"card": {"brand": details["card"]["brand"], "case_type": "chargeback"}}
                            if details["type"] == "card"
                            else {}
                        ),
                    },
                    "reason": reason,
                    "status": "needs_response",
                }
            )
            charge["disputed"] = True
            self._emit("charge.dispute.created", dispute)
            return copy.deepcopy(dispute)

    def expire_session(self, session_id: str) -> dict[str, Any]:
        """The session's 24 hours ran out: `checkout.session.expired`."""
        with self._lock:
            session = self._find(session_id, "checkout.session", "session")
            if session["status"] != "open":
                raise ValueError(f"{session_id} is {session['status']}")
            self._expire(session)
            return copy.deepcopy(session)

    def revoke_key(self, key: str) -> None:
        """Roll a key in the dashboard: calls with it now answer 401 api_key_expired."""
        with self._lock:
            self.revoked_keys.add(key)

    def fail_next_requests(self, count: int = 1, status: int = 500) -> None:
        """The next `count` API calls fail before running (5xx api_error, 429 rate_limit)."""
        with self._lock:
            self._fail_next.extend([status] * count)

    def drop_next_responses(self, count: int = 1) -> None:
        """The next `count` API calls run, but their answers are lost (connection closed)."""
        with self._lock:
            self._drop_next += count

    # -- objects and events

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._objects[obj["id"]] = obj
        return obj

    def _find(self, object_id: str, kind: str, param: str, status: int = 404) -> dict[str, Any]:
        found = self._objects.get(object_id)
        if found is None or found["object"] != kind:
            raise _no_such(kind, object_id, param, status)
        return found

    def _event(self, event_id: str) -> dict[str, Any]:
        event = self._events_by_id.get(event_id)
        if event is None:
            raise KeyError(event_id)
        return event

    def _emit(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        request_id, idempotency_key = self._request
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": self.api_version,
            "created": _now(),
            "data": {"object": copy.deepcopy(obj)},  # a snapshot, as Stripe sends
            "livemode": self.live,
            "pending_webhooks": 1 if self.webhooks._wants(event_type) else 0,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        }
        self._events.append(event)
        self._events_by_id[event["id"]] = event
        self.webhooks._on_event(event)
        return event

    def _render(self, obj: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        nested: dict[str, list[str]] = {}
        for path in expand:
            head, _, rest = path.partition(".")
            nested.setdefault(head, [])
            if rest:
                nested[head].append(rest)
        for head, rest in nested.items():  # paths were checked before the request ran
            if head == "line_items":
                url = f"/v1/checkout/sessions/{obj['id']}/line_items"
                out[head] = self._list(list(self._line_items[obj["id"]]), {}, url)
            elif head == "refunds":
                refunds = [r for r in self._of_kind("refund") if r["charge"] == obj["id"]]
                out[head] = self._list(refunds, {}, f"/v1/charges/{obj['id']}/refunds")
            elif isinstance(obj.get(head), str):
                out[head] = self._render(self._objects[obj[head]], rest)
        return out

    def _of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Objects of one kind, newest first (Stripe's list order)."""
        return [o for o in reversed(self._objects.values()) if o["object"] == kind]

    def _list(self, items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict:
        limit = params.get("limit") or 10
        if not 1 <= limit <= 100:
            raise StripeError(
                400, "This value must be between 1 and 100 (inclusive).", param="limit"
            )
        ids = [o["id"] for o in items]
        for cursor in ("starting_after", "ending_before"):
            if params.get(cursor) and params[cursor] not in ids:
                raise _no_such("object", params[cursor], cursor, 400)
        if params.get("starting_after"):
            start = ids.index(params["starting_after"]) + 1
            page, has_more = items[start : start + limit], len(items) > start + limit
        elif params.get("ending_before"):
            end = ids.index(params["ending_before"])
            page, has_more = items[max(0, end - limit) : end], end - limit > 0
        else:
            page, has_more = items[:limit], len(items) > limit
        expand = [path.removeprefix("data.") for path in params.get("expand") or []]
        data = [self._render(o, expand) for o in page]
        return {"object": "list", "data": data, "has_more": has_more, "url": url}

    # -- checkout sessions

    def _create_session(self, p: dict[str, Any]) -> dict[str, Any]:
        mode = p.get("mode")
        if mode is None:
            raise _missing("mode")
        if mode == "subscription":
            raise StripeError(
                400, "This test double does not implement mode=subscription.", param="mode"
            )
        if p.get("ui_mode") not in (None, "hosted"):
            raise StripeError(
                400, "This test double implements ui_mode=hosted only.", param="ui_mode"
            )
        if p.get("customer"):
            raise _no_such("customer", p["customer"], "customer", 400)
        methods = p.get("payment_method_types") or ["card"]
        for i, method in enumerate(methods):
            capability = "card_payments" if method == "card" else f"{method}_ach_payments"
            if self.capabilities.get(capability) != "active":
                raise StripeError(
                    400,
                    f"The payment method type `{method}` is invalid. Please ensure the provided "
                    "type is activated in your dashboard.",
                    param=f"payment_method_types[{i}]",
                )
        items: list[dict[str, Any]] = []
        total: int | None = None
        currency = p.get("currency")
        if mode == "payment":
            if not p.get("line_items"):
                raise _missing("line_items")
            if p.get("setup_intent_data") is not None:
                raise StripeError(
                    400,
                    "You can not pass `setup_intent_data` in `payment` mode.",
                    param="setup_intent_data",
                )
            items, currency = self._line_items_of(p["line_items"], currency)
            total = sum(item["amount_total"] for item in items)
            minimum = _MINIMUM_CHARGE.get(currency, 1)
            if total < minimum:
                raise StripeError(
                    400,
                    "The Checkout Session's total amount due must add up to at least "
                    f"{_money(minimum, currency)} {currency}",
                    code="amount_too_small",
                    param="line_items",
                )
            if total > 99_999_999:
                raise StripeError(
                    400,
                    "The Checkout Session's total amount due must be no more than "
                    f"{_money(99_999_999, currency)} {currency}",
                    code="amount_too_large",
                    param="line_items",
                )
        else:
            if p.get("line_items"):
                raise StripeError(
                    400, "You can not pass `line_items` in `setup` mode.", param="line_items"
                )
            if p.get("payment_intent_data") is not None:
                raise StripeError(
                    400,
                    "You can not pass `payment_intent_data` in `setup` mode.",
                    param="payment_intent_data",
                )
        if "us_bank_account" in methods and currency not in (None, "usd"):
            raise StripeError(
                400,
                f"The payment method type `us_bank_account` does not support {currency}.",
                param="payment_method_types",
            )
        created = _now()
        expires_at = p.get("expires_at") or created + _DAY
        if expires_at < created + 1800:
            raise StripeError(
                400,
                "The `expires_at` timestamp must be at least 30 minutes from Checkout "
                "Session creation.",
                param="expires_at",
            )
        if expires_at > created + _DAY:
            raise StripeError(
                400,
                "The `expires_at` timestamp must be less than 24 hours from Checkout "
                "Session creation.",
                param="expires_at",
            )
        if len(p.get("client_reference_id") or "") > 200:
            raise StripeError(
                400,
                "client_reference_id must be at most 200 characters",
                param="client_reference_id",
            )
        session_id = new_id("cs_live_a1" if self.live else "cs_test_a1", 58)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": p.get("billing_address_collection"),
            "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id"),
            "client_secret": None,
            "consent": None,
            "consent_collection": None,
            "created": created,
            "currency": currency,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": None,
            "customer_creation": "if_required" if mode == "payment" else None,
            "customer_details": None,
            "customer_email": p.get("customer_email"),
            "expires_at": expires_at,
            "invoice": None,
            "invoice_creation": None,
            "livemode": self.live,
            "locale": p.get("locale"),
            "metadata": p.get("metadata") or {},
            "mode": mode,
            "payment_intent": None,  # created when the customer submits the page
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": None,
            "payment_method_options": p.get("payment_method_options") or {},
            "payment_method_types": methods,
            "payment_status": "unpaid" if mode == "payment" else "no_payment_required",
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": p.get("submit_type"),
            "subscription": None,
            "success_url": p.get("success_url"),
            "total_details": (
                {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
                if mode == "payment"
                else None
            ),
            "ui_mode": "hosted",
            "url": f"{self._double.url}{CHECKOUT_PATH}{session_id}",
        }
        if mode == "setup":
            setup = p.get("setup_intent_data") or {}
            intent = self._store(
                {
                    "id": new_id("seti_"),
                    "object": "setup_intent",
                    "application": None,
                    "automatic_payment_methods": None,
                    "cancellation_reason": None,
                    "client_secret": None,
                    "created": created,
                    "customer": None,
                    "description": setup.get("description"),
                    "flow_directions": None,
                    "last_setup_error": None,
                    "latest_attempt": None,
                    "livemode": self.live,
                    "mandate": None,
                    "metadata": setup.get("metadata") or {},
                    "next_action": None,
                    "on_behalf_of": None,
                    "payment_method": None,
                    "payment_method_configuration_details": None,
                    "payment_method_options": {},
                    "payment_method_types": methods,
                    "single_use_mandate": None,
                    "status": "requires_payment_method",
                    "usage": "off_session",
                }
            )
            intent["client_secret"] = f"{intent['id']}_secret_{new_id('', 24)}"
            session["setup_intent"] = intent["id"]
            self._emit("setup_intent.created", intent)
        self._store(session)
        self._line_items[session_id] = items
        self._intent_data[session_id] = p.get("payment_intent_data") or {}
        self._double._sessions[session_id] = self
        return session

    def _line_items_of(
        self, line_items: list[dict[str, Any]], currency: str | None
    ) -> tuple[list[dict[str, Any]], str]:
        items = []
        for i, line in enumerate(line_items):
            path = f"line_items[{i}]"
            if line.get("price"):
                raise _no_such("price", line["price"], f"{path}[price]", 400)
            data = line.get("price_data")
            if not data:
                raise _missing(f"{path}[price_data]")
            if line.get("quantity") is None:
                raise _missing(f"{path}[quantity]")
            if line["quantity"] < 1:
                raise _too_small(f"{path}[quantity]", 1)
            if not data.get("currency"):
                raise _missing(f"{path}[price_data][currency]")
            amount = data.get("unit_amount")
            if amount is None and data.get("unit_amount_decimal"):
                if not re.fullmatch(r"\d+(\.0+)?", data["unit_amount_decimal"]):
                    raise StripeError(
                        400,
                        "This test double takes whole unit amounts only.",
                        param=f"{path}[price_data][unit_amount_decimal]",
                    )
                amount = int(float(data["unit_amount_decimal"]))
            if amount is None:
                raise _missing(f"{path}[price_data][unit_amount]")
            if amount < 0:
                raise _too_small(f"{path}[price_data][unit_amount]", 0)
            if data.get("product"):
                raise _no_such("product", data["product"], f"{path}[price_data][product]", 400)
            product = data.get("product_data") or {}
            if not product.get("name"):
                raise _missing(f"{path}[price_data][product_data][name]")
            currency = currency or data["currency"]
            if data["currency"] != currency:
                raise StripeError(
                    400,
                    "All line items must have the same currency.",
                    param=f"{path}[price_data][currency]",
                )
            price = {
                "id": new_id("price_"),
                "object": "price",
                "active": False,
                "billing_scheme": "per_unit",
                "created": _now(),
                "currency": currency,
                "custom_unit_amount": None,
                "livemode": self.live,
                "lookup_key": None,
                "metadata": {},
                "nickname": None,
                "product": new_id("prod_", 14),
                "recurring": None,
                "tax_behavior": data.get("tax_behavior") or "unspecified",
                "tiers_mode": None,
                "transform_quantity": None,
                "type": "one_time",
                "unit_amount": amount,
                "unit_amount_decimal": str(amount),
            }
            items.append(
                {
                    "id": new_id("li_"),
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount * line["quantity"],
                    "amount_tax": 0,
                    "amount_total": amount * line["quantity"],
                    "currency": currency,
                    "description": product["name"],
                    "price": price,
                    "quantity": line["quantity"],
                }
            )
        assert currency is not None
        return items, currency

    def _session_of(self, payment_intent_id: str) -> dict[str, Any]:
        return next(
            s for s in self._of_kind("checkout.session") if s["payment_intent"] == payment_intent_id
        )

    def _expire_if_due(self, session: dict[str, Any]) -> None:
        if session["status"] == "open" and _now() >= session["expires_at"]:
            self._expire(session)

    def _expire(self, session: dict[str, Any]) -> None:
        session.update(status="expired", url=None)
        if session["payment_intent"]:
            intent = self._objects[session["payment_intent"]]
            if intent["status"] == "requires_payment_method":
                intent.update(
                    status="canceled", canceled_at=_now(), cancellation_reason="abandoned"
                )
                self._emit("payment_intent.canceled", intent)
        self._emit("checkout.session.expired", session)

    def _complete(self, session: dict[str, Any], payment_status: str, name: str, email: str):
        session.update(
            status="complete",
            payment_status=payment_status,
            url=None,
            customer_details={
                "address": None,
                "email": email,
                "name": name,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
        )
        self._emit("checkout.session.completed", session)

    # -- what the hosted page does

    def _payment_intent_for(self, session: dict[str, Any]) -> dict[str, Any]:
        """The session's PaymentIntent, created on the first attempt (reused on retries)."""
        if session["payment_intent"]:
            return self._objects[session["payment_intent"]]
        data = self._intent_data[session["id"]]
        intent = self._store(
            {
                "id": new_id("pi_"),
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_capturable": 0,
                "amount_details": {"tip": {}},
                "amount_received": 0,
                "application": None,
                "application_fee_amount": None,
                "automatic_payment_methods": None,
                "canceled_at": None,
                "cancellation_reason": None,
                "capture_method": "automatic_async",
                "client_secret": None,
                "confirmation_method": "automatic",
                "created": _now(),
                "currency": session["currency"],
                "customer": None,
                "description": data.get("description"),
                "last_payment_error": None,
                "latest_charge": None,
                "livemode": self.live,
                "metadata": data.get("metadata") or {},
                "next_action": None,
                "on_behalf_of": None,
                "payment_method": None,
                "payment_method_configuration_details": None,
                "payment_method_options": {},
                "payment_method_types": session["payment_method_types"],
                "processing": None,
                "receipt_email": data.get("receipt_email"),
                "review": None,
                "setup_future_usage": None,
                "shipping": None,
                "source": None,
                "statement_descriptor": data.get("statement_descriptor"),
                "statement_descriptor_suffix": data.get("statement_descriptor_suffix"),
                "status": "requires_payment_method",
                "transfer_data": None,
                "transfer_group": None,
            }
        )
        intent["client_secret"] = f"{intent['id']}_secret_{new_id('', 24)}"
        session["payment_intent"] = intent["id"]
        self._emit("payment_intent.created", intent)
        return intent

    def _payment_method(self, kind: str, details: dict[str, Any], name: str, email: str):
        return self._store(
            {
                "id": new_id("pm_"),
                "object": "payment_method",
                "allow_redisplay": "unspecified",
                "billing_details": {
                    "address": {
                        "city": None,
                        "country": None,
                        "line1": None,
                        "line2": None,
                        "postal_code": None,
                        "state": None,
                    },
                    "email": email,
                    "name": name,
                    "phone": None,
                    "tax_id": None,
                },
                kind: details,
                "created": _now(),
                "customer": None,
                "livemode": self.live,
                "metadata": {},
                "type": kind,
            }
        )

    def _charge(self, intent: dict[str, Any], method: dict[str, Any], status: str) -> dict:
        kind = method["type"]
        details = method[kind]
        if kind == "card":
            method_details = {
                "brand": details["brand"],
                "checks": details["checks"],
                "country": "US",
                "exp_month": details["exp_month"],
                "exp_year": details["exp_year"],
                "fingerprint": details["fingerprint"],
                "funding": details["funding"],
                "last4": details["last4"],
                "network": details["brand"],
                "three_d_secure": None,
                "wallet": None,
            }
        else:
            method_details = {
                k: details[k]
                for k in ("account_holder_type", "account_type", "bank_name", "fingerprint")
            } | {"last4": details["last4"], "routing_number": details["routing_number"]}
        charge = self._store(
            {
                # ACH debits are Payment objects (py_), cards are Charges (ch_).
                "id": new_id("ch_" if kind == "card" else "py_"),
                "object": "charge",
                "amount": intent["amount"],
                "amount_captured": 0,
                "amount_refunded": 0,
                "application": None,
                "application_fee": None,
                "application_fee_amount": None,
                "balance_transaction": None,
                "billing_details": method["billing_details"],
                "calculated_statement_descriptor": self.business_name.upper()[:22],
                "captured": False,
                "created": _now(),
                "currency": intent["currency"],
                "customer": None,
                "description": intent["description"],
                "disputed": False,
                "failure_balance_transaction": None,
                "failure_code": None,
                "failure_message": None,
                "fraud_details": {},
                "livemode": self.live,
                "metadata": dict(intent["metadata"]),
                "on_behalf_of": None,
                "outcome": None,
                "paid": False,
                "payment_intent": intent["id"],
                "payment_method": method["id"],
                "payment_method_details": {"type": kind, kind: method_details},
                "receipt_email": intent["receipt_email"],
                "receipt_number": None,
                "receipt_url": None,
                "refunded": False,
                "review": None,
                "shipping": None,
                "source": None,
                "statement_descriptor": None,
                "statement_descriptor_suffix": None,
                "status": status,
                "transfer_data": None,
                "transfer_group": None,
            }
        )
        intent["latest_charge"] = charge["id"]
        return charge

    def _charge_succeeded(self, intent: dict[str, Any], charge: dict[str, Any]) -> None:
        charge.update(
            status="succeeded",
            paid=True,
            captured=True,
            amount_captured=charge["amount"],
            balance_transaction=new_id("txn_"),
            receipt_url=f"{self._double.url}/receipts/{charge['id']}",
            outcome={
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
        )
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            payment_method=charge["payment_method"],
            last_payment_error=None,
        )
        self._emit("charge.succeeded", charge)
        self._emit("payment_intent.succeeded", intent)

    def _payment_error(
        self,
        error_type: str,
        code: str,
        decline_code: str | None,
        message: str,
        charge: dict[str, Any] | None,
        method: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        method = method or (self._objects[charge["payment_method"]] if charge else None)
        error = {
            "type": error_type,
            "code": code,
            "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
            "message": message,
            "charge": charge["id"] if charge else None,
            "payment_method": copy.deepcopy(method),
        }
        if decline_code:
            error["decline_code"] = decline_code
        return error

    def _pay_by_card(
        self,
        session: dict[str, Any],
        card: TestCard,
        number: str,
        expiry: tuple[int, int],
        name: str,
        email: str,
    ) -> str | None:
        """Complete the session with a card; returns the decline message if declined."""
        method = self._payment_method(
            "card",
            {
                "brand": card.brand,
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": "US",
                "display_brand": card.brand,
                "exp_month": expiry[0],
                "exp_year": expiry[1],
                "fingerprint": hashlib.sha256(f"{self.id}{number}".encode()).hexdigest()[:16],
                "funding": card.funding,
                "generated_from": None,
                "last4": number[-4:],
                "networks": {"available": [card.brand], "preferred": None},
                "regulated_status": "unregulated",
                "three_d_secure_usage": {"supported": True},
                "wallet": None,
            },
            name,
            email,
        )
        if session["mode"] == "setup":
            return self._set_up(session, method, card.decline, name, email)
        intent = self._payment_intent_for(session)
        charge = self._charge(intent, method, "pending")
        if card.decline:
            code, decline_code, message = card.decline
            charge.update(
                status="failed",
                failure_code=code,
                failure_message=message,
                outcome={
                    "network_status": "declined_by_network",
                    "reason": decline_code,
                    "risk_level": "normal",
                    "seller_message": "The bank did not return any further details with this "
                    "decline.",
                    "type": "issuer_declined",
                },
            )
            intent.update(
                status="requires_payment_method",
                payment_method=None,
                last_payment_error=self._payment_error(
                    "card_error", code, decline_code, message, charge
                ),
            )
            self._emit("charge.failed", charge)
            self._emit("payment_intent.payment_failed", intent)
            return message
        self._charge_succeeded(intent, charge)
        self._complete(session, "paid", name, email)
        return None

    def _pay_by_bank(
        self, session: dict[str, Any], account_number: str, name: str, email: str
    ) -> None:
        method = self._payment_method(
            "us_bank_account",
            {
                "account_holder_type": "individual",
                "account_type": "checking",
                "bank_name": "STRIPE TEST BANK",
                "financial_connections_account": None,
                "fingerprint": hashlib.sha256(f"{self.id}{account_number}".encode()).hexdigest()[
                    :16
                ],
                "last4": account_number[-4:],
                "networks": {"preferred": "ach", "supported": ["ach"]},
                "routing_number": TEST_ROUTING_NUMBER,
                "status_details": {},
            },
            name,
            email,
        )
        if session["mode"] == "setup":
            self._set_up(session, method, None, name, email)
            return
        intent = self._payment_intent_for(session)
        charge = self._charge(intent, method, "pending")
        intent.update(status="processing", payment_method=method["id"], last_payment_error=None)
        self._bank_outcome[intent["id"]] = TEST_BANK_ACCOUNTS[account_number]
        self._emit("charge.pending", charge)
        self._emit("payment_intent.processing", intent)
        self._complete(session, "unpaid", name, email)

    def _set_up(
        self,
        session: dict[str, Any],
        method: dict[str, Any],
        decline: tuple[str, str, str] | None,
        name: str,
        email: str,
    ) -> str | None:
        intent = self._objects[session["setup_intent"]]
        if decline:
            code, decline_code, message = decline
            intent.update(
                status="requires_payment_method",
                last_setup_error=self._payment_error(
                    "card_error", code, decline_code, message, None, method
                ),
            )
            self._emit("setup_intent.setup_failed", intent)
            return message
        intent.update(status="succeeded", payment_method=method["id"], last_setup_error=None)
        self._emit("setup_intent.succeeded", intent)
        self._complete(session, "no_payment_required", name, email)
        return None

    # -- refunds

    def _create_refund(self, p: dict[str, Any]) -> dict[str, Any]:
        charge_id, intent_id = p.get("charge"), p.get("payment_intent")
        if not charge_id and not intent_id:
            raise StripeError(
                400,
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        if intent_id:
            intent = self._find(intent_id, "payment_intent", "payment_intent", 400)
            charge = self._objects.get(intent["latest_charge"] or "")
            if charge is None or charge["status"] != "succeeded":
                raise StripeError(
                    400,
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.",
                    code="charge_not_refundable",
                    param="payment_intent",
                )
            if charge_id and charge_id != charge["id"]:
                raise StripeError(
                    400,
                    f"Charge {charge_id} does not belong to PaymentIntent {intent_id}.",
                    param="charge",
                )
        else:
            charge = self._find(charge_id, "charge", "charge", 400)
            if charge["status"] != "succeeded":
                raise StripeError(
                    400,
                    f"Charge {charge_id} has not succeeded; it cannot be refunded.",
                    code="charge_not_refundable",
                    param="charge",
                )
        if charge["disputed"]:
            raise StripeError(
                400,
                f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeError(
                400,
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = p.get("amount")
        if amount is None:
            amount = remaining
        if amount < 1:
            raise _too_small("amount", 1)
        if amount > remaining:
            currency = charge["currency"]
            raise StripeError(
                400,
                f"Refund amount ({_money(amount, currency)}) is greater than unrefunded amount "
                f"on charge ({_money(remaining, currency)})",
                code="amount_too_large",
                param="amount",
            )
        refund = self._store(
            {
                "id": new_id("re_"),
                "object": "refund",
                "amount": amount,
                "balance_transaction": new_id("txn_"),
                "charge": charge["id"],
                "created": _now(),
                "currency": charge["currency"],
                "destination_details": {"type": charge["payment_method_details"]["type"]},
                "metadata": p.get("metadata") or {},
                "payment_intent": charge["payment_intent"],
                "reason": p.get("reason"),
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": "succeeded",
                "transfer_reversal": None,
            }
        )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge)
        return refund

    def _balance(self) -> dict[str, Any]:
        amounts: dict[str, int] = {}
        for charge in self._of_kind("charge"):
            if charge["status"] == "succeeded":
                net = charge["amount_captured"] - charge["amount_refunded"]
                amounts[charge["currency"]] = amounts.get(charge["currency"], 0) + net
        amounts = amounts or {"usd": 0}
        return {
            "object": "balance",
            "available": [
                {"amount": a, "currency": c, "source_types": {"card": a}}
                for c, a in amounts.items()
            ],
            "livemode": self.live,
            "pending": [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in amounts],
        }

    def _as_account(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "account",
            "business_profile": {"name": self.business_name, "support_email": None, "url": None},
            "business_type": "company",
            "capabilities": dict(self.capabilities),
            "charges_enabled": True,
            "country": "US",
            "created": _now(),
            "default_currency": "usd",
            "details_submitted": True,
            "email": None,
            "metadata": {},
            "payouts_enabled": True,
            "settings": {"dashboard": {"display_name": self.business_name, "timezone": "Etc/UTC"}},
            "type": "standard",
        }


# --------------------------------------------------------------------------- API routes

Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    group: str  # restricted-key permission group
    access: str  # "read" | "write"
    schema: Schema
    handler: Handler
    returns: str | None  # the object kind answered ("list:<kind>" for a list), for expand[]


def _retrieve(kind: str, param: str) -> Handler:
    def handler(account: Account, p: dict[str, Any], object_id: str) -> dict[str, Any]:
        found = account._find(object_id, kind, param)
        if kind == "checkout.session":
            account._expire_if_due(found)
        return account._render(found, p.get("expand") or [])

    return handler


def _lister(kind: str, url: str, filters: tuple[str, ...] = ()) -> Handler:
    def handler(account: Account, p: dict[str, Any]) -> dict[str, Any]:
        items = account._of_kind(kind)
        if kind == "checkout.session":
            for session in items:
                account._expire_if_due(session)
        for name in filters:
            if p.get(name) is not None:
                items = [o for o in items if o.get(name) == p[name]]
        return account._list(items, p, url)

    return handler


def _list_events(account: Account, p: dict[str, Any]) -> dict[str, Any]:
    items = list(reversed(account._events))
    if p.get("type"):
        wanted = p["type"]
        if wanted.endswith(".*"):
            items = [e for e in items if e["type"].startswith(wanted[:-1])]
        else:
            items = [e for e in items if e["type"] == wanted]
    if p.get("types"):
        items = [e for e in items if e["type"] in p["types"]]
    created = p.get("created")
    if isinstance(created, int):
        items = [e for e in items if e["created"] == created]
    elif created:
        checks = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }
        for op, bound in created.items():
            if bound is not None:
                items = [e for e in items if checks[op](e["created"], bound)]
    return account._list(items, p, "/v1/events")


def _get_event(account: Account, p: dict[str, Any], event_id: str) -> dict[str, Any]:
    if event_id not in account._events_by_id:
        raise _no_such("event", event_id, "id")
    return copy.deepcopy(account._events_by_id[event_id])


def _create_session(account: Account, p: dict[str, Any]) -> dict[str, Any]:
    return account._render(account._create_session(p), p.get("expand") or [])


def _expire_session(account: Account, p: dict[str, Any], session_id: str) -> dict[str, Any]:
    session = account._find(session_id, "checkout.session", "session")
    account._expire_if_due(session)
    if session["status"] != "open":
        raise StripeError(
            400,
            'Only Checkout Sessions with a status in ["open"] can be expired.',
            param="session",
        )
    account._expire(session)
    return account._render(session, p.get("expand") or [])


def _session_line_items(account: Account, p: dict[str, Any], session_id: str) -> dict:
    account._find(session_id, "checkout.session", "session")
    url = f"/v1/checkout/sessions/{session_id}/line_items"
    return account._list(list(account._line_items[session_id]), p, url)


def _create_refund(account: Account, p: dict[str, Any]) -> dict[str, Any]:
    return account._render(account._create_refund(p), p.get("expand") or [])


_COLLECTIONS = {
    "checkout/sessions": "checkout.session",
    "payment_intents": "payment_intent",
    "setup_intents": "setup_intent",
    "payment_methods": "payment_method",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "events": "event",
}


def _route(method: str, path: str, group: str, access: str, schema: Schema, handler: Handler):
    """A route; the kind of object it answers follows from its path (POST to a collection
    creates one, GET of it lists them, a path with an id names one)."""
    returns = None
    for collection, kind in _COLLECTIONS.items():
        base = f"/v1/{collection}"
        if path.endswith("/line_items"):
            returns = "list:item"
        elif path == base:
            returns = kind if method == "POST" else f"list:{kind}"
        elif path.startswith(base + "/"):
            returns = kind
        if returns:
            break
    return _Route(method, re.compile(f"^{path}$"), group, access, schema, handler, returns)


_ID = "([^/]+)"
ROUTES = [
    _route("GET", "/v1/account", "account", "read", _RETRIEVE, lambda a, p: a._as_account()),
    _route("GET", "/v1/balance", "balance", "read", _RETRIEVE, lambda a, p: a._balance()),
    _route(
        "POST",
        "/v1/checkout/sessions",
        "checkout_sessions",
        "write",
        CHECKOUT_SESSION_CREATE,
        _create_session,
    ),
    _route(
        "GET",
        "/v1/checkout/sessions",
        "checkout_sessions",
        "read",
        _LIST | {"payment_intent": "string", "status": ("open", "complete", "expired")},
        _lister("checkout.session", "/v1/checkout/sessions", ("payment_intent", "status")),
    ),
    _route(
        "GET",
        f"/v1/checkout/sessions/{_ID}",
        "checkout_sessions",
        "read",
        _RETRIEVE,
        _retrieve("checkout.session", "session"),
    ),
    _route(
        "POST",
        f"/v1/checkout/sessions/{_ID}/expire",
        "checkout_sessions",
        "write",
        _RETRIEVE,
        _expire_session,
    ),
    _route(
        "GET",
        f"/v1/checkout/sessions/{_ID}/line_items",
        "checkout_sessions",
        "read",
        _LIST,
        _session_line_items,
    ),
    _route(
        "GET",
        "/v1/payment_intents",
        "payment_intents",
        "read",
        _LIST,
        _lister("payment_intent", "/v1/payment_intents"),
    ),
    _route(
        "GET",
        f"/v1/payment_intents/{_ID}",
        "payment_intents",
        "read",
        _RETRIEVE,
        _retrieve("payment_intent", "intent"),
    ),
    _route(
        "GET",
        f"/v1/setup_intents/{_ID}",
        "setup_intents",
        "read",
        _RETRIEVE,
        _retrieve("setup_intent", "intent"),
    ),
    _route(
        "GET",
        f"/v1/payment_methods/{_ID}",
        "payment_methods",
        "read",
        _RETRIEVE,
        _retrieve("payment_method", "payment_method"),
    ),
    _route(
        "GET",
        "/v1/charges",
        "charges",
        "read",
        _LIST | {"payment_intent": "string"},
        _lister("charge", "/v1/charges", ("payment_intent",)),
    ),
    _route("GET", f"/v1/charges/{_ID}", "charges", "read", _RETRIEVE, _retrieve("charge", "id")),
    _route("POST", "/v1/refunds", "refunds", "write", REFUND_CREATE, _create_refund),
    _route(
        "GET",
        "/v1/refunds",
        "refunds",
        "read",
        _LIST | {"payment_intent": "string", "charge": "string"},
        _lister("refund", "/v1/refunds", ("payment_intent", "charge")),
    ),
    _route("GET", f"/v1/refunds/{_ID}", "refunds", "read", _RETRIEVE, _retrieve("refund", "id")),
    _route(
        "GET",
        "/v1/disputes",
        "disputes",
        "read",
        _LIST | {"payment_intent": "string", "charge": "string"},
        _lister("dispute", "/v1/disputes", ("payment_intent", "charge")),
    ),
    _route(
        "GET",
        f"/v1/disputes/{_ID}",
        "disputes",
        "read",
        _RETRIEVE,
        _retrieve("dispute", "dispute"),
    ),
    _route(
        "GET",
        "/v1/events",
        "events",
        "read",
        _LIST | {"type": "string", "types": ["string"], "created": "range"},
        _list_events,
    ),
    _route("GET", f"/v1/events/{_ID}", "events", "read", _RETRIEVE, _get_event),
]


# --------------------------------------------------------------------------- hosted page

_PAGE_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1a1f36}
main{max-width:28rem;margin:0 auto;padding:1rem}
.test-mode{background:#ffde92;color:#4d2b00;padding:.25rem .5rem;border-radius:4px}
.amount{font-size:2rem;font-weight:600;margin:.25rem 0}
label{display:block;font-weight:600;margin-top:.75rem}
input{display:block;width:100%;box-sizing:border-box;font:inherit;padding:.5rem;
border:1px solid #8792a2;border-radius:4px}
input[aria-invalid=true]{border-color:#df1b41}
.error{color:#df1b41;margin:.25rem 0 0}
.alert{color:#fff;background:#df1b41;padding:.5rem;border-radius:4px}
button{margin-top:1rem;width:100%;font:inherit;font-weight:600;padding:.75rem;
background:#0055de;color:#fff;border:0;border-radius:4px}
nav a{margin-right:1rem}
nav a[aria-current=page]{font-weight:700;color:inherit;text-decoration:none}
"""


def _field(
    name: str,
    label: str,
    errors: dict[str, str],
    value: str = "",
    autocomplete: str = "off",
    numeric: bool = False,
    kind: str = "text",
) -> str:
    error = errors.get(name)
    attrs = f' autocomplete="{autocomplete}"' + (' inputmode="numeric"' if numeric else "")
    if error:
        attrs += f' aria-invalid="true" aria-describedby="{name}-error"'
    message = f'<p class="error" id="{name}-error">{html.escape(error)}</p>' if error else ""
    return (
        f'<label for="{name}">{label}</label>'
        f'<input id="{name}" name="{name}" type="{kind}" value="{html.escape(value)}"{attrs}>'
        f"{message}"
    )


def _page_html(
    account: Account,
    session: dict[str, Any],
    method: str,
    errors: dict[str, str],
    alert: str | None,
    values: dict[str, str],
) -> str:
    name = html.escape(account.business_name)
    setup = session["mode"] == "setup"
    amount = "" if setup else _money(session["amount_total"], session["currency"])
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{'Set up payment' if setup else 'Pay ' + amount} · {name}"
        f"{'' if account.live else ' · Test mode'}</title>",
        f"<style>{_PAGE_STYLE}</style></head><body><main>",
    ]
    if not account.live:
        parts.append(
            '<p class="test-mode"><strong>Test mode</strong> · Stripe test double: no real '
            "money moves. Use a test card such as 4242 4242 4242 4242.</p>"
        )
    if session["cancel_url"] and session["status"] == "open":
        parts.append(f'<p><a href="{html.escape(session["cancel_url"])}">Back to {name}</a></p>')
    parts.append(f"<h1>{name}</h1>")
    if setup:
        parts.append(f"<p>Save a payment method for future payments to {name}.</p>")
    else:
        parts.append(f'<p class="amount">{amount}</p><ul>')
        for item in account._line_items[session["id"]]:
            line = f"{html.escape(item['description'])}"
            if item["quantity"] > 1:
                line += f" × {item['quantity']}"
            parts.append(f"<li>{line}: {_money(item['amount_total'], item['currency'])}</li>")
        parts.append("</ul>")
    if session["status"] == "complete":
        done = "Your payment method is saved." if setup else "Your payment is complete."
        if session["payment_status"] == "unpaid":
            done = "Your bank debit is processing."
        parts.append(f'<p role="status">{done}</p></main></body></html>')
        return "".join(parts)
    if session["status"] == "expired":
        parts.append(
            '<p role="alert">This checkout page has expired. Nothing was charged.</p>'
            "</main></body></html>"
        )
        return "".join(parts)
    methods = session["payment_method_types"]
    if len(methods) > 1:
        links = []
        for choice, label in (("card", "Card"), ("us_bank_account", "US bank account")):
            if choice in methods:
                current = ' aria-current="page"' if choice == method else ""
                href = f"{CHECKOUT_PATH}{session['id']}?method={choice}"
                links.append(f'<a href="{href}"{current}>{label}</a>')
        parts.append(f'<nav aria-label="Payment method">{"".join(links)}</nav>')
    action = f"{CHECKOUT_PATH}{session['id']}"
    parts.append(f'<form method="post" action="{action}" novalidate>')
    parts.append(f'<input type="hidden" name="method" value="{method}">')
    if alert:
        parts.append(f'<p class="alert" role="alert">{html.escape(alert)}</p>')
    email = values.get("email", session["customer_email"] or "")
    parts.append(_field("email", "Email", errors, email, "email", kind="email"))
    if method == "card":
        legend = "Card information"
        fields = [
            _field("card_number", "Card number", errors, "", "cc-number", numeric=True),
            _field(
                "card_expiry",
                "Expiration (MM / YY)",
                errors,
                values.get("card_expiry", ""),
                "cc-exp",
                numeric=True,
            ),
            _field("card_cvc", "CVC", errors, "", "cc-csc", numeric=True),
            _field("card_name", "Cardholder name", errors, values.get("card_name", ""), "cc-name"),
        ]
        button = "Save card" if setup else f"Pay {amount}"
    else:
        legend = "US bank account"
        fields = [
            _field(
                "account_holder",
                "Account holder name",
                errors,
                values.get("account_holder", ""),
                "name",
            ),
            _field(
                "routing_number",
                "Routing number",
                errors,
                values.get("routing_number", ""),
                numeric=True,
            ),
            _field("account_number", "Account number", errors, numeric=True),
            _field("account_number_confirm", "Confirm account number", errors, numeric=True),
            f"<p>By continuing you authorize {name} to debit this account for "
            f"{'future payments' if setup else amount} through ACH.</p>",
        ]
        button = "Save bank account" if setup else f"Pay {amount}"
    parts.append(f"<fieldset><legend>{legend}</legend>{''.join(fields)}</fieldset>")
    parts.append(f'<button type="submit">{button}</button></form></main></body></html>')
    return "".join(parts)


def _luhn(number: str) -> bool:
    total = 0
    for i, digit in enumerate(reversed(number)):
        d = int(digit) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("34", "37"):
        return "amex"
    if number[:1] in ("5", "2"):
        return "mastercard"
    if number.startswith("6"):
        return "discover"
    return "unknown"


def _card_errors(form: dict[str, str]) -> tuple[dict[str, str], tuple[int, int] | None]:
    """Checks of the card form as Stripe's page makes them, before any charge."""
    errors = {}
    number = re.sub(r"[\s-]", "", form.get("card_number", ""))
    if not number:
        errors["card_number"] = "Your card number is incomplete."
    elif not number.isdigit() or len(number) < 13 or len(number) > 19 or not _luhn(number):
        errors["card_number"] = "Your card number is invalid."
    expiry = None
    match = re.fullmatch(r"\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*", form.get("card_expiry", ""))
    if not match:
        errors["card_expiry"] = "Your card's expiration date is incomplete."
    else:
        month, year = int(match.group(1)), int(match.group(2))
        year += 2000 if year < 100 else 0
        today = date.today()
        if not 1 <= month <= 12:
            errors["card_expiry"] = "Your card's expiration date is invalid."
        elif year < today.year:
            errors["card_expiry"] = "Your card's expiration year is in the past."
        elif (year, month) < (today.year, today.month):
            errors["card_expiry"] = "Your card's expiration date is in the past."
        else:
            expiry = (month, year)
    cvc = form.get("card_cvc", "").strip()
    cvc_length = 4 if _brand(number) == "amex" else 3
    if not (cvc.isdigit() and len(cvc) == cvc_length):
        errors["card_cvc"] = "Your card's security code is incomplete."
    if not form.get("card_name", "").strip():
        errors["card_name"] = "Enter the name on the card."
    return errors, expiry


def _bank_errors(form: dict[str, str]) -> dict[str, str]:
    errors = {}
    if not form.get("account_holder", "").strip():
        errors["account_holder"] = "Enter the account holder's name."
    routing = form.get("routing_number", "").strip()
    if not re.fullmatch(r"\d{9}", routing):
        errors["routing_number"] = "Your routing number is invalid."
    elif routing != TEST_ROUTING_NUMBER:
        errors["routing_number"] = f"Use the test routing number {TEST_ROUTING_NUMBER}."
    number = form.get("account_number", "").strip()
    if not re.fullmatch(r"\d{4,17}", number):
        errors["account_number"] = "Your account number is invalid."
    elif number not in TEST_BANK_ACCOUNTS:
        errors["account_number"] = "Use a test account number such as 000123456789."
    elif form.get("account_number_confirm", "").strip() != number:
        errors["account_number_confirm"] = "The account numbers don't match."
    return errors


def _html(status: int, body: str, headers: list[tuple[str, str]] | None = None) -> _Response:
    return _Response(
        status,
        body.encode(),
        [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        + (headers or []),
    )


# --------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "stripe-test-double"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        double: StripeDouble = self.server.double  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if parts.path.startswith("/v1/"):
            response = double._api(method, parts.path, parts.query, body, self.headers)
        else:
            response = double._page(method, parts.path, parts.query, body)
        if response is None:  # the answer is lost on the way back
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: tests read `Account.requests` instead


class StripeDouble:
    """TEST DOUBLE for Stripe (see the module docstring): a real HTTP server on a free
    loopback port in background threads, holding any number of independent accounts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._lock = threading.RLock()
        # One lock for state and for waiting on deliveries: no lock-order deadlocks.
        self._changed = threading.Condition(self._lock)
        self._accounts: list[Account] = []
        self._keys: dict[str, tuple[Account, str]] = {}  # key -> (account, "secret"|"restricted")
        self._sessions: dict[str, Account] = {}
        self._queue: queue.Queue[tuple[Account, str, float, int] | None] = queue.Queue()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The API base address (give it to the SDK) and the hosted page's origin."""
        assert self._server is not None, "start() the double first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StripeDouble:
        self._server = ThreadingHTTPServer(self._address, _Handler)
        self._server.daemon_threads = True
        self._server.double = self  # type: ignore[attr-defined]
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="stripe-double", daemon=True),
            threading.Thread(
                target=self._deliver_queued, name="stripe-double-webhooks", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=15)

    def __enter__(self) -> StripeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_account(
        self,
        business_name: str = "XYZ Plumbing",
        *,
        webhook_url: str | None = None,
        enabled_events: list[str] | None = None,
        secret_key: str | None = None,
        restricted_key: str | None = None,
        webhook_secret: str | None = None,
        live: bool = False,
        api_version: str = API_VERSION,
    ) -> Account:
        """A new, empty account with its own keys (generated unless given), webhook secret
        and endpoint URL (settable later: `account.webhook_url = …`). `live=True` gives
        sk_live_ keys and livemode objects (its page then refuses test cards, as Stripe's)."""
        with self._lock:
            account = Account(
                self,
                business_name=business_name,
                live=live,
                secret_key=secret_key,
                restricted_key=restricted_key,
                webhook_secret=webhook_secret,
                webhook_url=webhook_url,
                enabled_events=list(enabled_events or ["*"]),
                api_version=api_version,
            )
            for key, kind in (
                (account.secret_key, "secret"),
                (account.restricted_key, "restricted"),
            ):
                if key in self._keys:
                    raise ValueError("that key belongs to another account")
                self._keys[key] = (account, kind)
            self._accounts.append(account)
            return account

    def client(self, account: Account, api_key: str | None = None, **options: Any) -> Any:
        """The official SDK's client for an account, pointed at this double."""
        import stripe

        return stripe.StripeClient(
            api_key or account.secret_key, base_addresses={"api": self.url}, **options
        )

    # -- the API

    def _api(self, method: str, path: str, query: str, body: str, headers: Any) -> _Response | None:
        request_id = new_id("req_", 14)
        base_headers = [
            ("Content-Type", "application/json"),
            ("Request-Id", request_id),
            ("Stripe-Version", headers.get("Stripe-Version") or API_VERSION),
        ]

        def answer(status: int, payload: dict[str, Any], extra=()) -> _Response:
            return _Response(
                status, json.dumps(payload, indent=2).encode(), base_headers + list(extra)
            )

        with self._lock:
            try:
                account, key = self._authenticate(headers.get("Authorization"))
                route, ids = self._match(method, path)
                self._authorize(account, key, route)
            except StripeError as exc:
                return answer(exc.status, exc.body())
            idempotency_key = headers.get("Idempotency-Key") if method == "POST" else None

            def record(status: int, replayed: bool = False) -> None:
                account.requests.append(
                    ApiRequest(method, path, raw, idempotency_key, status, request_id, replayed)
                )

            raw: dict[str, Any] = {}
            if account._fail_next:  # Stripe failing before the request runs
                status = account._fail_next.pop(0)
                record(status)
                error = (
                    StripeError(429, "Request rate limit exceeded.", code="rate_limit")
                    if status == 429
                    else StripeError(status, "An unknown error occurred", error_type="api_error")
                )
                return answer(status, error.body())
            try:
                raw = parse_params(body if method == "POST" else query)
                saved = self._saved(account, idempotency_key, method, path, raw)
                if saved is None:
                    params = coerce(raw, route.schema)
                    check_expand(route.returns, params.get("expand") or [])
            except StripeError as exc:  # refused before running: not saved, as at Stripe
                record(exc.status)
                return answer(exc.status, exc.body())
            if saved is not None:
                record(saved.status, replayed=True)
                replay = [
                    ("Idempotent-Replayed", "true"),
                    ("Original-Request", saved.request_id),
                    ("Idempotency-Key", idempotency_key or ""),
                ]
                return _Response(saved.status, saved.body, base_headers + replay)
            account._request = (request_id, idempotency_key)
            try:
                status, payload = 200, route.handler(account, params, *ids)
            except StripeError as exc:
                status, payload = exc.status, exc.body()
            finally:
                account._request = (None, None)
            response = answer(status, payload)
            if idempotency_key:
                account._idempotent[idempotency_key] = _Saved(
                    method, path, raw, status, response.body, request_id
                )
                response.headers.append(("Idempotency-Key", idempotency_key))
            record(status)
            if account._drop_next:
                account._drop_next -= 1
                return None
            return response

    def _saved(
        self, account: Account, key: str | None, method: str, path: str, raw: dict[str, Any]
    ) -> _Saved | None:
        """The saved answer to replay for a repeated idempotency key (None for a new key);
        the key used again for another endpoint or other parameters is an error."""
        saved = account._idempotent.get(key) if key else None
        if saved is None:
            return None
        if (saved.method, saved.path) != (method, path):
            message = (
                "Keys for idempotent requests can only be used for the same endpoint they were "
                f"first used for ('{saved.method} {saved.path}' vs '{method} {path}'). Try "
                f"using a key other than '{key}' if you meant to execute a different request."
            )
            raise StripeError(400, message, error_type="idempotency_error")
        if saved.params != raw:
            message = (
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request."
            )
            raise StripeError(400, message, error_type="idempotency_error")
        return saved

    def _authenticate(self, authorization: str | None) -> tuple[Account, str]:
        key = ""
        if authorization and authorization.startswith("Bearer "):
            key = authorization[len("Bearer ") :].strip()
        elif authorization and authorization.startswith("Basic "):
            try:
                key = base64.b64decode(authorization[6:]).decode().split(":", 1)[0]
            except ValueError:
                key = ""
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        found = self._keys.get(key)
        if found is None:
            raise StripeError(401, f"Invalid API Key provided: {_mask(key)}")
        account, _kind = found
        if key in account.revoked_keys:
            raise StripeError(
                401, f"Expired API Key provided: {_mask(key)}", code="api_key_expired"
            )
        return account, key

    def _match(self, method: str, path: str) -> tuple[_Route, tuple[str, ...]]:
        for route in ROUTES:
            match = route.pattern.match(path)
            if match and route.method == method:
                return route, match.groups()
        raise StripeError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )

    def _authorize(self, account: Account, key: str, route: _Route) -> None:
        if self._keys[key][1] != "restricted":
            return
        granted = account.restricted_permissions.get(route.group, "none")
        if granted == "write" or (granted == "read" and route.access == "read"):
            return
        raise StripeError(
            403,
            f"The provided key '{_mask(key)}' does not have the required permissions for this "
            f"endpoint on account '{account.id}'. Having the "
            f"'{PERMISSION_GROUPS[route.group]}_{route.access}' permission would allow this "
            "request to continue.",
        )

    # -- the hosted page

    def _page(self, method: str, path: str, query: str, body: str) -> _Response:
        not_found = _html(404, "<!doctype html><title>Not found</title><h1>Page not found</h1>")
        if not path.startswith(CHECKOUT_PATH) or method not in ("GET", "POST"):
            return not_found
        session_id = path[len(CHECKOUT_PATH) :]
        with self._lock:
            account = self._sessions.get(session_id)
            if account is None:
                return not_found
            session = account._objects[session_id]
            account._expire_if_due(session)
            methods = session["payment_method_types"]
            if method == "GET":
                choice = parse_qs(query).get("method", [methods[0]])[0]
                choice = choice if choice in methods else methods[0]
                return _html(200, _page_html(account, session, choice, {}, None, {}))
            form = dict(parse_qsl(body, keep_blank_values=True))
            choice = form.get("method", "")
            if choice not in methods:
                return _html(
                    400, _page_html(account, session, methods[0], {}, "Choose how to pay.", {})
                )
            if session["status"] != "open":
                return _html(409, _page_html(account, session, choice, {}, None, {}))
            errors, alert = self._submit(account, session, choice, form)
            if errors or alert:
                keep = {
                    k: form.get(k, "")
                    for k in (
                        "email",
                        "card_expiry",
                        "card_name",
                        "account_holder",
                        "routing_number",
                    )
                }
                status = 402 if alert else 400
                return _html(status, _page_html(account, session, choice, errors, alert, keep))
            if session["success_url"]:
                target = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
                return _html(303, "", [("Location", target)])
            return _html(200, _page_html(account, session, choice, {}, None, {}))

    def _submit(
        self, account: Account, session: dict[str, Any], choice: str, form: dict[str, str]
    ) -> tuple[dict[str, str], str | None]:
        errors: dict[str, str] = {}
        email = form.get("email", "").strip() or (session["customer_email"] or "")
        if not email:
            errors["email"] = "Your email is incomplete."
        elif not _EMAIL.match(email):
            errors["email"] = "Your email address is invalid."
        if choice == "card":
            card_errors, expiry = _card_errors(form)
            errors |= card_errors
            if errors or expiry is None:
                return errors, None
            number = re.sub(r"[\s-]", "", form["card_number"])
            card = TEST_CARDS.get(number)
            if account.live and card is not None:
                message = "Your card was declined. Your request was in live mode, but used a known test card."
                card = TestCard(
                    card.brand, decline=("card_declined", "live_mode_test_card", message)
                )
            elif card is None:
                # Never a real card, even in the double's "live" mode.
                message = (
                    "Your card was declined. Your request was in test mode, but used a non test "
                    "(live) card. For a list of valid test cards, visit: "
                    "https://stripe.com/docs/testing."
                )
                card = TestCard(
                    _brand(number), decline=("card_declined", "test_mode_live_card", message)
                )
            alert = account._pay_by_card(
                session, card, number, expiry, form["card_name"].strip(), email
            )
            return {}, alert
        errors |= _bank_errors(form)
        if errors:
            return errors, None
        if account.live:
            return {}, "Your request was in live mode, but used a test bank account."
        account._pay_by_bank(
            session, form["account_number"].strip(), form["account_holder"].strip(), email
        )
        return {}, None

    # -- webhook deliveries

    def _enqueue(self, account: Account, event_id: str, delay: float, copies: int) -> None:
        with self._changed:
            self._in_flight += 1
        self._queue.put((account, event_id, time.monotonic() + delay, copies))

    def _deliver_queued(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            account, event_id, not_before, copies = item
            try:
                wait = not_before - time.monotonic()
                if wait > 0 and self._stopping.wait(wait):
                    return
                for _ in range(copies):
                    account.webhooks._send(event_id)
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise AssertionError(f"the Stripe test double's webhooks: not done in {timeout}s")


def stripe_double_fixture(scope: str = "module") -> Any:
    """A pytest fixture that runs one double for the scope:
    `stripe_double = stripe_double_fixture()` at the top of a test module or conftest."""

    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def stripe_double() -> Iterator[StripeDouble]:
        with StripeDouble() as double:
            yield double

    return stripe_double

"""Steps for paying through the Stripe gateway against the Stripe test double: linking the
double's account in the office, the double's hosted page, and webhooks delivered to the
in-process app (the double's own deliveries need a real server: the e2e tests use those)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from cryptography.fernet import Fernet

from portal.config import Settings
from tests.support.http import post_form
from tests.support.paying import future_expiry
from tests.support.stripe_double import Account, StripeDouble, signature_header

GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
GOOD_BANK = "000123456789"
FAILING_BANK = "000222222227"
ROUTING = "110000000"


def stripe_settings(settings: Settings, double: StripeDouble) -> Settings:
    """Settings whose Stripe calls reach the test double, with an encryption key."""
    return settings.with_(encryption_key=Fernet.generate_key().decode(), stripe_api_base=double.url)


async def link_account(
    admin: httpx.AsyncClient, account: Account, *, bank_debits: bool = False, enable: bool = True
) -> httpx.Response:
    """Unlink whatever is linked, link the double's account, turn card payments on."""
    await post_form(admin, "/office/settings/payments/unlink", {}, csrf_page="/office/settings")
    linked = await post_form(
        admin,
        "/office/settings/payments/stripe",
        {
            "stripe_secret_key": account.secret_key,
            "stripe_webhook_secret": account.webhook_secret,
            **({"stripe_bank_debits": "yes"} if bank_debits else {}),
        },
        csrf_page="/office/settings",
    )
    assert linked.status_code == 303, linked.text
    if enable:
        on = await post_form(
            admin,
            "/office/settings/payments_enabled",
            {"payments_enabled": "yes"},
            csrf_page="/office/settings",
        )
        assert on.status_code == 303, on.text
    return linked


async def pay_on_page(
    page_url: str,
    *,
    card: str = GOOD_CARD,
    bank_account: str | None = None,
    email: str = "jane@example.com",
) -> httpx.Response:
    """Fill the double's hosted page (card, or bank debit) and submit it; the answer is
    the double's (303 to the portal's return URL when paid)."""
    async with httpx.AsyncClient() as page:
        if bank_account:
            data = {
                "method": "us_bank_account",
                "email": email,
                "account_holder": "Jane Doe",
                "routing_number": ROUTING,
                "account_number": bank_account,
                "account_number_confirm": bank_account,
            }
        else:
            data = {
                "method": "card",
                "email": email,
                "card_number": card,
                "card_expiry": future_expiry(),
                "card_cvc": "123",
                "card_name": "Jane Doe",
            }
        return await page.post(page_url, data=data)


async def deliver(
    client: httpx.AsyncClient,
    account: Account,
    event: str | dict[str, Any],
    *,
    times: int = 1,
    signed_at: int | None = None,
    secret: str | None = None,
) -> list[httpx.Response]:
    """POST an event of the double to the business's webhook endpoint in the app, signed
    as Stripe signs it (the double's `Webhooks.deliver` does the same over the network)."""
    event_id = event if isinstance(event, str) else event["id"]
    payload = json.dumps(account.get(event_id), indent=2).encode()
    answers = []
    for _ in range(times):
        stamp = int(time.time()) if signed_at is None else signed_at
        header = signature_header(payload, secret or account.webhook_secret, stamp)
        answers.append(
            await client.post(
                "/payments/stripe/webhook",
                content=payload,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
        )
    return answers


def held_events(account: Account, *types: str) -> list[dict[str, Any]]:
    """The events the double holds for delivery (oldest first), of these types if given."""
    return [e for e in account.webhooks.held if not types or e["type"] in types]

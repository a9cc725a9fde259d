"""Linking the business's Stripe account (Settings › Customer Portal › Payments).

An administrator pastes a secret key (`sk_...`) or a restricted key (`rk_...`) and the
webhook endpoint's signing secret (`whsec_...`). The key is checked by a live call to
Stripe before anything is saved; both are stored sealed (portal.payments.vault) and never
shown again in full. One payment account per portal: linking the same Stripe account
again replaces its keys (a rolled key); another account needs an unlink first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from portal.config import Settings
from portal.db import activity, stripe_accounts
from portal.db import office_settings as rules
from portal.db.rows import TenantRow
from portal.payments.gateway import GatewayError
from portal.payments.stripe_gateway import KeyRefused, check_key
from portal.vault import VaultUnavailable, hint

SECRET_KEY = re.compile(r"^(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{8,250}$")
WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/=]{8,250}$")


@dataclass
class LinkResult:
    """Linked (the portal's account id), or why not: messages by field."""

    account_id: str = ""
    errors: dict[str, str] = field(default_factory=dict)


async def link(
    settings: Settings,
    tenant: TenantRow,
    staff_email: str,
    form: dict[str, str],
) -> LinkResult:
    """Check and link a Stripe account from the settings form."""
    secret = form.get("stripe_secret_key", "").strip()
    webhook_secret = form.get("stripe_webhook_secret", "").strip()
    bank_debits = form.get("stripe_bank_debits") == "yes"
    errors: dict[str, str] = {}
    if not SECRET_KEY.match(secret):
        errors["stripe_secret_key"] = (
            "Paste the secret key (sk_live_… or sk_test_…) or a restricted key (rk_…) "
            "from the Stripe Dashboard › Developers › API keys."
        )
    if not WEBHOOK_SECRET.match(webhook_secret):
        errors["stripe_webhook_secret"] = (
            "Paste the webhook endpoint's signing secret (whsec_…) from the Stripe "
            "Dashboard › Developers › Webhooks."
        )
    if errors:
        return LinkResult(errors=errors)
    if not settings.encryption_key:
        return LinkResult(
            errors={
                "stripe_secret_key": "The portal cannot store payment keys safely yet: "
                "PORTAL_ENCRYPTION_KEY is not set. Ask whoever runs the portal to set it."
            }
        )
    try:
        found = await check_key(settings, secret)
    except KeyRefused as exc:
        return LinkResult(errors={"stripe_secret_key": f"Stripe refused this key: {exc}"})
    except GatewayError:
        return LinkResult(
            errors={
                "stripe_secret_key": "We couldn't reach Stripe to check this key, so nothing "
                "was saved. Please try again in a few minutes."
            }
        )
    current = tenant["payment_account_id"]
    wanted = stripe_accounts.account_id_for(found.stripe_account_id, found.livemode)
    if current and current != wanted:
        return LinkResult(
            errors={
                "stripe_secret_key": "The portal has one payment account and one is linked "
                "already. Unlink it first, then link this one."
            }
        )
    try:
        account_id = await stripe_accounts.save(
            settings,
            tenant["id"],
            stripe_account_id=found.stripe_account_id,
            secret_key=secret,
            webhook_secret=webhook_secret,
            livemode=found.livemode,
            bank_debits=bank_debits,
        )
    except VaultUnavailable:
        return LinkResult(errors={"stripe_secret_key": "PORTAL_ENCRYPTION_KEY is not a valid key."})
    if account_id is None:
        return LinkResult(
            errors={
                "stripe_secret_key": "This Stripe account is linked to another business's "
                "portal. Use the keys of this business's own Stripe account."
            }
        )
    mode = "live" if found.livemode else "test mode"
    if current == account_id:
        await activity.record(
            tenant["id"],
            activity.Actor(staff_email),
            "payment_account.keys_replaced",
            "Stripe keys",
            new=f"{found.stripe_account_id} ({mode}), key {hint(secret)}",
        )
        return LinkResult(account_id=account_id)
    await rules.link_payment_account(tenant["id"], account_id)
    await activity.record(
        tenant["id"],
        activity.Actor(staff_email),
        "payment_account.linked",
        "Payment account",
        new=f"Stripe {found.stripe_account_id} ({mode})",
    )
    return LinkResult(account_id=account_id)

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
from portal.forms import Checked
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


@dataclass(frozen=True)
class StripeKeys:
    """The keys pasted in the Link Stripe form, well-formed (not yet checked with Stripe)."""

    secret_key: str
    webhook_secret: str
    bank_debits: bool


def clean_secret_key(value: str) -> tuple[str, str | None]:
    """A secret key (`sk_live_…`, `sk_test_…`) or a restricted key (`rk_…`), as pasted."""
    key = value.strip()
    if not SECRET_KEY.match(key):
        return key, (
            "Paste the secret key (sk_live_… or sk_test_…) or a restricted key (rk_…) "
            "from the Stripe Dashboard › Developers › API keys."
        )
    return key, None


def clean_webhook_secret(value: str) -> tuple[str, str | None]:
    """The webhook endpoint's signing secret (`whsec_…`), as pasted."""
    secret = value.strip()
    if not WEBHOOK_SECRET.match(secret):
        return secret, (
            "Paste the webhook endpoint's signing secret (whsec_…) from the Stripe "
            "Dashboard › Developers › Webhooks."
        )
    return secret, None


def check_keys(form: dict[str, str]) -> Checked[StripeKeys | None]:
    """Check the Link Stripe form (`forms.Checked`): the keys (None while there are
    problems) and the problems by field. No values to show again: secrets are never
    shown, the form comes back empty."""
    secret, secret_problem = clean_secret_key(form.get("stripe_secret_key", ""))
    webhook_secret, webhook_problem = clean_webhook_secret(form.get("stripe_webhook_secret", ""))
    problems = {
        field: problem
        for field, problem in (
            ("stripe_secret_key", secret_problem),
            ("stripe_webhook_secret", webhook_problem),
        )
        if problem
    }
    if problems:
        return Checked(None, problems)
    return Checked(StripeKeys(secret, webhook_secret, form.get("stripe_bank_debits") == "yes"))


async def link(
    settings: Settings,
    tenant: TenantRow,
    staff_email: str,
    form: dict[str, str],
) -> LinkResult:
    """Check and link a Stripe account from the settings form: the form first
    (`check_keys`), then the key with Stripe."""
    checked = check_keys(form)
    keys = checked.clean
    if keys is None:
        return LinkResult(errors=checked.problems)
    secret, webhook_secret = keys.secret_key, keys.webhook_secret
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
            bank_debits=keys.bank_debits,
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

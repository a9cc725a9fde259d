"""Linked Stripe accounts (tables.StripeAccount) and the inbox of Stripe webhooks
(tables.StripeEvent). Keys are stored sealed (portal.payments.vault) and opened only to
call Stripe or verify a webhook; the office sees `key_hint`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from portal import vault
from portal.config import Settings
from portal.db.engine import current_engine
from portal.db.tables import StripeAccount, StripeEvent

# The portal's payment account ids for Stripe: "stripe_test_acct_..." or
# "stripe_live_acct_...": test and live mode are separate worlds at Stripe (no object of
# one exists in the other), and the id alone says whether a payment was a test.
PREFIX = "stripe_"
EVENT_LEASE = timedelta(seconds=60)
MAX_EVENT_ATTEMPTS = 8


def account_id_for(stripe_account_id: str, livemode: bool) -> str:
    """The portal's payment account id of a Stripe account in test or live mode."""
    return f"{PREFIX}{'live' if livemode else 'test'}_{stripe_account_id}"


def is_stripe(account_id: str) -> bool:
    return account_id.startswith(PREFIX)


async def save(
    settings: Settings,
    tenant_id: int,
    *,
    stripe_account_id: str,
    secret_key: str,
    webhook_secret: str,
    livemode: bool,
    bank_debits: bool,
) -> str | None:
    """Store (or, linking the same Stripe account again, replace) the account's keys,
    sealed. Returns the portal's account id, or None when another business linked that
    Stripe account (one account's webhooks and money belong to one portal)."""
    account_id = account_id_for(stripe_account_id, livemode)
    sealed_key = vault.seal(settings, secret_key)
    sealed_webhook = vault.seal(settings, webhook_secret)
    values: dict[Any, Any] = {
        StripeAccount.secret_key: sealed_key,
        StripeAccount.webhook_secret: sealed_webhook,
        StripeAccount.key_hint: vault.hint(secret_key),
        StripeAccount.livemode: livemode,
        StripeAccount.bank_debits: bank_debits,
        StripeAccount.updated_at: datetime.now(UTC),
    }
    existing = (
        await StripeAccount.select(StripeAccount.tenant)
        .where(StripeAccount.account_id == account_id)
        .first()
        .run()
    )
    if existing is not None:
        if existing["tenant"] != tenant_id:
            return None
        await StripeAccount.update(values).where(StripeAccount.account_id == account_id).run()
        return account_id
    await StripeAccount.insert(
        StripeAccount(
            tenant=tenant_id,
            account_id=account_id,
            stripe_account_id=stripe_account_id,
            secret_key=sealed_key,
            webhook_secret=sealed_webhook,
            key_hint=vault.hint(secret_key),
            livemode=livemode,
            bank_debits=bank_debits,
        )
    ).run()
    return account_id


async def credentials(settings: Settings, account_id: str) -> dict[str, Any] | None:
    """The account's keys, opened (None if no such Stripe account was ever linked)."""
    row = await StripeAccount.select().where(StripeAccount.account_id == account_id).first().run()
    if row is None:
        return None
    row["secret_key"] = vault.open_sealed(settings, row["secret_key"])
    row["webhook_secret"] = vault.open_sealed(settings, row["webhook_secret"])
    return row


async def shown(account_id: str) -> dict[str, Any] | None:
    """What the office may see of a linked account: never a key in full."""
    if not is_stripe(account_id):
        return None
    return (
        await StripeAccount.select(
            StripeAccount.stripe_account_id,
            StripeAccount.key_hint,
            StripeAccount.livemode,
            StripeAccount.bank_debits,
            StripeAccount.updated_at,
        )
        .where(StripeAccount.account_id == account_id)
        .first()
        .run()
    )


async def webhook_secrets(
    settings: Settings, tenant_id: int, account_ids: list[str]
) -> list[tuple[str, str]]:
    """(account id, webhook secret) of the business's Stripe accounts among `account_ids`,
    in that order (the linked one first)."""
    wanted = [a for a in account_ids if is_stripe(a)]
    if not wanted:
        return []
    rows = (
        await StripeAccount.select(StripeAccount.account_id, StripeAccount.webhook_secret)
        .where((StripeAccount.tenant == tenant_id) & StripeAccount.account_id.is_in(wanted))
        .run()
    )
    sealed = {r["account_id"]: r["webhook_secret"] for r in rows}
    return [(a, vault.open_sealed(settings, sealed[a])) for a in wanted if a in sealed]


# ------------------------------------------------------------------ the webhook inbox


async def record_event(
    tenant_id: int, account_id: str, event_id: str, event_type: str, object_id: str
) -> int | None:
    """Keep a verified event once: its row id, or None if it was received before."""
    rows = (
        await StripeEvent.insert(
            StripeEvent(
                tenant=tenant_id,
                account_id=account_id,
                event_id=event_id[:80],
                type=event_type[:80],
                object_id=object_id[:80],
            )
        )
        .on_conflict(target=(StripeEvent.tenant, StripeEvent.event_id), action="DO NOTHING")
        .returning(StripeEvent.id)
        .run()
    )
    return rows[0]["id"] if rows else None


async def claim_events(limit: int = 20, only: int | None = None) -> list[dict[str, Any]]:
    """Lease unprocessed events (oldest first; `only`: that one) and count an attempt."""
    moment = datetime.now(UTC)
    skip_locked = "" if current_engine().engine_type == "sqlite" else "FOR UPDATE SKIP LOCKED"
    one = "AND id = {}" if only is not None else ""
    args: list[Any] = [moment + EVENT_LEASE, MAX_EVENT_ATTEMPTS, moment]
    if only is not None:
        args.append(only)
    args.append(limit)
    rows: list[dict[str, Any]] = await StripeEvent.raw(
        f"""UPDATE stripe_event SET locked_until = {{}}, attempts = attempts + 1
        WHERE id IN (
            SELECT id FROM stripe_event
            WHERE processed_at IS NULL AND attempts < {{}}
              AND (locked_until IS NULL OR locked_until < {{}}) {one}
            ORDER BY id LIMIT {{}} {skip_locked}
        )
        RETURNING id, tenant, account_id, event_id, type, object_id, attempts""",
        *args,
    ).run()
    return rows


async def finish_event(row_id: int, error: str = "") -> None:
    """Processed (or, with `error`, to be tried again after its lease)."""
    if error:
        await (
            StripeEvent.update({StripeEvent.last_error: error[:300]})
            .where(StripeEvent.id == row_id)
            .run()
        )
        return
    await (
        StripeEvent.update(
            {StripeEvent.processed_at: datetime.now(UTC), StripeEvent.locked_until: None}
        )
        .where(StripeEvent.id == row_id)
        .run()
    )

"""Passkeys (WebAuthn credentials) of customer accounts and their one-time challenges.
Every function is scoped to one business."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from portal.db.engine import transaction
from portal.db.tables import Passkey, PasskeyChallenge

CHALLENGE_MINUTES = 5


def now() -> datetime:
    return datetime.now(UTC)


async def remember_challenge(
    tenant_id: int, purpose: str, challenge_hash: str, account_id: int | None = None
) -> None:
    """Keep the hash of a challenge handed to a browser, for a few minutes; expired ones
    of the business are cleared on the way."""
    moment = now()
    async with transaction():
        await (
            PasskeyChallenge.delete()
            .where((PasskeyChallenge.tenant == tenant_id) & (PasskeyChallenge.expires_at < moment))
            .run()
        )
        await PasskeyChallenge.insert(
            PasskeyChallenge(
                tenant=tenant_id,
                account=account_id,
                purpose=purpose,
                challenge_hash=challenge_hash,
                expires_at=moment + timedelta(minutes=CHALLENGE_MINUTES),
            )
        ).run()


async def take_challenge(
    tenant_id: int, purpose: str, challenge_hash: str, account_id: int | None = None
) -> bool:
    """Use a challenge once: True if it was handed out here, for this purpose (and
    account), and has not expired or been used."""
    where = (
        (PasskeyChallenge.tenant == tenant_id)
        & (PasskeyChallenge.purpose == purpose)
        & (PasskeyChallenge.challenge_hash == challenge_hash)
        & (PasskeyChallenge.expires_at > now())
    )
    if account_id is not None:
        where = where & (PasskeyChallenge.account == account_id)
    taken = await PasskeyChallenge.delete().where(where).returning(PasskeyChallenge.id).run()
    return bool(taken)


async def passkeys_of(tenant_id: int, account_id: int) -> list[dict[str, Any]]:
    """The account's passkeys, oldest first."""
    return (
        await Passkey.select(
            Passkey.id,
            Passkey.credential_id,
            Passkey.name,
            Passkey.transports,
            Passkey.created_at,
            Passkey.last_used_at,
        )
        .where((Passkey.tenant == tenant_id) & (Passkey.account == account_id))
        .order_by(Passkey.id)
        .run()
    )


async def add_passkey(
    tenant_id: int,
    account_id: int,
    *,
    credential_id: str,
    public_key: str,
    sign_count: int,
    transports: str,
    name: str,
) -> int:
    rows = await Passkey.insert(
        Passkey(
            tenant=tenant_id,
            account=account_id,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            transports=transports[:200],
            name=name[:120],
        )
    ).run()
    return int(rows[0]["id"])


async def passkey_by_credential(tenant_id: int, credential_id: str) -> dict[str, Any] | None:
    """The passkey with this credential id at this business, with its account's email."""
    return (
        await Passkey.select(
            Passkey.id,
            Passkey.account,
            Passkey.public_key,
            Passkey.sign_count,
            Passkey.account.email.as_alias("email"),
            Passkey.account.confirmed_at.as_alias("confirmed_at"),
        )
        .where((Passkey.tenant == tenant_id) & (Passkey.credential_id == credential_id))
        .first()
        .run()
    )


async def passkey_used(passkey_id: int, sign_count: int) -> None:
    await (
        Passkey.update({Passkey.sign_count: sign_count, Passkey.last_used_at: now()})
        .where(Passkey.id == passkey_id)
        .run()
    )


async def remove_passkey(tenant_id: int, account_id: int, passkey_id: int) -> bool:
    """Remove one of the account's passkeys; False if it has no such passkey."""
    removed = (
        await Passkey.delete()
        .where(
            (Passkey.id == passkey_id)
            & (Passkey.tenant == tenant_id)
            & (Passkey.account == account_id)
        )
        .returning(Passkey.id)
        .run()
    )
    return bool(removed)

"""Customer portal accounts: invitations, confirmation, sign-in, password reset.

Every function is scoped to one business. Tokens are stored hashed, used once,
bound to business, account and purpose. Emails are queued in the same
transaction as the change that causes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.auth.tokens import new_token, token_hash
from portal.config import Settings
from portal.db import events, fast
from portal.db.engine import current_engine, transaction
from portal.db.tables import AccountRequest, AuthToken, CustomerEmail, PortalAccount
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email


def now() -> datetime:
    return datetime.now(UTC)


async def customers_for_email(tenant_id: int, email: str) -> list[dict[str, Any]]:
    """The business's customer records that list `email` (what an account may see).
    Asked on every signed-in request: one plain SQL read."""
    return await fast.fetch(
        """SELECT c.id, c.name, c.kind, c.external_id FROM customer c
        WHERE c.tenant = {} AND c.id IN (
            SELECT ce.customer FROM customer_email ce WHERE ce.tenant = {} AND ce.email = {})
        ORDER BY c.name""",
        tenant_id,
        tenant_id,
        email,
    )


async def email_on_record(tenant_id: int, email: str) -> bool:
    """True if `email` is on one of this business's customer records."""
    return (
        await CustomerEmail.exists()
        .where((CustomerEmail.tenant == tenant_id) & (CustomerEmail.email == email))
        .run()
    )


async def account_by_email(tenant_id: int, email: str) -> dict[str, Any] | None:
    return (
        await PortalAccount.select()
        .where((PortalAccount.tenant == tenant_id) & (PortalAccount.email == email))
        .first()
        .run()
    )


async def _new_link_token(tenant_id: int, account_id: int, purpose: str, hours: int) -> str:
    token, digest = new_token()
    await AuthToken.insert(
        AuthToken(
            tenant=tenant_id,
            account=account_id,
            purpose=purpose,
            token_hash=digest,
            expires_at=now() + timedelta(hours=hours),
        )
    ).run()
    return token


async def request_invitation(settings: Settings, tenant: dict[str, Any], email: str) -> bool:
    """Queue a confirmation email if `email` is on a customer record of this business
    and has no confirmed account. Returns whether an email was queued (never shown)."""
    async with transaction():
        if not await email_on_record(tenant["id"], email):
            return False
        account = await account_by_email(tenant["id"], email)
        if account is not None and account["confirmed_at"] is not None:
            return False
        if account is None:
            rows = await PortalAccount.insert(PortalAccount(tenant=tenant["id"], email=email)).run()
            account_id = rows[0]["id"]
        else:
            account_id = account["id"]
        token = await _new_link_token(
            tenant["id"], account_id, "confirm", settings.confirm_token_hours
        )
        await queue_email(
            settings,
            tenant,
            email,
            "confirm",
            {
                "link": portal_url(settings, tenant["host"], f"/confirm?token={token}"),
                "hours": settings.confirm_token_hours,
            },
        )
    return True


async def request_reset(settings: Settings, tenant: dict[str, Any], email: str) -> bool:
    """Queue a password-reset email if `email` has a confirmed account here."""
    async with transaction():
        account = await account_by_email(tenant["id"], email)
        if account is None or account["confirmed_at"] is None:
            return False
        if not await email_on_record(tenant["id"], email):
            return False
        token = await _new_link_token(
            tenant["id"], account["id"], "reset", settings.reset_token_hours
        )
        await queue_email(
            settings,
            tenant,
            email,
            "reset",
            {
                "link": portal_url(settings, tenant["host"], f"/reset?token={token}"),
                "hours": settings.reset_token_hours,
            },
        )
    return True


async def record_request(tenant_id: int, kind: str, email: str) -> None:
    """Record an invitation ("invite") or reset ("reset") request for the worker: one
    INSERT, the same whatever the email (nothing here looks the email up)."""
    await AccountRequest.insert(AccountRequest(tenant=tenant_id, kind=kind, email=email)).run()


async def take_request() -> dict[str, Any] | None:
    """Remove the oldest recorded request and return it; call inside the transaction that
    answers it, so a worker that dies half-way leaves the request for another.
    PostgreSQL: two workers skip each other's row; SQLite: one writer at a time."""
    skip_locked = "" if current_engine().engine_type == "sqlite" else "FOR UPDATE SKIP LOCKED"
    rows = await AccountRequest.raw(
        f"""DELETE FROM account_request WHERE id = (
            SELECT id FROM account_request ORDER BY id LIMIT 1 {skip_locked})
        RETURNING id, tenant, kind, email"""
    ).run()
    return rows[0] if rows else None


async def drop_request(request_id: int) -> None:
    """Forget a request that could not be answered."""
    await AccountRequest.delete().where(AccountRequest.id == request_id).run()


@dataclass
class LinkCheck:
    """What a link's token is: usable (with its account) or why not."""

    problem: str | None  # None | "unknown" | "used" | "expired"
    token_id: int | None = None
    account_id: int | None = None
    email: str = ""


async def check_link(tenant_id: int, purpose: str, token: str) -> LinkCheck:
    """Look a link's token up without using it (mail scanners open links)."""
    if not token or len(token) > 100:
        return LinkCheck("unknown")
    row = (
        await AuthToken.select(
            AuthToken.id,
            AuthToken.account,
            AuthToken.expires_at,
            AuthToken.used_at,
            AuthToken.account.email.as_alias("email"),
        )
        .where(
            (AuthToken.token_hash == token_hash(token))
            & (AuthToken.tenant == tenant_id)
            & (AuthToken.purpose == purpose)
        )
        .first()
        .run()
    )
    if row is None:
        return LinkCheck("unknown")
    if row["used_at"] is not None:
        return LinkCheck("used")
    if row["expires_at"] <= now():
        return LinkCheck("expired")
    return LinkCheck(None, row["id"], row["account"], row["email"])


async def use_link(tenant_id: int, purpose: str, token: str, password_hash: str) -> LinkCheck:
    """Use a confirm/reset token once: set the password, confirm the account and retire
    every other outstanding token of the account. Two racing uses: one wins."""
    async with transaction():
        check = await check_link(tenant_id, purpose, token)
        if check.problem:
            return check
        moment = now()
        claimed = (
            await AuthToken.update({AuthToken.used_at: moment})
            .where((AuthToken.id == check.token_id) & AuthToken.used_at.is_null())
            .returning(AuthToken.id)
            .run()
        )
        if not claimed:
            return LinkCheck("used")
        await _set_password(check.account_id, password_hash, moment)  # type: ignore[arg-type]
        confirmed = await (
            PortalAccount.update({PortalAccount.confirmed_at: moment})
            .where((PortalAccount.id == check.account_id) & PortalAccount.confirmed_at.is_null())
            .returning(PortalAccount.id)
            .run()
        )
        if confirmed:  # the first time only: a reset of a registered account is not news
            await events.emit(tenant_id, "account.registered", {"account_id": check.account_id})
    return check


async def _set_password(account_id: int, password_hash: str, moment: datetime) -> None:
    await (
        PortalAccount.update(
            {PortalAccount.password_hash: password_hash, PortalAccount.password_changed_at: moment}
        )
        .where(PortalAccount.id == account_id)
        .run()
    )
    # A new password retires every link sent before it.
    await (
        AuthToken.update({AuthToken.used_at: moment})
        .where((AuthToken.account == account_id) & AuthToken.used_at.is_null())
        .run()
    )


async def change_password(account_id: int, password_hash: str) -> None:
    """Set a new password (the caller checked the current one) and retire open links."""
    async with transaction():
        await _set_password(account_id, password_hash, now())


async def update_hash(account_id: int, password_hash: str) -> None:
    """Store a rehash made with today's parameters (at sign-in)."""
    await (
        PortalAccount.update({PortalAccount.password_hash: password_hash})
        .where(PortalAccount.id == account_id)
        .run()
    )


async def record_sign_in(account_id: int) -> None:
    await (
        PortalAccount.update({PortalAccount.last_sign_in_at: now()})
        .where(PortalAccount.id == account_id)
        .run()
    )

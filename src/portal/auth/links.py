"""Links sent by email: a customer's confirmation (invitation) and password-reset links,
and a staff member's password-reset link — who may get one, the token, the email
queued with it, and using a link once.

Tokens are stored hashed (`tokens.py`), used once, bound to business and account (or
staff member), and expire; a new password retires every link sent before it. Each
email is queued in the same transaction as its token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.auth.tokens import new_token, token_hash
from portal.config import Settings
from portal.db import accounts, events
from portal.db import staff as staff_db
from portal.db.engine import transaction
from portal.db.tables import AuthToken, PortalAccount, StaffToken
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email

MAX_TOKEN_LENGTH = 100


def now() -> datetime:
    return datetime.now(UTC)


# --- customers: invitation (confirm) and reset links ------------------------------------------


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
        if not await accounts.email_on_record(tenant["id"], email):
            return False
        account = await accounts.account_by_email(tenant["id"], email)
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
                "link": portal_url(settings, tenant, f"/confirm?token={token}"),
                "hours": settings.confirm_token_hours,
            },
        )
    return True


async def request_reset(settings: Settings, tenant: dict[str, Any], email: str) -> bool:
    """Queue a password-reset email if `email` has a confirmed account here."""
    async with transaction():
        account = await accounts.account_by_email(tenant["id"], email)
        if account is None or account["confirmed_at"] is None:
            return False
        if not await accounts.email_on_record(tenant["id"], email):
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
                "link": portal_url(settings, tenant, f"/reset?token={token}"),
                "hours": settings.reset_token_hours,
            },
        )
    return True


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
        await accounts.set_password(check.account_id, password_hash, moment)  # type: ignore[arg-type]
        confirmed = await (
            PortalAccount.update({PortalAccount.confirmed_at: moment})
            .where((PortalAccount.id == check.account_id) & PortalAccount.confirmed_at.is_null())
            .returning(PortalAccount.id)
            .run()
        )
        if confirmed:  # the first time only: a reset of a registered account is not news
            await events.emit(tenant_id, "account.registered", {"account_id": check.account_id})
    return check


# --- office staff: reset links sent by an administrator ----------------------------------------


async def send_reset_link(
    settings: Settings, tenant: dict[str, Any], member: dict[str, Any], sent_by: dict[str, str]
) -> None:
    """Queue a password-reset email to staff member `member`, sent by administrator
    `sent_by` (their name and email, shown in the email)."""
    token, digest = new_token()
    async with transaction():
        await StaffToken.insert(
            StaffToken(
                tenant=tenant["id"],
                staff=member["id"],
                purpose="reset",
                token_hash=digest,
                sent_by=sent_by["email"],
                expires_at=now() + timedelta(hours=settings.reset_token_hours),
            )
        ).run()
        await queue_email(
            settings,
            tenant,
            member["email"],
            "staff_reset",
            {
                "link": portal_url(settings, tenant, f"/office/reset?token={token}"),
                "hours": settings.reset_token_hours,
                "name": member["name"],
                "sent_by": sent_by["name"] or sent_by["email"],
            },
        )


@dataclass
class StaffLink:
    """What a reset link's token is: usable (with its staff member) or why not."""

    problem: str | None  # None | "unknown" | "used" | "expired"
    token_id: int | None = None
    staff_id: int | None = None
    email: str = ""


async def check_reset_link(tenant_id: int, token: str) -> StaffLink:
    """Look a reset link's token up without using it (mail scanners open links)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return StaffLink("unknown")
    row = (
        await StaffToken.select(
            StaffToken.id,
            StaffToken.staff,
            StaffToken.expires_at,
            StaffToken.used_at,
            StaffToken.staff.email.as_alias("email"),
        )
        .where(
            (StaffToken.token_hash == token_hash(token))
            & (StaffToken.tenant == tenant_id)
            & (StaffToken.purpose == "reset")
        )
        .first()
        .run()
    )
    if row is None:
        return StaffLink("unknown")
    if row["used_at"] is not None:
        return StaffLink("used")
    if row["expires_at"] <= now():
        return StaffLink("expired")
    return StaffLink(None, row["id"], row["staff"], row["email"])


async def use_reset_link(tenant_id: int, token: str, password_hash: str) -> StaffLink:
    """Use a reset link once: set the password and retire the member's other links. Two
    racing uses: one wins, the other is told the link was used."""
    async with transaction():
        link = await check_reset_link(tenant_id, token)
        if link.problem:
            return link
        moment = now()
        claimed = (
            await StaffToken.update({StaffToken.used_at: moment})
            .where((StaffToken.id == link.token_id) & StaffToken.used_at.is_null())
            .returning(StaffToken.id)
            .run()
        )
        if not claimed:
            return StaffLink("used")
        await staff_db.set_password(link.staff_id, password_hash, moment)  # type: ignore[arg-type]
    return link

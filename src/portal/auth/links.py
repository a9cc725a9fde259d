"""Links sent by email: a customer's confirmation (invitation), password-reset and
sign-in links, and a staff member's password-reset link — who may get one, the token, the email
queued with it, and using a link once.

Tokens are stored hashed (`tokens.py`), used once, bound to business and account (or
staff member), and expire; a new password retires every link sent before it, but a new
link never cancels an older one (mail scanners and impatient people ask twice). Each
email is queued in the same transaction as its token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from portal import logs
from portal.auth.tokens import new_token, token_hash
from portal.config import Settings
from portal.db import accounts, activity
from portal.db import staff as staff_db
from portal.db.engine import transaction
from portal.db.events import emit
from portal.db.rows import TenantRow
from portal.db.tables import AuthToken, PortalAccount, StaffToken
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email

MAX_TOKEN_LENGTH = 100


def now() -> datetime:
    return datetime.now(UTC)


# --- customers: invitation (confirm) and reset links ------------------------------------------


SIGN_IN_LINK_MINUTES = 15


async def _new_link_token(
    tenant_id: int, account_id: int, purpose: str, lifetime: timedelta
) -> str:
    """A new link token. Older links of the account stay valid until they expire or one
    of them is used: a mail scanner that asks twice, or a customer who clicks "send me a
    new link" before the first email arrived, must not kill the link they then open."""
    token, digest = new_token()
    await AuthToken.insert(
        AuthToken(
            tenant=tenant_id,
            account=account_id,
            purpose=purpose,
            token_hash=digest,
            expires_at=now() + lifetime,
        )
    ).run()
    return token


async def _send_confirm_link(
    settings: Settings,
    tenant: TenantRow,
    email: str,
    account: dict[str, Any] | None,
    template: str,
) -> None:
    """Queue `template` ("confirm" or "finish_account") with a create-your-password link,
    making the unconfirmed account the link belongs to if there is none yet."""
    if account is None:
        account_id = await accounts.unconfirmed_account(tenant["id"], email)
    else:
        account_id = account["id"]
    hours = settings.confirm_token_hours
    token = await _new_link_token(tenant["id"], account_id, "confirm", timedelta(hours=hours))
    link = portal_url(settings, tenant, f"/confirm?token={token}")
    await queue_email(settings, tenant, email, template, {"link": link, "hours": hours})


async def _send_already_registered(settings: Settings, tenant: TenantRow, email: str) -> None:
    """The email for a registered customer who asked for an invitation: sign in, or reset."""
    await queue_email(
        settings,
        tenant,
        email,
        "already_registered",
        {
            "sign_in_link": portal_url(settings, tenant, "/sign-in"),
            "forgot_link": portal_url(settings, tenant, "/forgot"),
        },
    )


async def request_invitation(settings: Settings, tenant: TenantRow, email: str) -> str:
    """Answer an invitation request for `email`: a confirmation link if it is on a customer
    record of this business without a confirmed account, "you already have an account"
    if it has one, else nothing. Returns which email was queued ("" for none; never shown)."""
    async with transaction():
        if not await accounts.email_on_record(tenant["id"], email):
            return ""
        account = await accounts.account_by_email(tenant["id"], email)
        if account is not None and account["confirmed_at"] is not None:
            await _send_already_registered(settings, tenant, email)
            return "already_registered"
        await _send_confirm_link(settings, tenant, email, account, "confirm")
    return "confirm"


async def request_reset(settings: Settings, tenant: TenantRow, email: str) -> str:
    """Answer a reset request: a reset link for a confirmed account here, "finish creating
    your account" for an email on a record that never registered, else nothing."""
    async with transaction():
        if not await accounts.email_on_record(tenant["id"], email):
            return ""
        account = await accounts.account_by_email(tenant["id"], email)
        if account is None or account["confirmed_at"] is None:
            await _send_confirm_link(settings, tenant, email, account, "finish_account")
            return "finish_account"
        hours = settings.reset_token_hours
        token = await _new_link_token(tenant["id"], account["id"], "reset", timedelta(hours=hours))
        await queue_email(
            settings,
            tenant,
            email,
            "reset",
            {"link": portal_url(settings, tenant, f"/reset?token={token}"), "hours": hours},
        )
    return "reset"


async def request_sign_in_link(settings: Settings, tenant: TenantRow, email: str) -> str:
    """Answer "email me a sign-in link": a single-use link for 15 minutes for a confirmed
    account here, "finish creating your account" for an email on a record that never
    registered, else nothing."""
    async with transaction():
        if not await accounts.email_on_record(tenant["id"], email):
            return ""
        account = await accounts.account_by_email(tenant["id"], email)
        if account is None or account["confirmed_at"] is None:
            await _send_confirm_link(settings, tenant, email, account, "finish_account")
            return "finish_account"
        token = await _new_link_token(
            tenant["id"], account["id"], "signin", timedelta(minutes=SIGN_IN_LINK_MINUTES)
        )
        await queue_email(
            settings,
            tenant,
            email,
            "sign_in_link",
            {
                "link": portal_url(settings, tenant, f"/sign-in/email?token={token}"),
                "minutes": SIGN_IN_LINK_MINUTES,
            },
        )
    return "sign_in_link"


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


# What using a customer's link does, in the event log: (event, message) by purpose.
PASSWORD_EVENTS = {
    "confirm": ("password.created", "password created from the confirmation link"),
    "reset": ("password.reset", "password changed from a reset link"),
}


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
        confirmed = (
            await PortalAccount.update({PortalAccount.confirmed_at: moment})
            .where((PortalAccount.id == check.account_id) & PortalAccount.confirmed_at.is_null())
            .returning(PortalAccount.id)
            .run()
        )
        if confirmed:
            await emit(tenant_id, "account.registered", {"account_id": check.account_id})
    name, words = PASSWORD_EVENTS[purpose]
    logs.event(name, words, tenant=tenant_id, actor=f"customer:{check.account_id}", area="customer")
    return check


async def use_sign_in_link(tenant_id: int, token: str) -> LinkCheck:
    """Use a sign-in link once (the button on its page, never the GET). Two racing uses:
    one wins. The account's other links stay as they are."""
    async with transaction():
        check = await check_link(tenant_id, "signin", token)
        if check.problem:
            return check
        claimed = (
            await AuthToken.update({AuthToken.used_at: now()})
            .where((AuthToken.id == check.token_id) & AuthToken.used_at.is_null())
            .returning(AuthToken.id)
            .run()
        )
    if not claimed:
        return LinkCheck("used")
    logs.event(
        "signin.link_used",
        "signed in with an emailed link",
        tenant=tenant_id,
        actor=f"customer:{check.account_id}",
        area="customer",
    )
    return check


# --- office staff: reset links sent by an administrator ----------------------------------------


async def send_reset_link(
    settings: Settings,
    tenant: TenantRow,
    member: dict[str, Any],
    sent_by: dict[str, str],
    *,
    welcome: bool = False,
) -> None:
    """Queue a password-reset email to staff member `member`, sent by administrator
    `sent_by` (their name and email, shown in the email); `welcome`: the first one, to a
    member just added, who chooses their first password with it (its activity entry is
    the member's being added)."""
    token, digest = new_token()
    async with transaction():
        if not welcome:
            await activity.record(
                tenant["id"],
                activity.Actor(sent_by["email"]),
                "staff.reset_link_sent",
                staff_db.who(member),
            )
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
                "welcome": welcome,
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
            StaffToken.staff.disabled_at.as_alias("disabled_at"),
        )
        .where(
            (StaffToken.token_hash == token_hash(token))
            & (StaffToken.tenant == tenant_id)
            & (StaffToken.purpose == "reset")
        )
        .first()
        .run()
    )
    if row is None or row["disabled_at"] is not None:  # a disabled member's links stop working
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
    logs.event(
        "password.reset",
        "password changed from a reset link",
        tenant=tenant_id,
        actor=f"staff:{link.staff_id}",
        area="staff",
    )
    return link

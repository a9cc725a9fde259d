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
from portal.db import fast
from portal.db.engine import current_engine, transaction
from portal.db.events import emit
from portal.db.tables import (
    AccountRequest,
    AuthToken,
    CustomerEmail,
    PortalAccount,
    Session,
    SignInRecord,
)
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
    tenant: dict[str, Any],
    email: str,
    account: dict[str, Any] | None,
    template: str,
) -> None:
    """Queue `template` ("confirm" or "finish_account") with a create-your-password link,
    making the unconfirmed account the link belongs to if there is none yet."""
    if account is None:
        rows = await PortalAccount.insert(PortalAccount(tenant=tenant["id"], email=email)).run()
        account_id = rows[0]["id"]
    else:
        account_id = account["id"]
    hours = settings.confirm_token_hours
    token = await _new_link_token(tenant["id"], account_id, "confirm", timedelta(hours=hours))
    link = portal_url(settings, tenant["host"], f"/confirm?token={token}")
    await queue_email(settings, tenant, email, template, {"link": link, "hours": hours})


async def _send_already_registered(settings: Settings, tenant: dict[str, Any], email: str) -> None:
    """The email for a registered customer who asked for an invitation: sign in, or reset."""
    await queue_email(
        settings,
        tenant,
        email,
        "already_registered",
        {
            "sign_in_link": portal_url(settings, tenant["host"], "/sign-in"),
            "forgot_link": portal_url(settings, tenant["host"], "/forgot"),
        },
    )


async def request_invitation(settings: Settings, tenant: dict[str, Any], email: str) -> str:
    """Answer an invitation request for `email`: a confirmation link if it is on a customer
    record of this business without a confirmed account, "you already have an account"
    if it has one, else nothing. Returns which email was queued ("" for none; never shown)."""
    async with transaction():
        if not await email_on_record(tenant["id"], email):
            return ""
        account = await account_by_email(tenant["id"], email)
        if account is not None and account["confirmed_at"] is not None:
            await _send_already_registered(settings, tenant, email)
            return "already_registered"
        await _send_confirm_link(settings, tenant, email, account, "confirm")
    return "confirm"


async def request_reset(settings: Settings, tenant: dict[str, Any], email: str) -> str:
    """Answer a reset request: a reset link for a confirmed account here, "finish creating
    your account" for an email on a record that never registered, else nothing."""
    async with transaction():
        if not await email_on_record(tenant["id"], email):
            return ""
        account = await account_by_email(tenant["id"], email)
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
            {"link": portal_url(settings, tenant["host"], f"/reset?token={token}"), "hours": hours},
        )
    return "reset"


async def request_sign_in_link(settings: Settings, tenant: dict[str, Any], email: str) -> str:
    """Answer "email me a sign-in link": a single-use link for 15 minutes for a confirmed
    account here, "finish creating your account" for an email on a record that never
    registered, else nothing."""
    async with transaction():
        if not await email_on_record(tenant["id"], email):
            return ""
        account = await account_by_email(tenant["id"], email)
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
                "link": portal_url(settings, tenant["host"], f"/sign-in/email?token={token}"),
                "minutes": SIGN_IN_LINK_MINUTES,
            },
        )
    return "sign_in_link"


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
        confirmed = (
            await PortalAccount.update({PortalAccount.confirmed_at: moment})
            .where((PortalAccount.id == check.account_id) & PortalAccount.confirmed_at.is_null())
            .returning(PortalAccount.id)
            .run()
        )
        if confirmed:
            await emit(tenant_id, "account.registered", {"account_id": check.account_id})
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
    return check if claimed else LinkCheck("used")


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


async def record_customer_sign_in(
    settings: Settings,
    tenant: dict[str, Any],
    account: dict[str, Any],
    *,
    method: str,
    browser: str,
    network: str,
    device_hash: str,
) -> bool:
    """Record a sign-in (and the account's last sign-in time); when this browser never
    signed in to the account before, and it is not the account's first sign-in, queue the
    "new sign-in" email in the same transaction. Returns whether it was queued."""
    async with transaction():
        seen = await fast.fetch(
            """SELECT COUNT(*) AS sign_ins,
                SUM(CASE WHEN device_hash = {} THEN 1 ELSE 0 END) AS from_here
            FROM sign_in_record WHERE tenant = {} AND account = {}""",
            device_hash,
            tenant["id"],
            account["id"],
        )
        moment = now()
        await SignInRecord.insert(
            SignInRecord(
                tenant=tenant["id"],
                account=account["id"],
                method=method,
                browser=browser[:120],
                network=network[:64],
                device_hash=device_hash,
                signed_in_at=moment,
            )
        ).run()
        await (
            PortalAccount.update({PortalAccount.last_sign_in_at: moment})
            .where(PortalAccount.id == account["id"])
            .run()
        )
        new_browser = bool(seen[0]["sign_ins"]) and not seen[0]["from_here"]
        if new_browser:
            await queue_email(
                settings,
                tenant,
                account["email"],
                "new_sign_in",
                {
                    "browser": browser,
                    "network": network,
                    "security_link": portal_url(settings, tenant["host"], "/account/security"),
                    "forgot_link": portal_url(settings, tenant["host"], "/forgot"),
                },
            )
    return new_browser


async def security_notice(
    settings: Settings, tenant: dict[str, Any], email: str, change: str
) -> None:
    """Tell the account's email that its sign-in changed: `change` is "password",
    "passkey added" or "passkey removed"."""
    await queue_email(
        settings,
        tenant,
        email,
        "security_change",
        {
            "change": change,
            "security_link": portal_url(settings, tenant["host"], "/account/security"),
            "forgot_link": portal_url(settings, tenant["host"], "/forgot"),
        },
    )


RECENT_SIGN_INS = 10


async def recent_sign_ins(tenant_id: int, account_id: int) -> list[dict[str, Any]]:
    """The account's last sign-ins, newest first."""
    return (
        await SignInRecord.select(
            SignInRecord.signed_in_at,
            SignInRecord.method,
            SignInRecord.browser,
            SignInRecord.network,
        )
        .where((SignInRecord.tenant == tenant_id) & (SignInRecord.account == account_id))
        .order_by(SignInRecord.id, ascending=False)
        .limit(RECENT_SIGN_INS)
        .run()
    )


async def active_sessions(tenant_id: int, account_id: int) -> list[dict[str, Any]]:
    """The account's sessions that have not passed their absolute limit, newest first
    (an idle one is deleted when next seen)."""
    return (
        await Session.select(
            Session.id,
            Session.browser,
            Session.network,
            Session.created_at,
            Session.last_seen_at,
        )
        .where(
            (Session.tenant == tenant_id)
            & (Session.account == account_id)
            & (Session.expires_at > now())
        )
        .order_by(Session.last_seen_at, ascending=False)
        .run()
    )

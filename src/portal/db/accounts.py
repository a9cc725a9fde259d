"""Customer portal accounts: invitations, confirmation, sign-in, password reset.

Every function is scoped to one business. Tokens are stored hashed, used once,
bound to business, account and purpose. Emails are queued in the same
transaction as the change that causes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db import fast
from portal.db.engine import current_engine, transaction
from portal.db.tables import (
    AccountRequest,
    AuthToken,
    CustomerEmail,
    PortalAccount,
    Session,
    SignInRecord,
)


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
    """True if `email` may have a portal account here: it is on one of this business's
    customer records, or a live access grant (issue 16.4) was made to it. One read."""
    rows = await CustomerEmail.raw(
        """SELECT EXISTS (SELECT 1 FROM customer_email WHERE tenant = {} AND email = {})
        OR EXISTS (SELECT 1 FROM access_grant WHERE tenant = {} AND invitee_email = {}
                   AND revoked_at IS NULL) AS known""",
        tenant_id,
        email,
        tenant_id,
        email.lower(),
    ).run()
    return bool(rows and rows[0]["known"])


async def unconfirmed_account(tenant_id: int, email: str) -> int:
    """The id of the account for `email` here, made (not confirmed yet) if there is none.
    Two workers answering requests for one email at once make one account: the second
    insert waits for the first's transaction and does nothing; the account is then read
    (before, the second failed on the unique (tenant, email) and its email was dropped)."""
    rows = await (
        PortalAccount.insert(PortalAccount(tenant=tenant_id, email=email))
        .on_conflict(target=(PortalAccount.tenant, PortalAccount.email), action="DO NOTHING")
        .returning(PortalAccount.id)
        .run()
    )
    if rows:
        return int(rows[0]["id"])
    found = await (
        PortalAccount.select(PortalAccount.id)
        .where((PortalAccount.tenant == tenant_id) & (PortalAccount.email == email))
        .first()
        .run()
    )
    assert found is not None  # the conflicting row exists: it was committed before ours
    return int(found["id"])


async def account_by_email(tenant_id: int, email: str) -> dict[str, Any] | None:
    return (
        await PortalAccount.select()
        .where((PortalAccount.tenant == tenant_id) & (PortalAccount.email == email))
        .first()
        .run()
    )


async def sign_in_account(tenant_id: int, email: str) -> dict[str, Any] | None:
    """The account a sign-in form names ({"id", "email", "confirmed", "password_hash"}),
    or None: one indexed read on the plain-SQL path (every sign-in that gets as far as
    the hash makes it)."""
    rows = await fast.fetch(
        """SELECT id, email, confirmed_at IS NOT NULL AS confirmed, password_hash
        FROM portal_account WHERE tenant = {} AND email = {}""",
        tenant_id,
        email,
    )
    if not rows:
        return None
    row = rows[0]
    return {**row, "confirmed": bool(row["confirmed"])}


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


async def set_password(account_id: int, password_hash: str, moment: datetime) -> None:
    """Set an account's password now and retire every link sent before it."""
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
        await set_password(account_id, password_hash, now())


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


async def sign_ins_seen(tenant_id: int, account_id: int, device_hash: str) -> tuple[bool, bool]:
    """(has the account signed in before, has it from the browser `device_hash`): two
    index lookups, however many sign-ins the account has had (not a count of them all)."""
    rows = await fast.fetch(
        """SELECT
            EXISTS (SELECT 1 FROM sign_in_record WHERE tenant = {} AND account = {}) AS seen_before,
            EXISTS (SELECT 1 FROM sign_in_record
                WHERE account = {} AND device_hash = {} AND tenant = {}) AS from_here""",
        tenant_id,
        account_id,
        account_id,
        device_hash,
        tenant_id,
    )
    return bool(rows[0]["seen_before"]), bool(rows[0]["from_here"])


async def add_sign_in_record(
    tenant_id: int,
    account_id: int,
    *,
    method: str,
    browser: str,
    network: str,
    device_hash: str,
) -> None:
    """Record a sign-in, and set the account's last sign-in time."""
    moment = now()
    await SignInRecord.insert(
        SignInRecord(
            tenant=tenant_id,
            account=account_id,
            method=method,
            browser=browser[:120],
            network=network[:64],
            device_hash=device_hash,
            signed_in_at=moment,
        )
    ).run()
    await (
        PortalAccount.update({PortalAccount.last_sign_in_at: moment})
        .where(PortalAccount.id == account_id)
        .run()
    )


RECENT_SIGN_INS = 10


async def recent_sign_ins(tenant_id: int, account_id: int) -> list[dict[str, Any]]:
    """The account's last sign-ins, newest first."""
    rows: list[dict[str, Any]] = (
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
    return rows


async def active_sessions(tenant_id: int, account_id: int) -> list[dict[str, Any]]:
    """The account's sessions that have not passed their absolute limit, most recently
    active first (an idle one is deleted when next seen)."""
    rows: list[dict[str, Any]] = (
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
    return rows

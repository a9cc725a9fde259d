"""Office staff accounts: the business's staff list, password changes and the password
reset links an administrator sends. Every function is scoped by business (tenant).

Reset tokens are stored hashed (auth/tokens.py), used once, bound to business and staff
member, and expire; a new password retires every link sent before it. The email is
queued in the same transaction as its token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.auth.tokens import new_token, token_hash
from portal.config import Settings
from portal.db.engine import transaction
from portal.db.tables import StaffToken, StaffUser
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email

MAX_TOKEN_LENGTH = 100


def now() -> datetime:
    return datetime.now(UTC)


async def staff_list(tenant_id: int) -> list[dict[str, Any]]:
    """The business's staff members, by name then email."""
    return (
        await StaffUser.select(StaffUser.id, StaffUser.name, StaffUser.email, StaffUser.role)
        .where(StaffUser.tenant == tenant_id)
        .order_by(StaffUser.name)
        .order_by(StaffUser.email)
        .run()
    )


async def staff_member(tenant_id: int, staff_id: int) -> dict[str, Any] | None:
    """One staff member of this business (None for another business's or a missing id)."""
    return (
        await StaffUser.select()
        .where((StaffUser.tenant == tenant_id) & (StaffUser.id == staff_id))
        .first()
        .run()
    )


async def _set_password(staff_id: int, password_hash: str, moment: datetime) -> None:
    await (
        StaffUser.update({StaffUser.password_hash: password_hash})
        .where(StaffUser.id == staff_id)
        .run()
    )
    # A new password retires every reset link sent before it.
    await (
        StaffToken.update({StaffToken.used_at: moment})
        .where((StaffToken.staff == staff_id) & StaffToken.used_at.is_null())
        .run()
    )


async def change_password(staff_id: int, password_hash: str) -> None:
    """Set a staff member's new password (the caller checked the current one)."""
    async with transaction():
        await _set_password(staff_id, password_hash, now())


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
        await _set_password(link.staff_id, password_hash, moment)  # type: ignore[arg-type]
    return link

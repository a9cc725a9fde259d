"""Office staff accounts: the business's staff list, adding staff, roles, disabling and
re-enabling, password changes and the password reset links an administrator sends. Every
function is scoped by business (tenant); every change is in the office activity log,
written in the change's transaction.

The business always keeps an active administrator: the last one cannot be disabled or
made office staff (checked under a lock, so two administrators demoting each other at
once cannot both succeed).

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
from portal.db import activity
from portal.db.engine import current_engine, transaction
from portal.db.tables import Session, StaffToken, StaffUser
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email

MAX_TOKEN_LENGTH = 100
ROLES = ("admin", "office")
ROLE_WORDS = {"admin": "Administrator", "office": "Office"}
LAST_ADMIN = (
    "{who} is the only active administrator. Make someone else an administrator first, "
    "so the business always has one."
)


class StaffProblem(Exception):
    """A staff change that cannot be made; the message says why, in words."""


def now() -> datetime:
    return datetime.now(UTC)


async def staff_list(tenant_id: int) -> list[dict[str, Any]]:
    """The business's staff members, by name then email (`disabled_at` set for disabled
    ones; `has_password` false for those who have not chosen a password yet)."""
    rows = (
        await StaffUser.select(
            StaffUser.id,
            StaffUser.name,
            StaffUser.email,
            StaffUser.role,
            StaffUser.disabled_at,
            StaffUser.password_hash,
        )
        .where(StaffUser.tenant == tenant_id)
        .order_by(StaffUser.name)
        .order_by(StaffUser.email)
        .run()
    )
    for row in rows:
        row["has_password"] = bool(row.pop("password_hash"))
    return rows


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
    settings: Settings,
    tenant: dict[str, Any],
    member: dict[str, Any],
    sent_by: dict[str, str],
    *,
    welcome: bool = False,
) -> None:
    """Queue a password-reset email to staff member `member`, sent by administrator
    `sent_by` (their name and email, shown in the email); `welcome`: the first one, to a
    member just added, who chooses their first password with it."""
    token, digest = new_token()
    async with transaction():
        if not welcome:
            await activity.record(
                tenant["id"],
                activity.Actor(sent_by["email"]),
                "staff.reset_link_sent",
                _who(member),
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
                "link": portal_url(settings, tenant["host"], f"/office/reset?token={token}"),
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
        await _set_password(link.staff_id, password_hash, moment)  # type: ignore[arg-type]
    return link


# --- adding staff, roles, disabling -------------------------------------------------------------


def _who(member: dict[str, Any]) -> str:
    """A staff member in the activity log and in messages: their name, else their email."""
    return member.get("name") or member["email"]


async def add_staff(
    settings: Settings,
    tenant: dict[str, Any],
    *,
    name: str,
    email: str,
    role: str,
    added_by: dict[str, str],
) -> dict[str, Any]:
    """Add a staff member (no password yet) and email them a link to choose one, in one
    transaction; raises `StaffProblem` when the email is already on the staff."""
    if role not in ROLES:
        raise StaffProblem("Choose Administrator or Office.")
    async with transaction():
        taken = await StaffUser.exists().where(
            (StaffUser.tenant == tenant["id"]) & (StaffUser.email == email)
        )
        if taken:
            raise StaffProblem(f"{email} is already on your staff.")
        rows = await StaffUser.insert(
            StaffUser(tenant=tenant["id"], email=email, name=name, role=role, password_hash="")
        ).run()
        member = {"id": rows[0]["id"], "email": email, "name": name, "role": role}
        await activity.record(
            tenant["id"],
            activity.Actor(added_by["email"]),
            "staff.added",
            _who(member),
            new=f"{email} · {ROLE_WORDS[role]}",
        )
        await send_reset_link(settings, tenant, member, added_by, welcome=True)
    return member


async def _lock_admins(tenant_id: int) -> int:
    """Lock the business's active administrators (PostgreSQL: their rows, FOR UPDATE;
    SQLite: the immediate transaction already holds the write lock) and count them."""
    if current_engine().engine_type == "postgres":
        rows = await StaffUser.raw(
            "SELECT id FROM staff_user WHERE tenant = {} AND role = 'admin' "
            "AND disabled_at IS NULL FOR UPDATE",
            tenant_id,
        ).run()
        return len(rows)
    return await StaffUser.count().where(
        (StaffUser.tenant == tenant_id)
        & (StaffUser.role == "admin")
        & StaffUser.disabled_at.is_null()
    )


async def _change(
    tenant_id: int,
    staff_id: int,
    changes: dict[Any, Any],
    *,
    leaves_admins: bool,
    actor: activity.Actor,
    action: str,
    old: str,
    new: str,
) -> dict[str, Any]:
    """Apply `changes` to one member, refusing when it would leave no active
    administrator (`leaves_admins`: the member stops being one)."""
    async with transaction():
        admins = await _lock_admins(tenant_id)
        member = await staff_member(tenant_id, staff_id)
        if member is None:
            raise LookupError(staff_id)
        is_active_admin = member["role"] == "admin" and member["disabled_at"] is None
        if leaves_admins and is_active_admin and admins <= 1:
            raise StaffProblem(LAST_ADMIN.format(who=_who(member)))
        await StaffUser.update(changes).where(
            (StaffUser.tenant == tenant_id) & (StaffUser.id == staff_id)
        )
        if StaffUser.disabled_at in changes and changes[StaffUser.disabled_at] is not None:
            await Session.delete().where(Session.staff == staff_id)  # signed out at once
        await activity.record(tenant_id, actor, action, _who(member), old=old, new=new)
    return member


async def set_role(
    tenant_id: int, staff_id: int, role: str, actor: activity.Actor
) -> dict[str, Any] | None:
    """Make a member an administrator or office staff. None: nothing to change. Raises
    `StaffProblem` (the last active administrator) or `LookupError` (no such member)."""
    if role not in ROLES:
        raise StaffProblem("Choose Administrator or Office.")
    member = await staff_member(tenant_id, staff_id)
    if member is None:
        raise LookupError(staff_id)
    if member["role"] == role:
        return None
    return await _change(
        tenant_id,
        staff_id,
        {StaffUser.role: role},
        leaves_admins=role != "admin",
        actor=actor,
        action="staff.role_changed",
        old=ROLE_WORDS.get(member["role"], member["role"]),
        new=ROLE_WORDS[role],
    )


async def set_disabled(
    tenant_id: int, staff_id: int, disabled: bool, actor: activity.Actor
) -> dict[str, Any]:
    """Disable a member (they are signed out everywhere and cannot sign in; their reset
    links stop working) or enable them again. Raises `StaffProblem` (the last active
    administrator) or `LookupError` (no such member)."""
    return await _change(
        tenant_id,
        staff_id,
        {StaffUser.disabled_at: now() if disabled else None},
        leaves_admins=disabled,
        actor=actor,
        action="staff.disabled" if disabled else "staff.enabled",
        old="Active" if disabled else "Disabled",
        new="Disabled" if disabled else "Active",
    )

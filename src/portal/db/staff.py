"""Office staff accounts: the business's staff list, adding staff, roles, disabling and
re-enabling, password changes and the password reset links an administrator sends. Every
function is scoped by business (tenant); every change to the staff is in the office
activity log, written in the change's transaction.

The business always keeps an active administrator: the last one cannot be disabled or
made office staff (checked under a lock, so two administrators demoting each other at
once cannot both succeed).

Reset tokens are stored hashed (auth/tokens.py), used once, bound to business and staff
member, and expire; a new password retires every link sent before it. The email is
queued in the same transaction as its token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db import activity
from portal.db.engine import current_engine, transaction
from portal.db.tables import Session, StaffToken, StaffUser

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


async def set_password(staff_id: int, password_hash: str, moment: datetime) -> None:
    """Set a staff member's password now and retire every link sent before it."""
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
        await set_password(staff_id, password_hash, now())


# --- adding staff, roles, disabling -------------------------------------------------------------


def who(member: dict[str, Any]) -> str:
    """A staff member in the activity log and in messages: their name, else their email."""
    return str(member.get("name") or member["email"])


async def insert_staff(
    tenant_id: int, *, name: str, email: str, role: str, actor: activity.Actor
) -> dict[str, Any]:
    """Add a staff member without a password (they choose one from an emailed link), with
    its activity entry; call inside the transaction that sends the link. Raises
    `StaffProblem` when the email is already on the staff."""
    if role not in ROLES:
        raise StaffProblem("Choose Administrator or Office.")
    taken = await StaffUser.exists().where(
        (StaffUser.tenant == tenant_id) & (StaffUser.email == email)
    )
    if taken:
        raise StaffProblem(f"{email} is already on your staff.")
    rows = await StaffUser.insert(
        StaffUser(tenant=tenant_id, email=email, name=name, role=role, password_hash="")
    ).run()
    member = {"id": rows[0]["id"], "email": email, "name": name, "role": role}
    await activity.record(
        tenant_id, actor, "staff.added", who(member), new=f"{email} · {ROLE_WORDS[role]}"
    )
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
    return int(
        await StaffUser.count().where(
            (StaffUser.tenant == tenant_id)
            & (StaffUser.role == "admin")
            & StaffUser.disabled_at.is_null()
        )
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
            raise StaffProblem(LAST_ADMIN.format(who=who(member)))
        await StaffUser.update(changes).where(
            (StaffUser.tenant == tenant_id) & (StaffUser.id == staff_id)
        )
        if changes.get(StaffUser.disabled_at) is not None:
            await Session.delete().where(Session.staff == staff_id)  # signed out at once
        await activity.record(tenant_id, actor, action, who(member), old=old, new=new)
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

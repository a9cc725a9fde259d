"""Office staff accounts: the business's staff list, password changes and the password
reset links an administrator sends. Every function is scoped by business (tenant).

Reset tokens are stored hashed (auth/tokens.py), used once, bound to business and staff
member, and expire; a new password retires every link sent before it. The email is
queued in the same transaction as its token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db.engine import transaction
from portal.db.tables import StaffToken, StaffUser

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

"""Office staff: sign-in lookups, the business's settings as the office sees them, and
counts the office layout shows. Every function is scoped by business (tenant)."""

from __future__ import annotations

from typing import Any

from portal.db.queries import TENANT_COLUMNS, tenant_row
from portal.db.rows import TenantRow
from portal.db.tables import BookingRequest, StaffUser, Tenant


async def staff_by_email(tenant_id: int, email: str) -> dict[str, Any] | None:
    """The business's staff member with this (lower-cased) email, or None (also for a
    disabled one: they cannot sign in)."""
    return (
        await StaffUser.select()
        .where(
            (StaffUser.tenant == tenant_id)
            & (StaffUser.email == email)
            & StaffUser.disabled_at.is_null()
        )
        .first()
        .run()
    )


async def update_staff_hash(staff_id: int, password_hash: str) -> None:
    """Store a rehash made with today's parameters (at sign-in)."""
    await (
        StaffUser.update({StaffUser.password_hash: password_hash})
        .where(StaffUser.id == staff_id)
        .run()
    )


async def tenant_by_id(tenant_id: int) -> TenantRow:
    """The business as the request dependency gives it, read again after a change."""
    row = await Tenant.select(*TENANT_COLUMNS).where(Tenant.id == tenant_id).first().run()
    if row is None:  # the business was deleted under us: nothing sensible to show
        raise LookupError(f"no business {tenant_id}")
    return tenant_row(row)


async def new_bookings_count(tenant_id: int) -> int:
    """How many appointment requests wait for the office (shown in the office menu)."""
    result: int = (
        await BookingRequest.count()
        .where((BookingRequest.tenant == tenant_id) & (BookingRequest.status == "new"))
        .run()
    )
    return result

"""Office alerts: something staff must look at (a card payment that arrived after the
portal had called it failed). Shown at the top of every office page until a staff
member marks it as seen. Raising one (and emailing the administrators) is
`mail/alerts.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db.tables import OfficeAlert, StaffUser

MAX_SHOWN = 20  # the newest ones; more than that is a pile to deal with, not to list


async def insert_alert(
    tenant_id: int, *, kind: str, title: str, message: str, reference: str = ""
) -> None:
    """Record an alert (the title cut to its column's 200 characters)."""
    await OfficeAlert.insert(
        OfficeAlert(
            tenant=tenant_id, kind=kind, title=title[:200], message=message, reference=reference
        )
    ).run()


async def admin_emails(tenant_id: int) -> list[str]:
    """The emails of the business's administrators, oldest account first."""
    rows = (
        await StaffUser.select(StaffUser.email)
        .where(
            (StaffUser.tenant == tenant_id)
            & (StaffUser.role == "admin")
            & StaffUser.disabled_at.is_null()
        )
        .order_by(StaffUser.id)
        .run()
    )
    return [row["email"] for row in rows]


async def unseen(tenant_id: int) -> list[dict[str, Any]]:
    """The business's alerts nobody has marked as seen yet, newest first."""
    return (
        await OfficeAlert.select(
            OfficeAlert.id, OfficeAlert.title, OfficeAlert.message, OfficeAlert.created_at
        )
        .where((OfficeAlert.tenant == tenant_id) & OfficeAlert.seen_at.is_null())
        .order_by(OfficeAlert.created_at, ascending=False)
        .order_by(OfficeAlert.id, ascending=False)
        .limit(MAX_SHOWN)
        .run()
    )


async def mark_seen(tenant_id: int, alert_id: int, staff_email: str) -> bool:
    """A staff member has seen the alert; False if the business has no such alert."""
    exists = (
        await OfficeAlert.exists()
        .where((OfficeAlert.tenant == tenant_id) & (OfficeAlert.id == alert_id))
        .run()
    )
    if not exists:
        return False
    await (
        OfficeAlert.update(
            {OfficeAlert.seen_at: datetime.now(UTC), OfficeAlert.seen_by: staff_email}
        )
        .where(
            (OfficeAlert.tenant == tenant_id)
            & (OfficeAlert.id == alert_id)
            & OfficeAlert.seen_at.is_null()
        )
        .run()
    )
    return True

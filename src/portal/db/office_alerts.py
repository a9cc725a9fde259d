"""Office alerts: something staff must look at (a card payment that arrived after the
portal had called it failed). Shown at the top of every office page until a staff
member marks it as seen, and emailed to the business's administrators when raised."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.config import Settings
from portal.db.tables import OfficeAlert, StaffUser
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email

MAX_SHOWN = 20  # the newest ones; more than that is a pile to deal with, not to list


async def raise_alert(
    settings: Settings,
    tenant: dict[str, Any],
    *,
    kind: str,
    title: str,
    message: str,
    reference: str = "",
) -> None:
    """Record an alert and queue an email about it to each administrator. Call inside
    the transaction that records what it is about (both or neither are saved)."""
    await OfficeAlert.insert(
        OfficeAlert(
            tenant=tenant["id"],
            kind=kind,
            title=title[:200],
            message=message,
            reference=reference,
        )
    ).run()
    admins = (
        await StaffUser.select(StaffUser.email)
        .where(
            (StaffUser.tenant == tenant["id"])
            & (StaffUser.role == "admin")
            & StaffUser.disabled_at.is_null()
        )
        .order_by(StaffUser.id)
        .run()
    )
    link = portal_url(settings, tenant["host"], "/office/settings")
    for admin in admins:
        await queue_email(
            settings,
            tenant,
            admin["email"],
            "office_alert",
            {"title": title, "message": message, "link": link},
        )


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

"""Office alerts raised: something staff must look at (a card payment that arrived after
the portal had called it failed), recorded for the top of every office page and emailed
to each of the business's administrators in the same transaction."""

from __future__ import annotations

from portal.config import Settings
from portal.db import office_alerts
from portal.db.rows import TenantRow
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email


async def raise_alert(
    settings: Settings,
    tenant: TenantRow,
    *,
    kind: str,
    title: str,
    message: str,
    reference: str = "",
) -> None:
    """Record an alert and queue an email about it to each administrator. Call inside
    the transaction that records what it is about (both or neither are saved)."""
    await office_alerts.insert_alert(
        tenant["id"], kind=kind, title=title, message=message, reference=reference
    )
    link = portal_url(settings, tenant, "/office/settings")
    for email in await office_alerts.admin_emails(tenant["id"]):
        await queue_email(
            settings,
            tenant,
            email,
            "office_alert",
            {"title": title, "message": message, "link": link},
        )

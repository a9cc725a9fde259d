"""Office › Emails: the business's failed emails (with the reason), its recent emails,
and retrying a failed one. Every function is scoped by business (tenant)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db.tables import OutboxEmail

FAILED_PAGE_SIZE = 25
RECENT_COUNT = 20

_LISTED = (
    OutboxEmail.id,
    OutboxEmail.to_addr,
    OutboxEmail.subject,
    OutboxEmail.status,
    OutboxEmail.attempts,
    OutboxEmail.last_error,
    OutboxEmail.created_at,
    OutboxEmail.sent_at,
)


async def failed(
    tenant_id: int, before: int | None = None, limit: int = FAILED_PAGE_SIZE
) -> tuple[list[dict[str, Any]], int | None]:
    """The business's failed emails, newest first, a page at a time (keyset on id).
    Returns the page and the id to continue before (None on the last page)."""
    where = (OutboxEmail.tenant == tenant_id) & (OutboxEmail.status == "failed")
    if before is not None:
        where &= OutboxEmail.id < before
    rows = (
        await OutboxEmail.select(*_LISTED)
        .where(where)
        .order_by(OutboxEmail.id, ascending=False)
        .limit(limit + 1)
        .run()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1]["id"] if more else None


async def recent(tenant_id: int, limit: int = RECENT_COUNT) -> list[dict[str, Any]]:
    """The business's latest emails, whatever happened to them, newest first."""
    return (
        await OutboxEmail.select(*_LISTED)
        .where(OutboxEmail.tenant == tenant_id)
        .order_by(OutboxEmail.id, ascending=False)
        .limit(limit)
        .run()
    )


async def retry(tenant_id: int, email_id: int) -> tuple[str, str]:
    """Queue a failed email again, with a fresh set of attempts; one UPDATE, so two
    clicks at once queue it once.

    Returns (outcome, recipient): outcome "retried"; "sent" or "pending" when it is not
    failed (any more); "missing" (recipient "") when the business has no such email.
    """
    rows = (
        await OutboxEmail.update(
            {
                OutboxEmail.status: "pending",
                OutboxEmail.attempts: 0,
                OutboxEmail.next_attempt_at: datetime.now(UTC),
                OutboxEmail.locked_until: None,
                OutboxEmail.last_error: "",
            }
        )
        .where(
            (OutboxEmail.tenant == tenant_id)
            & (OutboxEmail.id == email_id)
            & (OutboxEmail.status == "failed")
        )
        .returning(OutboxEmail.to_addr)
        .run()
    )
    if rows:
        return "retried", rows[0]["to_addr"]
    row = (
        await OutboxEmail.select(OutboxEmail.status, OutboxEmail.to_addr)
        .where((OutboxEmail.tenant == tenant_id) & (OutboxEmail.id == email_id))
        .first()
        .run()
    )
    return (row["status"], row["to_addr"]) if row else ("missing", "")

"""A customer's appointment request (the Scheduler tab): saved together with its
confirmation email, or not at all. The rows are `db/bookings.py`."""

from __future__ import annotations

from typing import Any

from portal.config import Settings
from portal.db import bookings
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.mail.outbox import queue_email


async def request_appointment(
    settings: Settings, tenant: TenantRow, new: bookings.NewRequest, email_context: dict[str, Any]
) -> tuple[int | None, bool]:
    """Save the request and queue its confirmation email, together or not at all.

    Returns (request id, created). A second submit of the same form (same
    idempotency key), even one racing the first, creates nothing and returns the
    first request's id; a key that belongs to another customer's request returns
    (None, False).
    """
    async with transaction():
        request_id = await bookings.insert_request(tenant["id"], new)
        if request_id is not None:
            await queue_email(
                settings, tenant, new.account_email, "booking_received", email_context
            )
            return request_id, True
    existing = await bookings.request_by_key(tenant["id"], new.customer_id, new.idempotency_key)
    return existing, False

"""Domain events: what happened that the business's own system (its field-service or
accounting software) may want to hear about. The API's events feed and the outgoing
webhooks read them in id order.

Call `emit` inside the transaction that makes the change, so an event exists exactly
when its change does. Event data carries ids, numbers, amounts and states, never names,
emails, phones or addresses: a privacy erase must not have to rewrite history, and a
consumer asks the API for the record's current details.
"""

from __future__ import annotations

import json
from typing import Any

from portal.db.tables import DomainEvent

# Every kind of event there is (the feed and the webhook settings list these).
EVENT_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "booking.requested",
    "booking.booked",
    "booking.dismissed",
    "card.updated",
    "account.registered",
    "invoice.viewed",
    "invoice.voided",
)


async def emit(tenant_id: int, type_: str, data: dict[str, Any]) -> int:
    """Record that `type_` happened (one of EVENT_TYPES), with `data` as JSON; returns the
    event's id."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    rows = (
        await DomainEvent.insert(
            DomainEvent(
                tenant=tenant_id,
                type=type_,
                data=json.dumps(data, separators=(",", ":"), sort_keys=True, default=str),
            )
        )
        .returning(DomainEvent.id)
        .run()
    )
    return int(rows[0]["id"])


async def emit_many(tenant_id: int, type_: str, data: list[dict[str, Any]]) -> None:
    """`emit` for several changes of one kind at once (a sync batch voiding invoices): one
    multi-row insert, the events in the order given."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    if not data:
        return
    await DomainEvent.insert(
        *[
            DomainEvent(
                tenant=tenant_id,
                type=type_,
                data=json.dumps(d, separators=(",", ":"), sort_keys=True, default=str),
            )
            for d in data
        ]
    ).run()


async def customer_source_id(tenant_id: int, customer_id: int) -> str:
    """The business's own id of a customer (what its system knows the customer by)."""
    from portal.db.tables import Customer

    row = (
        await Customer.select(Customer.external_id)
        .where((Customer.tenant == tenant_id) & (Customer.id == customer_id))
        .first()
        .run()
    )
    return row["external_id"] if row else ""


async def after(tenant_id: int, cursor: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """The business's events with an id above `cursor`, oldest first, `limit` at most
    (keyset paging: the last id returned is the next cursor). `data` comes back parsed."""
    rows = (
        await DomainEvent.select()
        .where((DomainEvent.tenant == tenant_id) & (DomainEvent.id > cursor))
        .order_by(DomainEvent.id)
        .limit(limit)
        .run()
    )
    for row in rows:
        row["data"] = json.loads(row["data"])
    return rows

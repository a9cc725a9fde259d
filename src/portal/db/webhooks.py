"""Webhook endpoints and their deliveries (the data side; sending is api/webhooks.py).

Fan-out: each round, every enabled endpoint's new domain events become one delivery each
(unique per endpoint and event, and the endpoint's `last_event_id` moves in the same
transaction, so an event is queued exactly once however many workers run). Deliveries
are then claimed one row at a time with a lease, as the mail outbox does.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from portal.db import activity
from portal.db.engine import current_engine, transaction
from portal.db.tables import DomainEvent, StaffUser, WebhookDelivery, WebhookEndpoint

LEASE = timedelta(seconds=60)  # longer than one delivery may take (10 s timeout)
FAN_OUT_BATCH = 500


def clean_url(value: str) -> tuple[str, str | None]:
    """An endpoint URL: http(s), with a host, at most 2000 characters."""
    url = value.strip()
    if not url:
        return url, "Enter the address your system receives webhooks at."
    if len(url) > 2000:
        return url, f"Use at most 2000 characters (this has {len(url)})."
    parts = urlsplit(url)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or any(c in url for c in " \n\r\t")
    ):
        return (
            url,
            "Enter a full web address starting with https://, for example https://example.com/hooks.",
        )
    return url, None


async def add_endpoint(tenant_id: int, url: str, added_by: str) -> tuple[int, str]:
    """Add an endpoint that hears of events from now on; returns its id and signing secret."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    async with transaction():
        latest = (
            await DomainEvent.select(DomainEvent.id)
            .where(DomainEvent.tenant == tenant_id)
            .order_by(DomainEvent.id, ascending=False)
            .first()
            .run()
        )
        rows = (
            await WebhookEndpoint.insert(
                WebhookEndpoint(
                    tenant=tenant_id,
                    url=url,
                    secret=secret,
                    last_event_id=latest["id"] if latest else 0,
                    created_by=added_by,
                )
            )
            .returning(WebhookEndpoint.id)
            .run()
        )
        await activity.record(tenant_id, activity.Actor(added_by), "webhook.added", url)
    return int(rows[0]["id"]), secret


async def endpoints(tenant_id: int) -> list[dict[str, Any]]:
    """The business's endpoints, oldest first (their secrets included: the office shows
    them to administrators, who set up the receiving side)."""
    return (
        await WebhookEndpoint.select()
        .where(WebhookEndpoint.tenant == tenant_id)
        .order_by(WebhookEndpoint.id)
        .run()
    )


async def deliveries(tenant_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The business's latest deliveries, newest first, with their endpoint's URL."""
    return (
        await WebhookDelivery.select(
            *WebhookDelivery.all_columns(), WebhookDelivery.endpoint.url.as_alias("url")
        )
        .where(WebhookDelivery.tenant == tenant_id)
        .order_by(WebhookDelivery.id, ascending=False)
        .limit(limit)
        .run()
    )


async def retry_now(tenant_id: int, delivery_id: int) -> bool:
    """Send a delivery again at the next round (a failed one gets a fresh schedule);
    False if the business has no such delivery or it was delivered."""
    rows = (
        await WebhookDelivery.update(
            {
                WebhookDelivery.status: "pending",
                WebhookDelivery.next_attempt_at: datetime.now(UTC),
                WebhookDelivery.attempts: 0,
                WebhookDelivery.locked_until: None,
            }
        )
        .where(
            (WebhookDelivery.tenant == tenant_id)
            & (WebhookDelivery.id == delivery_id)
            & (WebhookDelivery.status != "delivered")
        )
        .returning(WebhookDelivery.id)
        .run()
    )
    return bool(rows)


async def set_enabled(tenant_id: int, endpoint_id: int, enabled: bool, by: str) -> bool:
    """Turn an endpoint on or off; False if the business has no such endpoint."""
    async with transaction():
        rows = (
            await WebhookEndpoint.update(
                {WebhookEndpoint.enabled: enabled, WebhookEndpoint.disabled_reason: ""}
            )
            .where((WebhookEndpoint.tenant == tenant_id) & (WebhookEndpoint.id == endpoint_id))
            .returning(WebhookEndpoint.url)
            .run()
        )
        if rows:
            action = "webhook.enabled" if enabled else "webhook.disabled"
            await activity.record(tenant_id, activity.Actor(by), action, rows[0]["url"])
    return bool(rows)


async def fan_out() -> int:
    """Queue every enabled endpoint's new events; returns how many deliveries were made."""
    made = 0
    for endpoint in await WebhookEndpoint.select(WebhookEndpoint.id).where(
        WebhookEndpoint.enabled == True  # noqa: E712 (a column comparison)
    ):
        async with transaction():
            row = (
                await WebhookEndpoint.select()
                .where(WebhookEndpoint.id == endpoint["id"])
                .first()
                .run()
            )
            if row is None or not row["enabled"]:
                continue
            new = (
                await DomainEvent.select(DomainEvent.id, DomainEvent.type)
                .where(
                    (DomainEvent.tenant == row["tenant"]) & (DomainEvent.id > row["last_event_id"])
                )
                .order_by(DomainEvent.id)
                .limit(FAN_OUT_BATCH)
                .run()
            )
            if not new:
                continue
            now = datetime.now(UTC)
            await WebhookDelivery.insert(
                *[
                    WebhookDelivery(
                        tenant=row["tenant"],
                        endpoint=row["id"],
                        event=e["id"],
                        event_type=e["type"],
                        next_attempt_at=now,
                    )
                    for e in new
                ]
            ).run()
            # Only moves if no other worker moved it meanwhile (then this one rolls back
            # on the unique (endpoint, event) index instead of queuing twice).
            await (
                WebhookEndpoint.update({WebhookEndpoint.last_event_id: new[-1]["id"]})
                .where(
                    (WebhookEndpoint.id == row["id"])
                    & (WebhookEndpoint.last_event_id == row["last_event_id"])
                )
                .run()
            )
            made += len(new)
    return made


async def claim(now: datetime | None = None) -> dict[str, Any] | None:
    """Lease one due delivery of an enabled endpoint, count the attempt, and return it
    with its event and endpoint (None when nothing is due)."""
    moment = now or datetime.now(UTC)
    skip_locked = "" if current_engine().engine_type == "sqlite" else "FOR UPDATE SKIP LOCKED"
    rows = await WebhookDelivery.raw(
        f"""UPDATE webhook_delivery SET locked_until = {{}}, attempts = attempts + 1
        WHERE id IN (
            SELECT d.id FROM webhook_delivery d
            WHERE d.status = 'pending' AND d.next_attempt_at <= {{}}
              AND (d.locked_until IS NULL OR d.locked_until < {{}})
              AND d.endpoint IN (SELECT id FROM webhook_endpoint WHERE enabled = {{}})
            ORDER BY d.next_attempt_at, d.id LIMIT 1 {skip_locked}
        )
        RETURNING id, tenant, endpoint, event, attempts""",
        moment + LEASE,
        moment,
        moment,
        True,
    ).run()
    if not rows:
        return None
    delivery = rows[0]
    event = await DomainEvent.select().where(DomainEvent.id == delivery["event"]).first().run()
    endpoint = (
        await WebhookEndpoint.select()
        .where(WebhookEndpoint.id == delivery["endpoint"])
        .first()
        .run()
    )
    return {**delivery, "event_row": event, "endpoint_row": endpoint}


async def delivered(delivery_id: int, code: int, now: datetime) -> None:
    await (
        WebhookDelivery.update(
            {
                WebhookDelivery.status: "delivered",
                WebhookDelivery.response_code: code,
                WebhookDelivery.locked_until: None,
                WebhookDelivery.delivered_at: now,
                WebhookDelivery.last_error: "",
            }
        )
        .where(WebhookDelivery.id == delivery_id)
        .run()
    )


async def failed_attempt(
    delivery_id: int, code: int | None, reason: str, retry_at: datetime | None
) -> None:
    """Note a failed attempt: retried at `retry_at`, or failed for good when None."""
    changes: dict[Any, Any] = {
        WebhookDelivery.response_code: code,
        WebhookDelivery.last_error: reason[:500],
        WebhookDelivery.locked_until: None,
    }
    if retry_at is None:
        changes[WebhookDelivery.status] = "failed"
    else:
        changes[WebhookDelivery.next_attempt_at] = retry_at
    await WebhookDelivery.update(changes).where(WebhookDelivery.id == delivery_id).run()


async def disable_for_failures(endpoint: dict[str, Any], reason: str) -> list[str]:
    """Turn off an endpoint that kept failing; returns its business's admin emails (to tell
    them). Done once: an endpoint already off is left as it is (returns [])."""
    rows = (
        await WebhookEndpoint.update(
            {WebhookEndpoint.enabled: False, WebhookEndpoint.disabled_reason: reason[:500]}
        )
        .where((WebhookEndpoint.id == endpoint["id"]) & (WebhookEndpoint.enabled == True))  # noqa: E712
        .returning(WebhookEndpoint.id)
        .run()
    )
    if not rows:
        return []
    await activity.record(
        endpoint["tenant"], activity.SYSTEM, "webhook.disabled", endpoint["url"], "on", reason
    )
    admins = (
        await StaffUser.select(StaffUser.email)
        .where((StaffUser.tenant == endpoint["tenant"]) & (StaffUser.role == "admin"))
        .run()
    )
    return [a["email"] for a in admins]

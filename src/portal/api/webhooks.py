"""Outgoing webhooks, signed per the Standard Webhooks specification
(https://www.standardwebhooks.com/): headers `webhook-id` (the same on every retry, so a
receiver drops repeats), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature` (`v1,` + base64 HMAC-SHA256 of "id.timestamp.body" with the
endpoint's secret).

The background worker fans new events out to the endpoints and sends what is due, one
delivery at a time (db/webhooks.py claims it). A 2xx answer delivers; anything else is
retried after `Settings.webhook_retry_seconds` (exponential, about three days in all).
When the last retry fails the endpoint is disabled and its business's admins emailed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from portal.config import Settings
from portal.db import webhooks as webhooks_db
from portal.db.engine import transaction
from portal.db.queries import tenant_row
from portal.db.tables import Tenant
from portal.mail.outbox import queue_raw

log = logging.getLogger("portal.webhooks")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload(event: dict[str, Any]) -> bytes:
    """The body: the event's type, when it happened and its data (ids and amounts only)."""
    created = event["created_at"]
    when = created.isoformat() if isinstance(created, datetime) else str(created)
    data = event["data"] if isinstance(event["data"], dict) else json.loads(event["data"])
    body = {"type": event["type"], "timestamp": when, "data": {"event_id": event["id"], **data}}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


async def deliver_due(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Fan out new events, then send every due delivery once; returns counts."""
    counts = {"queued": await webhooks_db.fan_out(), "delivered": 0, "retry": 0, "failed": 0}
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_seconds) as client:
        while (delivery := await webhooks_db.claim(now)) is not None:
            counts[await _send(settings, client, delivery)] += 1
    return counts


async def _send(settings: Settings, client: httpx.AsyncClient, delivery: dict[str, Any]) -> str:
    endpoint, event = delivery["endpoint_row"], delivery["event_row"]
    moment = datetime.now(UTC)
    body = payload(event)
    message_id = f"evt_{event['id']}"
    timestamp = int(moment.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": "CustomerPortal-Webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(endpoint["secret"], message_id, timestamp, body),
    }
    code: int | None = None
    try:
        answer = await client.post(endpoint["url"], content=body, headers=headers)
        code = answer.status_code
        if 200 <= code < 300:
            await webhooks_db.delivered(delivery["id"], code, moment)
            return "delivered"
        reason = f"Your endpoint answered {code}."
    except httpx.HTTPError as exc:
        reason = f"Could not reach your endpoint: {type(exc).__name__} {exc}".strip()
    schedule = settings.webhook_retry_seconds
    if delivery["attempts"] <= len(schedule):
        wait = schedule[delivery["attempts"] - 1]
        await webhooks_db.failed_attempt(
            delivery["id"], code, reason, moment + timedelta(seconds=wait)
        )
        return "retry"
    async with transaction():
        await webhooks_db.failed_attempt(delivery["id"], code, reason, None)
        admins = await webhooks_db.disable_for_failures(
            endpoint, f"Turned off after {delivery['attempts']} failed attempts. {reason}"
        )
        row = await Tenant.select().where(Tenant.id == endpoint["tenant"]).first().run()
        tenant = tenant_row(row) if row else None
        for admin in admins:
            await queue_raw(
                settings,
                tenant,
                admin,
                "Your webhook endpoint was turned off",
                f"Hello,\n\nThe customer portal could not deliver events to\n{endpoint['url']}\n"
                f"for about three days ({delivery['attempts']} attempts). {reason}\n\n"
                "It is turned off now, so nothing more is sent there. When your system is "
                "ready again, turn it back on under Office › Webhooks and retry the "
                "failed deliveries.\n",
            )
    log.warning("webhook endpoint %s disabled: %s", endpoint["id"], reason)
    return "failed"

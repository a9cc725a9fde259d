"""Invitation and password-reset requests, answered by the background worker.

The request handler only records the request (after its throttle): the same statements
whatever the email, so the answer's timing cannot tell which emails a business knows
(looking the email up, making an account and a link and queuing the email took 4 ms more
for known emails). The worker — inside `portal serve`, or `portal worker` — then looks the
email up and queues what it calls for: a confirmation link for an email on a customer
record without a confirmed account, a reset link for a confirmed account, else nothing.
"""

from __future__ import annotations

import logging

from portal.auth import links
from portal.config import Settings
from portal.db import accounts
from portal.db.engine import transaction
from portal.db.office import tenant_by_id

KINDS = ("invite", "reset")
log = logging.getLogger("portal.mail")


async def record(tenant_id: int, kind: str, email: str) -> None:
    """Record that someone asked for `kind` ("invite" or "reset") for `email`."""
    if kind not in KINDS:
        raise ValueError(f"unknown account request {kind!r}")
    await accounts.record_request(tenant_id, kind, email)


async def answer_pending(settings: Settings, limit: int = 100) -> int:
    """Answer up to `limit` recorded requests, oldest first; returns how many. Each is
    taken and answered in one transaction: its email is queued exactly once."""
    answered = 0
    while answered < limit:
        request = None
        try:
            async with transaction():
                request = await accounts.take_request()
                if request is None:
                    break
                tenant = await tenant_by_id(request["tenant"])
                if request["kind"] == "invite":
                    await links.request_invitation(settings, tenant, request["email"])
                else:
                    await links.request_reset(settings, tenant, request["email"])
        except Exception:
            if request is None:
                raise  # the database itself: the worker's round fails and is retried
            # Rolled back, so the request is back: drop it, or it would block the others.
            log.exception("account request %s could not be answered; dropped", request["id"])
            await accounts.drop_request(request["id"])
        answered += 1
    return answered

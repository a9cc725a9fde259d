"""Invitation, password-reset and sign-in-link requests, answered by the background worker.

The request handler only records the request (after its throttle): the same statements
whatever the email, so the answer's timing cannot tell which emails a business knows
(looking the email up, making an account and a link and queuing the email took 4 ms more
for known emails). The worker — inside `portal serve`, or `portal worker` — then looks the
email up and queues the email that helps (auth/links.py): for an invitation, a
confirmation link or, already registered, "sign in or reset your password"; for a reset
or a sign-in link, that link or, never registered, "finish creating your account"; for an
email on no customer record, nothing.
"""

from __future__ import annotations

import logging

from portal.auth import links
from portal.config import Settings
from portal.db import accounts
from portal.db.engine import transaction
from portal.db.office import tenant_by_id

KINDS = ("invite", "reset", "signin")
log = logging.getLogger("portal.mail")
ANSWERS = {
    "invite": links.request_invitation,
    "reset": links.request_reset,
    "signin": links.request_sign_in_link,
}


async def record(tenant_id: int, kind: str, email: str) -> None:
    """Record that someone asked for `kind` ("invite", "reset", "signin") for `email`."""
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
                answer = ANSWERS.get(request["kind"], links.request_reset)
                await answer(settings, tenant, request["email"])
        except Exception:
            if request is None:
                raise  # the database itself: the worker's round fails and is retried
            # Rolled back, so the request is back: drop it, or it would block the others.
            log.exception("account request %s could not be answered; dropped", request["id"])
            await accounts.drop_request(request["id"])
        answered += 1
    return answered

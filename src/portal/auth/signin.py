"""Checking a password someone typed: counted against the throttles first, then verified
in the fair hashing lane. Used by the customer and the office sign-in and by "change
password" (the current one).

Order matters: the attempt is counted (and refused when over a limit) *before* any hashing,
so a throttled client or email costs no argon2 time, and simultaneous attempts cannot all
slip under the limit (auth/throttle.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar.connection import ASGIConnection

from portal import logs, metrics
from portal.auth import throttle
from portal.auth.passwords import LANE, LaneBusy, verify_password
from portal.auth.policy import READ_LIMIT
from portal.auth.throttle import Limit
from portal.forwarded import client_ip, client_key

WINDOW = timedelta(minutes=15)
# The longest password a form reads (cut there: one more than the policy counts, so a
# longer one is said to have "more than" that many characters, auth/policy.py).
MAX_FIELD = READ_LIMIT + 1
BUSY = "Lots of people are signing in right now. Please try again in a moment."
NO_MATCH = "That email and password don't match our records. Check both and try again."
PER_EMAIL = 10  # wrong passwords per email and business in the window
PER_CLIENT = 50  # wrong passwords per client address and business in the window


@dataclass(frozen=True)
class PasswordCheck:
    """The outcome: right, wrong, refused as too many attempts, or refused as busy."""

    right: bool = False
    too_many: int | None = None  # seconds to wait (429)
    busy: int | None = None  # seconds to wait (503)


def email_limit(area: str, email: str) -> Limit:
    """Wrong passwords for one email of a business; a right password forgets them."""
    return Limit(f"{area}:email:{email}", PER_EMAIL, WINDOW, cleared_by_success=True)


def sign_in_limits(area: str, email: str, client: str) -> list[Limit]:
    """The limits of a sign-in form: per email and per client address, both within one
    business (the tenant is part of every count, so attackers of one business cannot lock
    out another's customers)."""
    return [email_limit(area, email), Limit(f"{area}:client:{client}", PER_CLIENT, WINDOW)]


async def check_password(
    tenant_id: int,
    limits: list[Limit],
    client: str,
    stored_hash: str | None,
    password: str,
) -> PasswordCheck:
    """Count the attempt, then (unless over a limit) verify `password` against
    `stored_hash` (None: no such account; it still costs one verify). A right password and
    a busy lane take the attempt back; a wrong one stays counted."""
    area = limits[0].key.split(":", 1)[0] if limits else "customer"
    busy = LANE.refusal(client)
    if busy:  # answered before any database work: a storm's surplus costs next to nothing
        metrics.sign_in(area, "busy")
        return PasswordCheck(busy=busy)
    counted = await throttle.count(tenant_id, limits)
    if counted.wait:
        metrics.sign_in(area, "locked")
        logs.event(
            "signin.locked",
            "sign-in refused: too many attempts",
            level=logging.WARNING,
            tenant=tenant_id,
            client=client,
            area=area,
        )
        return PasswordCheck(too_many=counted.wait)
    try:
        right = await verify_password(stored_hash, password, client)
    except LaneBusy as full:
        await counted.release()
        metrics.sign_in(area, "busy")
        return PasswordCheck(busy=full.retry_after)
    if right:
        await counted.succeeded()
        metrics.sign_in(area, "right")
    else:
        metrics.sign_in(area, "wrong")
        logs.event("signin.failed", "wrong password", tenant=tenant_id, client=client, area=area)
    return PasswordCheck(right=right)


def client_of(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client as throttles and the hashing lane count it (see portal.forwarded)."""
    return client_key(client_ip(request))


def refusal(check: PasswordCheck) -> tuple[int, str, dict[str, str] | None]:
    """(status, message, headers) for a password that did not open the account."""
    if check.too_many:
        message = f"Too many attempts. Please try again in {throttle.minutes_text(check.too_many)}."
        return 429, message, {"Retry-After": str(check.too_many)}
    if check.busy:
        return 503, BUSY, {"Retry-After": str(check.busy)}
    return 422, NO_MATCH, None

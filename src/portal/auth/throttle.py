"""Throttling stored in the database, so every app process sees the same counts.

A limit is "at most N hits per key in a sliding window". When a key is over its
limit, the answer says how long until the oldest hit leaves the window, so a
lock never lasts longer than the window (15 minutes for sign-in): a stranger
cannot keep a customer out for long, and a password reset clears it at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from portal.db.tables import ThrottleHit


@dataclass(frozen=True)
class Limit:
    """At most `hits` per `window` for one key."""

    key: str
    hits: int
    window: timedelta


def now() -> datetime:
    return datetime.now(UTC)


async def retry_after(limits: list[Limit]) -> int | None:
    """Seconds to wait if any limit is reached, else None."""
    worst: int | None = None
    moment = now()
    for limit in limits:
        since = moment - limit.window
        rows = (
            await ThrottleHit.select(ThrottleHit.created_at)
            .where((ThrottleHit.key == limit.key) & (ThrottleHit.created_at > since))
            .order_by(ThrottleHit.created_at, ascending=False)
            .limit(limit.hits)
            .run()
        )
        if len(rows) >= limit.hits:
            oldest = rows[-1]["created_at"]
            wait = math.ceil((oldest + limit.window - moment).total_seconds())
            worst = max(worst or 0, max(wait, 1))
    return worst


async def hit(*keys: str) -> None:
    """Count one attempt against each key."""
    if keys:
        await ThrottleHit.insert(*[ThrottleHit(key=k, created_at=now()) for k in keys]).run()


async def clear(*keys: str) -> None:
    """Forget a key's attempts (after a successful sign-in or password reset)."""
    if keys:
        await ThrottleHit.delete().where(ThrottleHit.key.is_in(list(keys))).run()


async def prune(older_than: timedelta = timedelta(days=1)) -> None:
    """Drop old attempts (run from the background worker)."""
    await ThrottleHit.delete().where(ThrottleHit.created_at < now() - older_than).run()


def minutes_text(seconds: int) -> str:
    """ "3 minutes" / "1 minute" for a wait in seconds (rounded up)."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"

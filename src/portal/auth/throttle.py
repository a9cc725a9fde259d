"""Throttling stored in the database, so every app process sees the same counts.

A limit is "at most N attempts per key of a business in a window". A key's window starts
at its first attempt and lasts `window`; then the count starts over. So a lock never
lasts longer than the window (15 minutes for sign-in) however hard someone keeps trying,
and a password reset clears it at once.

Counting and checking are one step: `count` adds the attempt and reads the new count back
in one statement (`INSERT … ON CONFLICT (tenant, key) DO UPDATE … RETURNING`), before the
attempt is evaluated. PostgreSQL locks the key's row for the update and SQLite has one
writer at a time, so simultaneous attempts — from any number of processes — each see a
different count, and at most N of them see a count within the limit. (Checking first and
counting afterwards let 30 simultaneous wrong passwords all be evaluated against a limit
of 10.) An attempt that turns out not to count is taken back: `Counted.succeeded` (a
right password) and `Counted.release` (never evaluated: the hashing lane was busy).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import timedelta

from portal.db.tables import ThrottleCount

UPSERT = """INSERT INTO throttle_count (tenant, key, hits, resets_at) VALUES {rows}
ON CONFLICT (tenant, key) DO UPDATE SET
    hits = CASE WHEN throttle_count.resets_at <= {{}} THEN 1 ELSE throttle_count.hits + 1 END,
    resets_at = CASE WHEN throttle_count.resets_at <= {{}}
        THEN excluded.resets_at ELSE throttle_count.resets_at END
RETURNING key, hits, resets_at"""


@dataclass(frozen=True)
class Limit:
    """At most `hits` attempts per `window` for one key of a business. `cleared_by_success`:
    a right password forgets the key's earlier failures (the per-email sign-in limit)."""

    key: str
    hits: int
    window: timedelta
    cleared_by_success: bool = False


@dataclass
class Counted:
    """One attempt, counted against some limits of a business."""

    tenant_id: int
    limits: list[Limit]
    # key -> the window (its end, Unix seconds) the attempt was counted in
    windows: dict[str, int] = field(default_factory=dict)
    wait: int | None = None  # seconds until the fullest key's window ends, when over a limit

    async def release(self) -> None:
        """Take the attempt back: it was never evaluated (the hashing lane was busy)."""
        await self._take_back([lim.key for lim in self.limits])

    async def succeeded(self) -> None:
        """The attempt was a right password: it does not count, and keys cleared by success
        forget their earlier failures too."""
        await clear(self.tenant_id, *[lim.key for lim in self.limits if lim.cleared_by_success])
        await self._take_back([lim.key for lim in self.limits if not lim.cleared_by_success])

    async def _take_back(self, keys: list[str]) -> None:
        for key in keys:
            # Only in the window it was counted in: a new window owes nothing.
            await (
                ThrottleCount.update({ThrottleCount.hits: ThrottleCount.hits - 1})
                .where(
                    (ThrottleCount.tenant == self.tenant_id)
                    & (ThrottleCount.key == key)
                    & (ThrottleCount.resets_at == self.windows[key])
                    & (ThrottleCount.hits > 0)
                )
                .run()
            )


def now() -> int:
    return int(time.time())


async def count(tenant_id: int, limits: list[Limit]) -> Counted:
    """Count one attempt against each limit and say whether any is now over.

    One statement for all the keys; keys in a fixed order, so two requests for the same
    pair of keys lock their rows in the same order (no deadlock on PostgreSQL).
    """
    limits = sorted({lim.key: lim for lim in limits}.values(), key=lambda lim: lim.key)
    counted = Counted(tenant_id, limits)
    if not limits:
        return counted
    moment = now()
    values: list[object] = []
    for lim in limits:
        values += [tenant_id, lim.key, moment + int(lim.window.total_seconds())]
    sql = UPSERT.format(rows=", ".join(["({}, {}, 1, {})"] * len(limits)))
    rows = await ThrottleCount.raw(sql, *values, moment, moment).run()
    by_key = {lim.key: lim for lim in limits}
    for row in rows:
        counted.windows[row["key"]] = row["resets_at"]
        if row["hits"] > by_key[row["key"]].hits:
            wait = max(1, row["resets_at"] - moment)
            counted.wait = max(counted.wait or 0, wait)
    return counted


async def clear(tenant_id: int, *keys: str) -> None:
    """Forget keys' attempts (after a successful sign-in or a password reset)."""
    if keys:
        await (
            ThrottleCount.delete()
            .where((ThrottleCount.tenant == tenant_id) & ThrottleCount.key.is_in(list(keys)))
            .run()
        )


async def prune() -> None:
    """Drop counts whose window has ended (run from the background worker)."""
    await ThrottleCount.delete().where(ThrottleCount.resets_at < now()).run()


def minutes_text(seconds: int) -> str:
    """ "3 minutes" / "1 minute" for a wait in seconds (rounded up)."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"

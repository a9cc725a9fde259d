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

A key already over its limit is refused by a read alone, with nothing written: its
window does not move however often it is tried, so counting those attempts would change
nothing but cost every storming request a write (on SQLite, the one write lock every
sign-in shares). The read is the plain-SQL path (db/fast.py: on SQLite the event loop's
own read connection, no thread); the count-and-check above stays the one atomic step for
every attempt the read lets through.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import timedelta

from portal.db import fast
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
            if key not in self.windows:
                continue  # never counted (refused by the read)
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


async def already_over(tenant_id: int, limits: list[Limit]) -> int | None:
    """Seconds until the fullest key's window ends, if a key is already at its limit (the
    next attempt would be over it); else None. One read, nothing written."""
    if not limits:
        return None
    marks = ", ".join(["{}"] * len(limits))
    rows = await fast.fetch(
        f"SELECT key, hits, resets_at FROM throttle_count WHERE tenant = {{}} AND key IN ({marks})",
        tenant_id,
        *[lim.key for lim in limits],
    )
    by_key = {lim.key: lim for lim in limits}
    moment = now()
    waits = [
        row["resets_at"] - moment
        for row in rows
        if row["resets_at"] > moment and row["hits"] >= by_key[row["key"]].hits
    ]
    return max(1, max(waits)) if waits else None


async def count(tenant_id: int, limits: list[Limit]) -> Counted:
    """Count one attempt against each limit and say whether any is now over.

    A key already over its limit answers from a read, writing nothing (see the module
    docstring). Otherwise one statement for all the keys; keys in a fixed order, so two
    requests for the same pair of keys lock their rows in the same order (no deadlock on
    PostgreSQL).
    """
    limits = sorted({lim.key: lim for lim in limits}.values(), key=lambda lim: lim.key)
    counted = Counted(tenant_id, limits)
    if not limits:
        return counted
    counted.wait = await already_over(tenant_id, limits)
    if counted.wait:
        return counted  # nothing counted, so nothing to take back
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

"""What `/readyz` and `/metrics` read: is the database reachable and its schema current,
has a worker reported lately, how deep is the outbox, how many payments in each state."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from portal.db import fast
from portal.db.tables import WorkerHeartbeat


async def ping() -> None:
    """One round trip to the database (raises `DatabaseUnavailable` when it is out of reach)."""
    await fast.fetch("SELECT 1 AS one")


async def beat(worker: str | None = None) -> None:
    """Record that this worker process is alive now."""
    name = worker or f"{socket.gethostname()}:{os.getpid()}"
    now = datetime.now(UTC)
    await WorkerHeartbeat.raw(
        "INSERT INTO worker_heartbeat (worker, beat_at) VALUES ({}, {}) "
        "ON CONFLICT (worker) DO UPDATE SET beat_at = excluded.beat_at",
        name,
        now,
    ).run()


async def forget_worker(worker: str | None = None) -> None:
    """A worker that stopped cleanly takes its row away."""
    name = worker or f"{socket.gethostname()}:{os.getpid()}"
    await WorkerHeartbeat.delete().where(WorkerHeartbeat.worker == name).run()


async def last_heartbeat_age() -> float | None:
    """Seconds since any worker last reported; None when none ever did."""
    rows = await fast.fetch("SELECT max(beat_at) AS beat_at FROM worker_heartbeat")
    latest = fast.timestamp(rows[0]["beat_at"]) if rows else None
    if latest is None:
        return None
    result: float | None = max(0.0, (datetime.now(UTC) - latest).total_seconds())
    return result


async def outbox_summary() -> dict[str, Any]:
    """Pending emails and the age of the oldest, in seconds."""
    rows = await fast.fetch(
        "SELECT count(*) AS pending, min(created_at) AS oldest FROM outbox_email "
        "WHERE status = 'pending'"
    )
    oldest = fast.timestamp(rows[0]["oldest"])
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    return {"pending": int(rows[0]["pending"]), "oldest_seconds": max(0.0, age)}


async def payments_by_state() -> dict[str, int]:
    """Payments counted by status (pending, succeeded, failed)."""
    rows = await fast.fetch("SELECT status, count(*) AS n FROM payment GROUP BY status")
    counts = {"pending": 0, "succeeded": 0, "failed": 0}
    counts.update({row["status"]: int(row["n"]) for row in rows})
    return counts


class SchemaGate:
    """Whether every migration is applied, asked of the database at most every
    `recheck_seconds` while some are pending (and never again once none are): during an
    upgrade every page answers 503 "being upgraded" until `portal migrate` has run."""

    def __init__(self, recheck_seconds: float = 2.0) -> None:
        self.recheck_seconds = recheck_seconds
        self.current = False
        self.pending: list[str] = []
        self._checked_at = 0.0

    async def is_current(self) -> bool:
        """True once the schema is current (raises when the database is out of reach)."""
        if self.current:
            return True
        if time.monotonic() - self._checked_at >= self.recheck_seconds or not self._checked_at:
            from portal.db.migrate import pending_migrations

            self.pending = await pending_migrations()
            self._checked_at = time.monotonic()
            self.current = not self.pending
        return self.current

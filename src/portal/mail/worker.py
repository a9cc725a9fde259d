"""The delivery worker: sends due outbox rows, retries with backoff and jitter.

Rows are *claimed* before sending by setting a lease (`locked_until`) in one
UPDATE (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one writer at a time), so
two workers never send the same row. A worker that dies mid-send leaves its
lease to expire; the row is then sent again, with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.config import Settings
from portal.db.engine import current_engine
from portal.db.outage import OUTAGE, unavailable_in
from portal.db.tables import OutboxEmail
from portal.mail.backends import (
    Backend,
    PermanentFailure,
    TemporaryFailure,
    backend_for,
    build_message,
)

log = logging.getLogger("portal.mail")

LEASE = timedelta(seconds=90)
MAX_ATTEMPTS = 10
BASE_DELAY = 30.0  # seconds before the first retry; doubles each time
MAX_DELAY = 3600.0

_wakeup: asyncio.Event | None = None


def wake() -> None:
    """Ask this process's worker to look at the outbox now (after queuing an email)."""
    if _wakeup is not None:
        _wakeup.set()


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempts` + 1: exponential, capped, ±25 % jitter."""
    base = min(MAX_DELAY, BASE_DELAY * 2 ** max(0, attempts - 1))
    return base * (rng or random).uniform(0.75, 1.25)


async def claim(limit: int = 20, now: datetime | None = None) -> list[dict[str, Any]]:
    """Lease up to `limit` due rows to this worker and return them."""
    moment = now or datetime.now(UTC)
    skip_locked = "" if current_engine().engine_type == "sqlite" else "FOR UPDATE SKIP LOCKED"
    return await OutboxEmail.raw(
        f"""UPDATE outbox_email SET locked_until = {{}}, attempts = attempts + 1
        WHERE id IN (
            SELECT id FROM outbox_email
            WHERE status = 'pending' AND next_attempt_at <= {{}}
              AND (locked_until IS NULL OR locked_until < {{}})
            ORDER BY next_attempt_at, id LIMIT {{}} {skip_locked}
        )
        RETURNING id, message_id, to_addr, from_name, reply_to, subject, text_body,
                  html_body, attempts""",
        moment + LEASE,
        moment,
        moment,
        limit,
    ).run()


async def deliver_due(
    settings: Settings, backend: Backend | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Send every due row once; returns counts of sent, retried and failed rows."""
    backend = backend or backend_for(settings)
    counts = {"sent": 0, "retry": 0, "failed": 0}
    while True:
        rows = await claim(now=now)
        if not rows:
            return counts
        for row in rows:
            outcome = await _deliver(settings, backend, row, now)
            counts[outcome] += 1


async def _deliver(
    settings: Settings, backend: Backend, row: dict[str, Any], now: datetime | None
) -> str:
    # Retries are scheduled from the same clock the rows were claimed with.
    moment = now or datetime.now(UTC)
    try:
        await backend.send(build_message(row, settings))
    except PermanentFailure as exc:
        log.warning("email %s to %s failed for good: %s", row["id"], row["to_addr"], exc)
        await _finish(row["id"], status="failed", last_error=str(exc))
        return "failed"
    except TemporaryFailure as exc:
        if row["attempts"] >= MAX_ATTEMPTS:
            log.warning("email %s gave up after %s attempts: %s", row["id"], row["attempts"], exc)
            await _finish(row["id"], status="failed", last_error=str(exc))
            return "failed"
        delay = retry_delay(row["attempts"])
        log.info("email %s will be retried in %.0fs: %s", row["id"], delay, exc)
        await (
            OutboxEmail.update(
                {
                    OutboxEmail.locked_until: None,
                    OutboxEmail.next_attempt_at: moment + timedelta(seconds=delay),
                    OutboxEmail.last_error: str(exc)[:500],
                }
            )
            .where(OutboxEmail.id == row["id"])
            .run()
        )
        return "retry"
    await _finish(row["id"], status="sent", sent_at=moment)
    return "sent"


async def _finish(
    row_id: int, *, status: str, last_error: str = "", sent_at: datetime | None = None
) -> None:
    await (
        OutboxEmail.update(
            {
                OutboxEmail.status: status,
                OutboxEmail.locked_until: None,
                OutboxEmail.last_error: last_error[:500],
                OutboxEmail.sent_at: sent_at,
            }
        )
        .where(OutboxEmail.id == row_id)
        .run()
    )


HOUSEKEEPING_EVERY = timedelta(hours=1)


async def housekeeping() -> None:
    """Forget what no longer matters: old throttle counts, dead sessions and links."""
    from portal.auth import throttle
    from portal.db.tables import AuthToken, Session

    moment = datetime.now(UTC)
    await throttle.prune()
    await Session.delete().where(Session.expires_at < moment).run()
    await AuthToken.delete().where(AuthToken.expires_at < moment - timedelta(days=30)).run()


async def run_forever(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Deliver due emails until `stop` is set (runs inside `serve`, or as `portal worker`)."""
    global _wakeup
    _wakeup = asyncio.Event()
    stop = stop or asyncio.Event()
    backend = backend_for(settings)
    log.info("mail worker started (%s)", type(backend).__name__)
    next_housekeeping = datetime.now(UTC)
    while not stop.is_set():
        try:
            await deliver_due(settings, backend)
            if datetime.now(UTC) >= next_housekeeping:
                await housekeeping()
                next_housekeeping = datetime.now(UTC) + HOUSEKEEPING_EVERY
        except Exception as exc:  # the worker must outlive a database hiccup
            if unavailable_in(exc):
                OUTAGE.note(exc, refused=False)  # logged once per incident, not per round
            else:
                log.exception("mail worker: delivery round failed; will try again")
        _wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(stop, _wakeup), timeout=settings.mail_poll_seconds)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()

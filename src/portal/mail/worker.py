"""Email delivery: sends due outbox rows, retries with backoff and jitter (run each
round by the background worker, `portal/worker.py`).

Rows are *claimed* one at a time before sending, by setting a lease (`locked_until`)
and counting the attempt in one UPDATE (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite:
one writer at a time), so two workers never send the same row. Each email is claimed,
built, sent and marked on its own: one that fails, even one that cannot be built, never
touches another, and a worker that dies mid-send leaves only that one email leased.
When its lease expires the row is sent again, with the same Message-ID.

An email gets at most `MAX_ATTEMPTS` attempts; one that cannot be built or that the
mail server refuses for good fails at once. A failed email keeps its reason in words
(`last_error`), for the office's Emails page, where staff can retry it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from portal import logs
from portal.config import Settings
from portal.db.engine import current_engine
from portal.db.tables import OutboxEmail
from portal.mail.backends import (
    Backend,
    PermanentFailure,
    TemporaryFailure,
    backend_for,
    build_message,
)

log = logging.getLogger("portal.mail")

LEASE = timedelta(seconds=90)  # longer than one SMTP conversation may take (30 s timeout)
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
    result: float = base * (rng or random).uniform(0.75, 1.25)
    return result


async def claim(limit: int = 1, now: datetime | None = None) -> list[dict[str, Any]]:
    """Lease up to `limit` due rows that have attempts left, count an attempt on each,
    and return them."""
    moment = now or datetime.now(UTC)
    skip_locked = "" if current_engine().engine_type == "sqlite" else "FOR UPDATE SKIP LOCKED"
    result: list[dict[str, Any]] = await OutboxEmail.raw(
        f"""UPDATE outbox_email SET locked_until = {{}}, attempts = attempts + 1
        WHERE id IN (
            SELECT id FROM outbox_email
            WHERE status = 'pending' AND next_attempt_at <= {{}} AND attempts < {{}}
              AND (locked_until IS NULL OR locked_until < {{}})
            ORDER BY next_attempt_at, id LIMIT {{}} {skip_locked}
        )
        RETURNING id, message_id, to_addr, from_name, reply_to, subject, text_body,
                  html_body, attempts, last_error, tenant""",
        moment + LEASE,
        moment,
        MAX_ATTEMPTS,
        moment,
        limit,
    ).run()
    return result


async def deliver_due(
    settings: Settings,
    backend: Backend | None = None,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """Send every due row once, one at a time, until none is left or `stop` is set
    (then the email in hand is finished first); returns counts of sent, retried and
    failed rows."""
    backend = backend or backend_for(settings)
    counts = {"sent": 0, "retry": 0, "failed": await give_up_on_abandoned(now)}
    while not (stop and stop.is_set()) and (rows := await claim(now=now)):
        for row in rows:
            counts[await _deliver(settings, backend, row, now)] += 1
    return counts


async def release(row: dict[str, Any]) -> None:
    """Give a claimed row back untried (its lease cleared, the attempt not counted), for
    the next worker to send at once instead of after the lease (the worker is stopping)."""
    await (
        OutboxEmail.update(
            {OutboxEmail.locked_until: None, OutboxEmail.attempts: OutboxEmail.attempts - 1}
        )
        .where((OutboxEmail.id == row["id"]) & (OutboxEmail.status == "pending"))
        .run()
    )


async def give_up_on_abandoned(now: datetime | None = None) -> int:
    """Fail the rows whose last allowed attempt never finished (its worker died and the
    lease ran out): the cap holds, so they are not tried an extra time."""
    moment = now or datetime.now(UTC)
    rows = (
        await OutboxEmail.select(
            OutboxEmail.id, OutboxEmail.tenant, OutboxEmail.attempts, OutboxEmail.last_error
        )
        .where(
            (OutboxEmail.status == "pending")
            & (OutboxEmail.attempts >= MAX_ATTEMPTS)
            & (OutboxEmail.locked_until.is_null() | (OutboxEmail.locked_until < moment))
        )
        .run()
    )
    for row in rows:
        _failed(row, f"email {row['id']} abandoned after {row['attempts']} attempts")
        await _finish(row["id"], status="failed", last_error=_gave_up(row, row["last_error"]))
    return len(rows)


def _failed(row: dict[str, Any], message: str) -> None:
    """An email that will not be sent: one `email.failed` event (its id and business, not
    its recipient; the office's Emails page shows who it was for)."""
    logs.event(
        "email.failed",
        message,
        level=logging.WARNING,
        tenant=row.get("tenant"),
        email_id=row["id"],
        actor="worker",
    )


def _gave_up(row: dict[str, Any], reason: str) -> str:
    last = f" The last answer: {reason}" if reason else ""
    return f"Gave up after {row['attempts']} attempts.{last}"


async def _deliver(
    settings: Settings, backend: Backend, row: dict[str, Any], now: datetime | None
) -> str:
    """Build and send one claimed row and record the outcome; never raises for a
    problem of this one email (only when the database itself fails)."""
    # Retries are scheduled from the same clock the rows were claimed with.
    moment = now or datetime.now(UTC)
    try:
        message = build_message(row, settings)
    except Exception as exc:  # whatever the cause, retrying the same row cannot help
        _failed(row, f"email {row['id']} could not be built: {exc}")
        await _finish(
            row["id"], status="failed", last_error=f"This email could not be built: {exc}"
        )
        return "failed"
    try:
        await backend.send(message)
    except asyncio.CancelledError:
        # Stopped past the grace period mid-send: the server did not accept it (or we
        # cannot know), so the row goes back for the next worker now, not in 90 s.
        log.warning("email %s released unsent: the worker is stopping", row["id"])
        await asyncio.shield(release(row))
        raise
    except PermanentFailure as exc:
        _failed(row, f"email {row['id']} failed for good: {exc}")
        await _finish(
            row["id"], status="failed", last_error=f"The mail server refused it for good: {exc}"
        )
        return "failed"
    except Exception as exc:  # TemporaryFailure, or anything unexpected: try again later
        reason = str(exc) if isinstance(exc, TemporaryFailure) else f"{type(exc).__name__}: {exc}"
        if row["attempts"] >= MAX_ATTEMPTS:
            _failed(row, f"email {row['id']} gave up after {row['attempts']} attempts: {reason}")
            await _finish(row["id"], status="failed", last_error=_gave_up(row, reason))
            return "failed"
        delay = retry_delay(row["attempts"])
        log.info("email %s will be retried in %.0fs: %s", row["id"], delay, reason)
        await (
            OutboxEmail.update(
                {
                    OutboxEmail.locked_until: None,
                    OutboxEmail.next_attempt_at: moment + timedelta(seconds=delay),
                    OutboxEmail.last_error: reason[:500],
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
    changes: dict[Any, Any] = {
        OutboxEmail.status: status,
        OutboxEmail.locked_until: None,
        OutboxEmail.last_error: last_error[:500],
        OutboxEmail.sent_at: sent_at,
    }
    if status == "sent":
        # Delivered: its text is forgotten, so no confirmation or reset link (or anything
        # else the email said) stays in the database. Who, what subject and when stay.
        changes |= {OutboxEmail.text_body: "", OutboxEmail.html_body: ""}
    await OutboxEmail.update(changes).where(OutboxEmail.id == row_id).run()


def listen() -> asyncio.Event:
    """A new wake-up event for this process's worker loop (`portal.worker`), which
    `wake` sets."""
    global _wakeup
    _wakeup = asyncio.Event()
    return _wakeup

"""The background worker: one loop that runs the portal's background jobs in turn —
answering invitation and reset requests, delivering email and webhooks, housekeeping — inside
`portal serve` or as `portal worker`. It sits beside the app (it calls into auth and
mail alike); new background work is a new `Job` in `jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from portal.api.webhooks import deliver_due as deliver_webhooks
from portal.auth import throttle
from portal.auth.account_requests import answer_pending
from portal.config import Settings
from portal.db import health
from portal.db.outage import OUTAGE, unavailable_in
from portal.db.tables import AuthToken, OutboxEmail, Session
from portal.mail.backends import Backend, backend_for
from portal.mail.worker import deliver_due, listen
from portal.payments.service import reconcile_stale

log = logging.getLogger("portal.mail")


HOUSEKEEPING_EVERY = timedelta(hours=1)
# Payments whose gateway answer never came are asked about (payments/service.py).
PAYMENTS_EVERY = timedelta(minutes=1)


async def housekeeping(settings: Settings) -> None:
    """Forget what no longer matters: old throttle counts, dead sessions and links, and
    emails done with (sent or failed) for longer than the retention period."""
    moment = datetime.now(UTC)
    await throttle.prune()
    await Session.delete().where(Session.expires_at < moment).run()
    await AuthToken.delete().where(AuthToken.expires_at < moment - timedelta(days=30)).run()
    kept_since = moment - timedelta(days=settings.mail_retention_days)
    await (
        OutboxEmail.delete()
        .where(
            ((OutboxEmail.status == "sent") & (OutboxEmail.sent_at < kept_since))
            | ((OutboxEmail.status == "failed") & (OutboxEmail.created_at < kept_since))
        )
        .run()
    )


@dataclass(frozen=True)
class Job:
    """One kind of background work: run each round, or at most once every `every`."""

    name: str
    run: Callable[[], Awaitable[object]]
    every: timedelta | None = None


def jobs(settings: Settings, backend: Backend, stop: asyncio.Event | None = None) -> list[Job]:
    """What the worker does, in order, each round (new background work is a new entry)."""
    return [
        Job("answer account requests", lambda: answer_account_requests(settings)),
        Job("deliver emails", lambda: deliver_due(settings, backend, stop=stop)),
        Job("deliver webhooks", lambda: deliver_webhooks(settings)),
        Job("settle stale payments", lambda: reconcile_stale(settings), every=PAYMENTS_EVERY),
        Job("process payment webhooks", lambda: process_payment_webhooks(settings)),
        Job(
            "reconcile Stripe payments and bank debits",
            lambda: reconcile_payments(settings),
            every=timedelta(seconds=settings.reconcile_every_seconds),
        ),
        Job("housekeeping", lambda: housekeeping(settings), every=HOUSEKEEPING_EVERY),
    ]


async def process_payment_webhooks(settings: Settings) -> None:
    """Stripe events kept by the webhook endpoint and not processed yet (issue 14)."""
    from portal.payments.webhooks import process_due

    await process_due(settings)


async def reconcile_payments(settings: Settings) -> None:
    """Ask the gateway about payments pending too long: a lost webhook, a bank debit that
    ended, a card page left open past its 30 minutes (issue 14)."""
    from portal.payments.webhooks import reconcile

    await reconcile(settings)


async def answer_account_requests(settings: Settings) -> None:
    """Invitation and reset requests recorded by the pages become emails (issue 11.5)."""
    await answer_pending(settings)


# After SIGTERM, how long the email in flight may take to finish before it is released
# (well inside systemd's stop timeout, a little less than one SMTP timeout).
GRACE_SECONDS = 25.0
HEARTBEAT_EVERY = timedelta(seconds=10)


async def run_forever(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    heartbeat: bool = False,
    grace_seconds: float = GRACE_SECONDS,
) -> None:
    """Run the jobs until `stop` is set (inside `serve`, or as `portal worker`, which
    also reports a `heartbeat` for /readyz). When `stop` is set mid-job, the job finishes
    the email in hand within `grace_seconds`; past that it is cancelled, which releases
    the email for the next worker (mail/worker.py)."""
    wakeup = listen()
    stop = stop or asyncio.Event()
    backend = backend_for(settings)
    log.info("mail worker started (%s)", type(backend).__name__)
    work = jobs(settings, backend, stop)
    if heartbeat:
        work.insert(0, Job("heartbeat", health.beat, every=HEARTBEAT_EVERY))
    next_run: dict[str, datetime] = {}
    schema = health.SchemaGate()
    while not stop.is_set():
        if not await _schema_ready(schema):
            # Started before `portal migrate` finished: wait for it, quietly.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.mail_poll_seconds)
            continue
        for job in work:
            due = next_run.get(job.name)
            if due is not None and datetime.now(UTC) < due:
                continue
            if stop.is_set():
                break
            try:
                await _finish_or_release(job.run(), stop, grace_seconds)
            except (
                Exception
            ) as exc:  # outlive a database hiccup; one failing job never skips the rest
                if unavailable_in(exc):
                    OUTAGE.note(exc, refused=False)  # logged once per incident, not per round
                else:
                    log.exception("mail worker: %s failed; will try again", job.name)
                continue
            if job.every:
                next_run[job.name] = datetime.now(UTC) + job.every
        wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(stop, wakeup), timeout=settings.mail_poll_seconds)
    if heartbeat:
        with contextlib.suppress(Exception):
            await health.forget_worker()
    log.info("mail worker stopped")


async def _schema_ready(schema: health.SchemaGate) -> bool:
    try:
        return await schema.is_current()
    except Exception as exc:
        if unavailable_in(exc):
            OUTAGE.note(exc, refused=False)
            return False
        raise


async def _finish_or_release(work: Awaitable[object], stop: asyncio.Event, grace: float) -> None:
    """Run `work`; once `stop` is set give it `grace` seconds more, then cancel it."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            done, _ = await asyncio.wait([task], timeout=grace)
            if not done:
                # Cancelled again while it is not done: an SMTP client's clean-up (QUIT)
                # waits for the same unanswering server and must not hold the stop up.
                while not task.done():
                    task.cancel()
                    await asyncio.wait([task], timeout=1)
                with contextlib.suppress(asyncio.CancelledError):
                    task.result()
                return
        task.result()
    finally:
        stopped.cancel()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()

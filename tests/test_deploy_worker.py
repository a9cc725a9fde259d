"""`portal worker` stopped with SIGTERM in the middle of a send (issue 13.7): it finishes
the email in flight within its grace period, or past it gives the email back at once, so
it is delivered exactly once, within seconds of a new worker starting, not after the
90-second lease. Real worker processes, a real SMTP server (aiosmtpd), the module's
database."""

# These tests drive real processes and wait for them on purpose.
# ruff: noqa: ASYNC220, ASYNC251

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from portal.db.tables import OutboxEmail
from portal.testing import CHEAP_HASHING_ENV
from tests.support.mail import HoldingSink

pytestmark = pytest.mark.deploy


def start_worker(
    database_url: str, var_dir: Path, sink: HoldingSink, log: Path | None = None, **extra: str
):
    env = {
        **os.environ,
        **CHEAP_HASHING_ENV,
        "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "worker-test-secret",
        "PORTAL_SMTP_URL": sink.url,
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "worker"],
        env=env,
        stdout=open(log, "w") if log else subprocess.PIPE,  # noqa: SIM115 - the process's
        stderr=subprocess.STDOUT,
        text=True,
    )


async def queue_email(to: str) -> int:
    rows = await OutboxEmail.insert(
        OutboxEmail(
            message_id=f"<{uuid.uuid4().hex}@test>",
            to_addr=to,
            subject="Your receipt",
            text_body="Thank you for your payment.",
        )
    ).run()
    return rows[0]["id"]


async def row(email_id: int) -> dict:
    return await OutboxEmail.select().where(OutboxEmail.id == email_id).first().run()


def wait_for(predicate, timeout: float, what: str) -> float:
    """Seconds until `predicate()` held (fails after `timeout`)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, what
        time.sleep(0.05)
    return time.monotonic() - started


async def test_sigterm_mid_send_finishes_the_email_and_exits(app, database_url, var_dir):
    sink = HoldingSink(hold_seconds=3).start()
    try:
        email_id = await queue_email("finish@example.com")
        worker = start_worker(database_url, var_dir, sink)
        assert sink.arrived.wait(30), "the worker never sent"
        worker.send_signal(signal.SIGTERM)  # the server is still holding the message
        output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert len(sink.to("finish@example.com")) == 1
        assert (await row(email_id))["status"] == "sent"
        # A new worker finds nothing left to send: still exactly one.
        again = start_worker(database_url, var_dir, sink)
        time.sleep(3)
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
        assert len(sink.to("finish@example.com")) == 1
    finally:
        sink.stop()


async def test_sigterm_past_the_grace_releases_the_email_for_the_next_worker(
    app, database_url, var_dir
):
    sink = HoldingSink(hold_seconds=None).start()
    try:
        email_id = await queue_email("release@example.com")
        worker = start_worker(database_url, var_dir, sink, PORTAL_WORKER_GRACE_SECONDS="1")
        assert sink.arrived.wait(30), "the worker never sent"
        worker.send_signal(signal.SIGTERM)
        try:
            output, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
            raise AssertionError(output) from None
        assert worker.returncode == 0, output
        held = await row(email_id)
        assert held["status"] == "pending" and held["locked_until"] is None, held
        assert held["attempts"] == 0  # given back untried, not counted as a failure
        assert sink.to("release@example.com") == []
        log = var_dir / "replacement-worker.log"
        replacement = start_worker(database_url, var_dir, sink, log=log)
        try:
            # From the moment the new worker is up (its imports alone take seconds on a
            # loaded machine): delivered within seconds, not after the 90 s lease.
            wait_for(lambda: "mail worker started" in log.read_text(), 60, "no new worker")
            took = wait_for(
                lambda: sink.to("release@example.com"), 20, "not delivered by the new worker"
            )
            assert took < 20
            time.sleep(1)
            assert len(sink.to("release@example.com")) == 1
        finally:
            replacement.send_signal(signal.SIGTERM)
            replacement.wait(timeout=30)
        assert (await row(email_id))["status"] == "sent"
    finally:
        sink.stop()

"""Faults: a mail server that is down or flapping, a delivery worker killed mid-send, and
(PostgreSQL) the database dropping every connection under load.

The gateway's callback arriving twice, late, or before the customer returns is covered in
tests/test_payments.py (see docs/security.md); more SMTP cases in tests/test_mail.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from portal.auth import links
from portal.db import tables as t
from portal.mail.backends import SMTPBackend
from portal.mail.worker import deliver_due
from portal.testing import CHEAP_HASHING_ENV, MailSink, engine_kind, free_port
from tests.support.http import CSRF_FIELD, post
from tests.support.mail import SlowSink
from tests.support.world import PASSWORD


def later(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


async def outbox() -> list[dict[str, Any]]:
    return await t.OutboxEmail.select().order_by(t.OutboxEmail.id).run()


async def every_kind_of_email(world, app, settings) -> None:
    """Queue one email of each kind through the app: invitation, password reset, booking
    received and confirmed, receipt (the world's payments), invoice email."""
    from portal.db import queries

    tenant = await queries.tenant_by_host(world.a.host)
    a1 = world.customer("A1")
    await t.CustomerEmail.insert(
        t.CustomerEmail(tenant=tenant["id"], customer=a1.id, email="second@alphaplumb.example")
    ).run()
    assert await links.request_invitation(settings, tenant, "second@alphaplumb.example")
    assert await links.request_reset(settings, tenant, a1.email)
    unit = (
        await t.BusinessUnit.select(t.BusinessUnit.id)
        .where(t.BusinessUnit.tenant == tenant["id"])
        .first()
        .run()
    )["id"]
    day = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    r = await post(
        world.a.office,
        f"/office/bookings/{a1.booking_id}/book",
        {"date": day, "window": "morning", "business_unit": str(unit), "summary": "Fix the tap"},
    )
    assert r.status_code == 303, r.text[:300]
    r = await post(
        world.a.office,
        f"/office/customers/{a1.id}/invoices/{a1.invoice_ids[1]}/email",
        {"to": a1.email},
    )
    assert r.status_code == 303, r.text[:300]


async def test_smtp_down_then_flapping_delivers_every_email_exactly_once(world, app, settings):
    await every_kind_of_email(world, app, settings)
    rows = await outbox()
    subjects = " | ".join(r["subject"] for r in rows)
    for kind in ("Create your password", "Reset", "Receipt", "request", "booked", "nvoice"):
        assert kind.lower() in subjects.lower(), f"no {kind!r} email in: {subjects}"
    # Down: nothing listens. Every email is kept for later, none is lost or failed.
    down = SMTPBackend(f"smtp://127.0.0.1:{free_port()}", timeout=2)
    counts = await deliver_due(settings, down)
    assert counts == {"sent": 0, "retry": len(rows), "failed": 0}
    # Flapping: "421 try later" for the next answers, then 250.
    sink = MailSink().start()
    try:
        sink.fail_next(len(rows) + 3)
        up = SMTPBackend(sink.url)
        minutes, rounds = 0, 0
        while await t.OutboxEmail.count().where(t.OutboxEmail.status == "pending").run():
            minutes += 90  # past any back-off
            await deliver_due(settings, up, now=later(minutes))
            rounds += 1
            assert rounds < 12, "mail never got through"
        sent = await outbox()
        assert all(r["status"] == "sent" for r in sent)
        received = [m["Message-ID"] for m in sink.messages]
        assert sorted(received) == sorted(r["message_id"] for r in sent)  # each once
        assert len(set(received)) == len(received) == len(rows)
        print(
            f"\n{len(rows)} emails, {len(rows)} refused while SMTP was down, "
            f"{len(rows) + 3} answers of 421, delivered in {rounds} rounds: "
            f"{len(received)} received, {len(set(received))} distinct Message-IDs"
        )
        # Nothing is sent twice later on.
        assert await deliver_due(settings, up, now=later(minutes + 600)) == {
            "sent": 0,
            "retry": 0,
            "failed": 0,
        }
    finally:
        sink.stop()


async def test_worker_killed_mid_send_resends_once_with_the_same_message_id(
    world, app, settings, tmp_path
):
    """A real `portal worker` process, killed (SIGKILL) while the SMTP server holds the
    message unanswered: its lease runs out and the email goes again, once, with the same
    Message-ID (so the recipient's mail program can tell it is the same email)."""
    from portal.db import queries
    from portal.mail.outbox import queue_raw

    await t.OutboxEmail.update({t.OutboxEmail.status: "sent"}).where(t.OutboxEmail.id > 0).run()
    tenant = await queries.tenant_by_host(world.a.host)
    slow = SlowSink().start()
    env = {
        **os.environ,
        **CHEAP_HASHING_ENV,
        "DATABASE_URL": settings.database_url,
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORTAL_SMTP_URL": slow.url,
        "PORTAL_SECRET_KEY": settings.secret_key,
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "portal.cli",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        row_id = await queue_raw(settings, tenant, "killed@example.org", "Killed mid-send", "Hi")
        arrived = await asyncio.to_thread(slow.arrived.wait, 60)
        assert arrived, "the worker never sent the message"
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), timeout=10)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        slow.stop()
    row = await t.OutboxEmail.select().where(t.OutboxEmail.id == row_id).first().run()
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["locked_until"] is not None  # leased to the dead worker
    sink = MailSink().start()
    try:
        backend = SMTPBackend(sink.url)
        # Another worker does not take it while the lease lasts...
        assert (await deliver_due(settings, backend))["sent"] == 0
        # ...and sends it once when the lease has run out.
        assert (await deliver_due(settings, backend, now=later(5)))["sent"] == 1
        assert (await deliver_due(settings, backend, now=later(60)))["sent"] == 0
        [resent] = sink.to("killed@example.org")
        assert resent["Message-ID"] == slow.seen[0]["Message-ID"] == row["message_id"]
    finally:
        sink.stop()
    row = await t.OutboxEmail.select().where(t.OutboxEmail.id == row_id).first().run()
    assert row["status"] == "sent" and row["attempts"] == 2


# --- the database drops every connection under load (PostgreSQL) -------------------------------


@pytest.mark.skipif(engine_kind() != "postgres", reason="PostgreSQL only")
async def test_database_connections_dropped_under_load_fail_cleanly_and_recover(
    world, settings, tmp_path
):
    """A real `portal serve` process under load; every connection of the app's database is
    terminated (pg_terminate_backend: what a server restart does to the app, without
    restarting the PostgreSQL that other test runs share). Requests in flight fail with the
    friendly 503 page (no stack trace); the app recovers by itself, without a restart."""
    port = free_port()
    env = {
        **os.environ,
        **CHEAP_HASHING_ENV,
        "DATABASE_URL": settings.database_url,
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORTAL_SECRET_KEY": settings.secret_key,
        "PORT": str(port),
        "PORTAL_MAIL_WORKER": "0",
    }
    log = (tmp_path / "server.log").open("w")  # noqa: SIM115, ASYNC230 - closed below
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "portal.cli",
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    host = {"Host": f"{world.a.host}.localhost:{port}"}
    answers: list[tuple[float, int, str]] = []
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=base, headers=host, timeout=30) as probe:
            for _ in range(100):
                try:
                    if (await probe.get("/sign-in")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            customers = []
            for c in (world.customer("A1"), world.customer("A2")):
                client = httpx.AsyncClient(base_url=base, headers=host, timeout=30)
                page = await client.get("/sign-in")
                token = CSRF_FIELD.search(page.text).group(1)
                r = await client.post(
                    "/sign-in",
                    data={"_csrf_token": token, "email": c.email, "password": PASSWORD},
                )
                assert r.status_code == 303, r.text[:300]
                customers.append(client)

            async def browse(client: httpx.AsyncClient) -> None:
                paths = ["/invoices", "/history", "/memberships", "/schedule", "/sign-in"]
                n = 0
                while not stop.is_set():
                    path = paths[n % len(paths)]
                    n += 1
                    try:
                        r = await client.get(path)
                        answers.append((time.monotonic(), r.status_code, r.text))
                    except httpx.TransportError as exc:  # never expected: the server stays up
                        answers.append((time.monotonic(), 0, repr(exc)))

            workers = [asyncio.create_task(browse(customers[i % 2])) for i in range(8)]
            await asyncio.sleep(2)
            admin = await asyncpg.connect(os.environ["DATABASE_URL"])
            try:
                dbname = settings.database_url.rsplit("/", 1)[1]
                killed_at = time.monotonic()
                killed = await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    dbname,
                )
            finally:
                await admin.close()
            assert killed, "the app had no connection to drop"
            await asyncio.sleep(4)
            stop.set()
            await asyncio.gather(*workers)
            for client in customers:
                await client.aclose()
        assert server.returncode is None, "the server died"
    finally:
        server.terminate()
        await server.wait()
        log.close()
    statuses = [s for _, s, _ in answers]
    assert 0 not in statuses, "a request got no answer at all"
    bad = [(s, body[:200]) for _, s, body in answers if s not in (200, 303, 503)]
    assert not bad, f"unexpected answers: {bad[:3]}"
    for _, status, body in answers:
        if status == 503:
            assert "Traceback" not in body and "asyncpg" not in body
            assert "try again" in body
    after = [s for moment, s, _ in answers if moment > killed_at + 2]
    assert after and all(s in (200, 303) for s in after[-20:]), "the app did not recover"
    failures = statuses.count(503)
    print(f"\n{len(answers)} requests, {failures} answered 503 while connections were dropped")

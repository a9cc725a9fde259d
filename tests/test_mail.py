"""Mail that is never lost: the outbox row is written with the change; the worker
delivers it exactly once, through SMTP outages, flapping servers and racing workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from portal.auth.account_requests import answer_pending
from portal.db import tables as t
from portal.mail.backends import SMTPBackend, build_message
from portal.mail.worker import claim, deliver_due, retry_delay
from portal.testing import MailSink, first_link, free_port
from tests.conftest import make_client, post_form


@pytest.fixture
def sink():
    server = MailSink().start()
    yield server
    server.stop()


async def pending() -> list[dict]:
    return await t.OutboxEmail.select().where(t.OutboxEmail.status == "pending").run()


async def clear_outbox() -> None:
    await t.OutboxEmail.delete().where(t.OutboxEmail.id > 0).run()


async def invite(app, address: str) -> None:
    """Request an invitation; the worker's first step turns the request into an email."""
    async with make_client(app) as c:
        r = await post_form(c, "/invite", {"email": address})
        assert r.status_code == 200
    await answer_pending(app.state.settings)


def later(minutes: int = 120) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


async def test_email_has_text_and_branded_html_parts(app, demo, settings, sink):
    await clear_outbox()
    await invite(app, "bob@example.com")
    counts = await deliver_due(settings, SMTPBackend(sink.url))
    assert counts == {"sent": 1, "retry": 0, "failed": 0}
    [message] = sink.to("bob@example.com")
    assert message["Subject"] == "Create your password for the XYZ Services customer portal"
    assert message["From"] == "XYZ Services <portal@localhost>"
    assert message["Reply-To"] == "help@xyzservices.example"
    html = message.get_body(("html",)).get_content()
    assert "XYZ Services" in html and "Create your password" in html and "(555) 010-4477" in html
    link = first_link(message)
    assert link.startswith("http://xyzplumbing.localhost:8000/confirm?token=")
    assert link in html
    row = (await t.OutboxEmail.select().where(t.OutboxEmail.to_addr == "bob@example.com").run())[-1]
    assert row["status"] == "sent" and row["sent_at"] is not None
    assert message["Message-ID"] == row["message_id"]


async def test_smtp_down_request_still_succeeds_and_mail_is_delivered_once_later(
    app, demo, settings
):
    await clear_outbox()
    down = SMTPBackend(f"smtp://127.0.0.1:{free_port()}", timeout=2)  # nothing listens there
    await invite(app, "customer2010@example.net")  # the customer's request succeeds regardless
    counts = await deliver_due(settings, down)
    assert counts == {"sent": 0, "retry": 1, "failed": 0}
    [row] = await pending()
    assert row["attempts"] == 1 and row["last_error"]
    assert row["next_attempt_at"] > datetime.now(UTC)  # backed off
    # Not due yet: nothing is sent even though a server is there now.
    sink = MailSink().start()
    try:
        up = SMTPBackend(sink.url)
        assert await deliver_due(settings, up) == {"sent": 0, "retry": 0, "failed": 0}
        assert await deliver_due(settings, up, now=later()) == {"sent": 1, "retry": 0, "failed": 0}
        assert await deliver_due(settings, up, now=later(240)) == {
            "sent": 0,
            "retry": 0,
            "failed": 0,
        }
        assert len(sink.to("customer2010@example.net")) == 1
    finally:
        sink.stop()


async def test_flapping_server_421_then_250_delivers_exactly_once(app, demo, settings, sink):
    await clear_outbox()
    await invite(app, "customer2011@example.net")
    sink.fail_next(2)  # "421 Service not available" twice
    backend = SMTPBackend(sink.url)
    assert (await deliver_due(settings, backend))["retry"] == 1
    assert (await deliver_due(settings, backend, now=later(10)))["retry"] == 1
    assert (await deliver_due(settings, backend, now=later(60)))["sent"] == 1
    assert (await deliver_due(settings, backend, now=later(600))) == {
        "sent": 0,
        "retry": 0,
        "failed": 0,
    }
    assert len(sink.to("customer2011@example.net")) == 1
    row = (
        await t.OutboxEmail.select()
        .where(t.OutboxEmail.to_addr == "customer2011@example.net")
        .run()
    )[0]
    assert row["attempts"] == 3 and row["status"] == "sent"


async def test_permanent_refusal_is_marked_failed_not_retried(app, demo, settings, sink):
    await clear_outbox()
    await invite(app, "customer2012@example.net")
    sink.fail_next(1, "550 No such mailbox")
    assert (await deliver_due(settings, SMTPBackend(sink.url))) == {
        "sent": 0,
        "retry": 0,
        "failed": 1,
    }
    row = (
        await t.OutboxEmail.select()
        .where(t.OutboxEmail.to_addr == "customer2012@example.net")
        .run()
    )[0]
    assert row["status"] == "failed" and "550" in row["last_error"]
    assert await deliver_due(settings, SMTPBackend(sink.url), now=later(600)) == {
        "sent": 0,
        "retry": 0,
        "failed": 0,
    }


async def test_two_workers_never_send_the_same_email(app, demo, settings, sink):
    await clear_outbox()
    tenant = await t.Tenant.select().where(t.Tenant.host == "xyzplumbing").first().run()
    from portal.mail.outbox import queue_raw

    for n in range(12):
        await queue_raw(settings, tenant, f"load{n}@example.com", f"Note {n}", "Hello")
    backend = SMTPBackend(sink.url)
    first, second = await asyncio.gather(
        deliver_due(settings, backend), deliver_due(settings, backend)
    )
    assert first["sent"] + second["sent"] == 12
    assert len(sink.messages) == 12
    assert len({m["Message-ID"] for m in sink.messages}) == 12


async def test_a_worker_that_died_mid_send_is_replaced_and_the_resend_keeps_its_message_id(
    app, demo, settings, sink
):
    await clear_outbox()
    await invite(app, "customer2013@example.net")
    # A worker claims the row and dies before finishing (its lease stays in the row).
    [claimed] = await claim()
    assert await claim() == []  # leased: another worker does not take it
    # After the lease expires, another worker sends it, with the same Message-ID.
    assert (await deliver_due(settings, SMTPBackend(sink.url), now=later(5)))["sent"] == 1
    [message] = sink.to("customer2013@example.net")
    assert message["Message-ID"] == claimed["message_id"]


def test_retry_delay_backs_off_with_jitter():
    import random

    rng = random.Random(1)
    delays = [retry_delay(n, rng) for n in range(1, 8)]
    assert 22 <= delays[0] <= 38
    assert delays[3] > delays[0] * 4
    assert all(d <= 3600 * 1.25 for d in delays)


def test_message_ids_are_fixed_when_queued(settings):
    row = {
        "from_name": "XYZ Services",
        "to_addr": "a@example.com",
        "reply_to": "",
        "subject": "Hi",
        "message_id": "<fixed@localhost>",
        "text_body": "Hello",
        "html_body": "",
    }
    assert build_message(row, settings)["Message-ID"] == "<fixed@localhost>"


async def test_portal_worker_command_delivers_queued_mail(tmp_path, settings, app, demo, sink):
    """`portal worker` runs on its own (e.g. as a second process) and sends what is queued."""
    import os
    import sys

    from portal.mail.outbox import queue_raw

    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORTAL_SMTP_URL": sink.url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "portal.cli",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        tenant = await t.Tenant.select().where(t.Tenant.host == "xyzplumbing").first().run()
        await queue_raw(settings, tenant, "worker-test@example.com", "From the worker", "Hello")
        for _ in range(150):
            if sink.to("worker-test@example.com"):
                break
            await asyncio.sleep(0.2)
        assert len(sink.to("worker-test@example.com")) == 1
        row = (
            await t.OutboxEmail.select()
            .where(t.OutboxEmail.to_addr == "worker-test@example.com")
            .run()
        )[0]
        for _ in range(50):  # the worker marks it sent right after the SMTP answer
            if row["status"] == "sent":
                break
            await asyncio.sleep(0.1)
            row = (await t.OutboxEmail.select().where(t.OutboxEmail.id == row["id"]).run())[0]
        assert row["status"] == "sent"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)

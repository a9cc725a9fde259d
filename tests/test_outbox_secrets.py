"""Issue 11.6 — no live links left in the outbox.

Confirmation and reset links are secrets: once an email is delivered its text is
forgotten (only who, what subject and when stay, for Office › Emails), and delivered
emails are deleted after the retention period (PORTAL_MAIL_RETENTION_DAYS, 30 days).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from portal.auth.account_requests import answer_pending
from portal.config import Settings
from portal.db import queries
from portal.db import tables as t
from portal.demo import DEMO_HOST, JANE_EMAIL
from portal.mail.backends import SMTPBackend
from portal.mail.worker import deliver_due
from portal.testing import MailSink, first_link
from portal.worker import housekeeping
from tests.support.http import make_client, post_form


@pytest.fixture
def sink():
    server = MailSink().start()
    yield server
    server.stop()


async def every_outbox_value() -> str:
    """Everything the outbox table holds, as one text to search."""
    return repr(await t.OutboxEmail.select().run())


async def test_no_usable_link_stays_in_the_outbox_after_delivery(app, demo, settings, sink):
    async with make_client(app) as c:
        r = await post_form(c, "/invite", {"email": "bob@example.com"})
        assert r.status_code == 200
        r = await post_form(c, "/forgot", {"email": JANE_EMAIL})
        assert r.status_code == 200
    await answer_pending(settings)  # the worker turns the requests into emails
    assert (await deliver_due(settings, SMTPBackend(sink.url)))["sent"] == 2
    confirm = first_link(sink.to("bob@example.com")[0])
    reset = first_link(sink.to(JANE_EMAIL)[0])
    tokens = [re.search(r"token=([\w-]+)", link).group(1) for link in (confirm, reset)]
    stored = await every_outbox_value()
    for token in tokens:
        assert token not in stored
    assert "/confirm?token=" not in stored and "/reset?token=" not in stored
    # The office still sees who was emailed what, and when.
    rows = await t.OutboxEmail.select().where(t.OutboxEmail.to_addr == "bob@example.com").run()
    assert rows[-1]["status"] == "sent" and rows[-1]["sent_at"] is not None
    assert rows[-1]["subject"].startswith("Create your password")
    # The links in the delivered emails still work for their owners.
    async with make_client(app) as c:
        page = await c.get(confirm.split("localhost:8000", 1)[1])
        assert page.status_code == 200 and "Create your password" in page.text
        page = await c.get(reset.split("localhost:8000", 1)[1])
        assert page.status_code == 200 and "new password" in page.text.lower()


async def old_row(tenant: dict[str, Any], status: str, days: float) -> int:
    """An email queued (and, if sent, sent) `days` ago."""
    moment = datetime.now(UTC) - timedelta(days=days)
    rows = await t.OutboxEmail.insert(
        t.OutboxEmail(
            tenant=tenant["id"],
            message_id=f"<{uuid.uuid4().hex}@localhost>",
            to_addr=f"{status}-{days}@example.com",
            from_name=tenant["name"],
            subject=f"{status} {days} days ago",
            text_body="" if status == "sent" else "Hello",
            status=status,
            attempts=1,
            created_at=moment,
            next_attempt_at=moment,
            sent_at=moment if status == "sent" else None,
        )
    ).run()
    return rows[0]["id"]


async def remaining(ids: list[int]) -> set[int]:
    rows = await t.OutboxEmail.select(t.OutboxEmail.id).where(t.OutboxEmail.id.is_in(ids)).run()
    return {r["id"] for r in rows}


async def test_delivered_emails_are_deleted_after_the_retention_period(app, demo, settings):
    tenant = await queries.tenant_by_host(DEMO_HOST)
    assert settings.mail_retention_days == 30
    old_sent = await old_row(tenant, "sent", 31)
    recent_sent = await old_row(tenant, "sent", 29)
    old_failed = await old_row(tenant, "failed", 31)
    recent_failed = await old_row(tenant, "failed", 29)
    old_pending = await old_row(tenant, "pending", 40)  # never deleted: it is not done
    ids = [old_sent, recent_sent, old_failed, recent_failed, old_pending]
    await housekeeping(settings)
    assert await remaining(ids) == {recent_sent, recent_failed, old_pending}
    # A shorter period, from the environment.
    week = Settings.from_env({"PORTAL_MAIL_RETENTION_DAYS": "7", "PORTAL_SECRET_KEY": "x"})
    assert week.mail_retention_days == 7
    await housekeeping(settings.with_(mail_retention_days=week.mail_retention_days))
    assert await remaining(ids) == {old_pending}


def test_retention_defaults_to_30_days():
    assert Settings.from_env({"PORTAL_SECRET_KEY": "x"}).mail_retention_days == 30


async def test_emails_sent_before_this_fix_forget_their_text_when_migrated(app, demo, settings):
    from importlib import import_module

    migration = import_module(
        "portal.db.migrations.portal_2026_12_01t11_10_00_000000_forget_sent_email_text"
    )
    tenant = await queries.tenant_by_host(DEMO_HOST)
    link = "http://xyzplumbing.localhost:8000/reset?token=old-but-maybe-live"
    sent = await old_row(tenant, "sent", 2)
    pending = await old_row(tenant, "pending", 0)
    for row_id in (sent, pending):
        await (
            t.OutboxEmail.update(
                {t.OutboxEmail.text_body: link, t.OutboxEmail.html_body: f'<a href="{link}">'}
            )
            .where(t.OutboxEmail.id == row_id)
            .run()
        )
    await (await migration.forwards()).run()
    rows = {r["id"]: r for r in await t.OutboxEmail.select().run()}
    assert rows[sent]["text_body"] == rows[sent]["html_body"] == ""
    assert rows[pending]["text_body"] == link  # still to be sent: kept

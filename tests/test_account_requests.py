"""Issue 11.5: asking for an invitation or a password reset does the same work whatever the
email; the background worker looks the email up and decides what to send."""

from __future__ import annotations

import asyncio

import pytest

from portal.auth import links
from portal.auth.account_requests import answer_pending
from portal.db import tables as t
from portal.db.office import tenant_by_id
from portal.demo import JANE_EMAIL
from tests.support.http import csrf_from, make_client
from tests.support.statements import statements

UNKNOWN = "nobody-here@example.com"


async def ask(app, monkeypatch, path: str, email: str) -> tuple[list[str], str]:
    async with make_client(app) as c:
        token = await csrf_from(c, "/sign-in" if path == "/sign-in/link" else path)
        with statements(monkeypatch) as seen:
            response = await c.post(path, data={"_csrf_token": token, "email": email})
    assert response.status_code == 200
    return seen, response.text


@pytest.mark.parametrize(
    "path,known",
    [
        ("/invite", "customer2011@example.net"),  # on a record, no account yet: gets a link
        ("/invite", JANE_EMAIL),  # already registered
        ("/forgot", JANE_EMAIL),  # registered: gets a reset link
        ("/forgot", "customer2012@example.net"),  # never registered: "finish your account"
        ("/sign-in/link", JANE_EMAIL),  # registered: gets a sign-in link
        ("/sign-in/link", "customer2013@example.net"),  # never registered
    ],
)
async def test_known_and_unknown_emails_issue_the_same_statements(
    app, demo, monkeypatch, path, known
):
    known_sql, known_page = await ask(app, monkeypatch, path, known)
    unknown_sql, unknown_page = await ask(app, monkeypatch, path, UNKNOWN)
    assert known_sql, "nothing was recorded"
    assert known_sql == unknown_sql
    assert "we've sent you a link" in known_page.replace("&#39;", "'")
    # Nothing was looked up yet: the request only recorded what was asked for.
    assert await t.OutboxEmail.count().where(t.OutboxEmail.to_addr == known).run() == 0


async def test_the_worker_sends_what_each_request_calls_for(app, demo, settings):
    await answer_pending(settings)
    sent: dict[str, list[str]] = {}
    for row in await t.OutboxEmail.select(t.OutboxEmail.to_addr, t.OutboxEmail.subject).run():
        sent.setdefault(row["to_addr"], []).append(row["subject"])
    [invitation] = sent["customer2011@example.net"]
    assert invitation.startswith("Create your password")
    assert sent[JANE_EMAIL] == [
        "You already have a XYZ Services portal account",
        "Reset your XYZ Services portal password",
        "Your sign-in link for the XYZ Services customer portal",
    ]
    finish = "Finish creating your XYZ Services portal account"
    assert sent["customer2012@example.net"] == sent["customer2013@example.net"] == [finish]
    assert UNKNOWN not in sent
    assert await t.AccountRequest.count().run() == 0  # every request answered once
    assert await answer_pending(settings) == 0


async def test_two_workers_answering_one_email_at_once_both_send(app, demo, settings):
    """Two workers (two `portal serve` or `portal worker` processes on PostgreSQL) taking
    two invitation requests for one never-registered email at the same moment: both make
    "the" account, and the second used to fail on the unique (tenant, email), so its
    request was dropped and its email never sent (tests/test_bursts.py saw 4 emails for 5
    accepted requests). Now the second insert waits for the first and does nothing."""
    tenant = await tenant_by_id(demo)
    for n in range(5):  # each round a fresh email, so the two answers really race
        email = f"customer{2040 + n}@example.net"
        await t.CustomerEmail.insert(
            t.CustomerEmail(tenant=demo, customer=(await first_customer(demo)), email=email)
        ).run()
        answers = await asyncio.gather(
            links.request_invitation(settings, tenant, email),
            links.request_invitation(settings, tenant, email),
        )
        assert answers == ["confirm", "confirm"]
        accounts = await t.PortalAccount.count().where(t.PortalAccount.email == email).run()
        queued = await t.OutboxEmail.count().where(t.OutboxEmail.to_addr == email).run()
        assert (accounts, queued) == (1, 2)


async def first_customer(tenant_id: int) -> int:
    row = await t.Customer.select(t.Customer.id).where(t.Customer.tenant == tenant_id).first().run()
    return row["id"]

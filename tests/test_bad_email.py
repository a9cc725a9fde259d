"""Issue 11.2 — one bad email never blocks the others.

A line separator (U+2028, NEL, form feed…) in a business name, customer name or
template subject is cleaned wherever it enters (office forms, `portal import`) and
again when the message is built; the worker handles each email on its own, never makes
more attempts than its cap, fails an email that can never be built at once with the
reason, and the office sees failed emails (with the reason) and can retry them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from portal.db import queries
from portal.db import tables as t
from portal.demo import DEMO_HOST, JANE_EMAIL
from portal.mail.backends import SMTPBackend, build_message
from portal.mail.outbox import queue_raw
from portal.mail.worker import MAX_ATTEMPTS, deliver_due
from portal.testing import (
    MailSink,
    Server,
    engine_kind,
    fresh_database,
    start_servers,
    stop_server,
)
from tests.support.businesses import import_business, new_business_data
from tests.support.http import csrf_from
from tests.support.mail import SlowSink

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}
# The characters of the review: each made the email package raise inside the worker.
BREAKS = {"line separator": "\u2028", "NEL": "\x85", "form feed": "\x0c"}


@pytest.fixture
def sink():
    server = MailSink().start()
    yield server
    server.stop()


def later(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


async def clear_outbox() -> None:
    await t.OutboxEmail.delete().where(t.OutboxEmail.id > 0).run()


async def outbox_row(row_id: int) -> dict[str, Any]:
    return await t.OutboxEmail.select().where(t.OutboxEmail.id == row_id).first().run()


async def legacy_row(tenant: dict[str, Any], **fields: Any) -> int:
    """An outbox row written before this fix (no cleaning on the way in)."""
    values = {
        "tenant": tenant["id"],
        "message_id": f"<{uuid.uuid4().hex}@localhost>",
        "to_addr": "legacy@example.com",
        "from_name": tenant["name"],
        "reply_to": "",
        "subject": "Legacy",
        "text_body": "Hello",
        "html_body": "",
        "next_attempt_at": datetime.now(UTC) - timedelta(minutes=5),  # first in line
        **fields,
    }
    rows = await t.OutboxEmail.insert(t.OutboxEmail(**values)).run()
    return rows[0]["id"]


async def post(client, path: str, data: dict[str, Any], page: str = "/office/settings", **kw):
    token = await csrf_from(client, page)
    return await client.post(path, data={"_csrf_token": token, **data}, **kw)


# --- headers are built from cleaned text ----------------------------------------------------------


@pytest.mark.parametrize("char", BREAKS.values(), ids=BREAKS.keys())
def test_headers_are_built_from_cleaned_text(settings, char):
    row = {
        "from_name": f"XYZ{char}Services",
        "to_addr": "jane@example.com",
        "reply_to": "help@xyzservices.example",
        "subject": f"Invoice INV-7{char}from XYZ{char}Services",
        "message_id": "<fixed@localhost>",
        "text_body": f"Hello{char}Jane",
        "html_body": "",
    }
    message = build_message(row, settings)
    assert message["From"] == "XYZ Services <portal@localhost>"
    assert message["Subject"] == "Invoice INV-7 from XYZ Services"
    assert b"\r\nBcc" not in bytes(message)


async def test_business_name_is_cleaned_in_the_office_settings(app, demo, admin):
    before = await queries.tenant_by_host(DEMO_HOST)
    try:
        name = "XYZ\u2028Plumbing\x0cand\x85Heating\x1e Co"
        response = await post(admin, "/office/settings/name", {"name": name}, headers=HX)
        assert response.status_code == 200 and "Saved" in response.text
        after = await queries.tenant_by_host(DEMO_HOST)
        assert after["name"] == "XYZ Plumbing and Heating Co"
    finally:
        await (
            t.Tenant.update({t.Tenant.name: before["name"]})
            .where(t.Tenant.id == before["id"])
            .run()
        )


async def test_template_subject_is_cleaned_and_its_email_is_delivered(
    app, demo, admin, settings, sink
):
    await clear_outbox()
    page = "/office/notifications/invoice_email"
    subject = "Invoice {InvoiceNumber}\u2028from\x85{BusinessName}\x0c(please pay)"
    body = "Hello {CustomerName},\nsee {CustomerPortalLink}"
    saved = await post(admin, page, {"subject": subject, "body": body}, page=page)
    assert saved.status_code == 303, saved.text[:300]
    tenant = await queries.tenant_by_host(DEMO_HOST)
    stored = (
        await t.NotificationTemplate.select()
        .where(
            (t.NotificationTemplate.tenant == tenant["id"])
            & (t.NotificationTemplate.key == "invoice_email")
        )
        .first()
        .run()
    )
    try:
        assert stored["subject"] == "Invoice {InvoiceNumber} from {BusinessName} (please pay)"
        jane = await t.Customer.select().where(t.Customer.external_id == "C-1001").first().run()
        invoice = (
            await t.Invoice.select()
            .where((t.Invoice.customer == jane["id"]) & (t.Invoice.balance_cents > 0))
            .first()
            .run()
        )
        sent = await post(
            admin,
            f"/office/customers/{jane['id']}/invoices/{invoice['id']}/email",
            {"to": JANE_EMAIL},
            page=f"/office/customers/{jane['id']}",
        )
        assert sent.status_code == 303
        assert await deliver_due(settings, SMTPBackend(sink.url)) == {
            "sent": 1,
            "retry": 0,
            "failed": 0,
        }
        [message] = sink.to(JANE_EMAIL)
        assert message["Subject"] == f"Invoice {invoice['number']} from XYZ Services (please pay)"
    finally:
        await t.NotificationTemplate.delete().where(t.NotificationTemplate.id == stored["id"]).run()


async def test_names_are_cleaned_by_the_importer(app, demo):
    data = new_business_data("linebreaks")
    data["business"]["name"] = "Bright\u2028water\x0cPlumbing"
    data["staff"][0]["name"] = "Bea\x85Boss"
    data["customers"][0]["name"] = "Pat\u2029Lee\x0b Jr"
    data["customers"][0]["locations"][0]["street"] = "9 Elm\u2028Row"
    from portal.importer import import_file

    tenant_id = await import_file(json.dumps(data))
    tenant = await t.Tenant.select().where(t.Tenant.id == tenant_id).first().run()
    assert tenant["name"] == "Bright water Plumbing"
    staff = await t.StaffUser.select().where(t.StaffUser.tenant == tenant_id).run()
    assert {s["name"] for s in staff} == {"Bea Boss", "Dan Desk"}
    [customer] = await t.Customer.select().where(t.Customer.tenant == tenant_id).run()
    assert customer["name"] == "Pat Lee Jr"
    [location] = await t.Location.select().where(t.Location.tenant == tenant_id).run()
    assert location["street"] == "9 Elm Row"


async def test_a_name_of_nothing_but_line_breaks_is_refused_by_the_importer(app, demo):
    from portal.importer import ImportProblem, import_file

    data = new_business_data("onlybreaks")
    data["customers"][0]["name"] = "\u2028\x0c"
    with pytest.raises(ImportProblem, match=r"customers\[0\]\.name"):
        await import_file(json.dumps(data))
    assert not await t.Tenant.exists().where(t.Tenant.host == "onlybreaks").run()


async def test_staff_name_is_cleaned_by_create_staff(app, demo):
    from portal.auth.staff import create_staff

    problem = await create_staff(
        DEMO_HOST, "new.desk@xyzservices.example", "Nia\u2028Desk\x0c", "office", "long enough pass"
    )
    assert problem is None
    row = (
        await t.StaffUser.select()
        .where(t.StaffUser.email == "new.desk@xyzservices.example")
        .first()
        .run()
    )
    assert row["name"] == "Nia Desk"


# --- the worker: each email on its own ------------------------------------------------------------


async def test_one_unbuildable_email_never_blocks_the_others(app, demo, settings, sink):
    """100 emails of three businesses, with rows from before the fix first in line: names
    and subjects with line separators (sent, cleaned) and one that can never be built (a
    recipient with a line separator and a smuggled Bcc): it fails at once, with its reason;
    every other email is delivered exactly once."""
    await clear_outbox()
    await import_business("mailb")
    await import_business("mailc")
    tenants = [await queries.tenant_by_host(h) for h in (DEMO_HOST, "mailb", "mailc")]
    poisoned = await legacy_row(
        tenants[1], to_addr="pat@mailb.example\u2028Bcc: everyone@example.com"
    )
    legacy = [
        await legacy_row(
            tenants[0], from_name="XYZ\u2028Services", subject="Invoice\x85INV-1", to_addr="a@x.io"
        ),
        await legacy_row(tenants[2], subject="Your\x0cbill", to_addr="c@x.io"),
    ]
    good = []
    for n in range(100):  # 100 good emails, 34 + 33 + 33
        tenant = tenants[n % 3]
        to = f"good{n}@{tenant['host']}.example"
        good.append(await queue_raw(settings, tenant, to, f"Note {n}", "Hello"))
    backend = SMTPBackend(sink.url)
    for minutes in range(0, 12 * 90, 90):  # rounds, each past any back-off
        await deliver_due(settings, backend, now=later(minutes))
    rows = {r["id"]: r for r in await t.OutboxEmail.select().run()}
    assert all(r["attempts"] <= MAX_ATTEMPTS for r in rows.values())
    expected = {rows[i]["message_id"] for i in legacy + good}
    received = [m["Message-ID"] for m in sink.messages]
    assert sorted(received) == sorted(expected)  # each exactly once, the poisoned one never
    assert all(rows[i]["status"] == "sent" for i in legacy + good)
    bad = rows[poisoned]
    assert bad["status"] == "failed" and bad["attempts"] == 1
    assert "could not be built" in bad["last_error"]
    assert "recipient" in bad["last_error"]
    print(
        f"\n{len(good)} good emails of 3 businesses and 2 with line separators queued behind "
        f"1 that cannot be built: {len(received)} received, {len(set(received))} distinct, "
        f"the poisoned one {bad['status']} after {bad['attempts']} attempt ({bad['last_error']})"
    )
    [cleaned] = sink.to("a@x.io")
    assert cleaned["From"] == "XYZ Services <portal@localhost>"
    assert cleaned["Subject"] == "Invoice INV-1"
    assert sink.to("c@x.io")[0]["Subject"] == "Your bill"


async def test_the_attempt_cap_is_never_passed(app, demo, settings, sink):
    await clear_outbox()
    tenant = await queries.tenant_by_host(DEMO_HOST)
    # A worker died during the last allowed attempt and its lease ran out.
    last = await legacy_row(
        tenant, to_addr="last@example.com", attempts=MAX_ATTEMPTS, locked_until=later(-1)
    )
    # Another email meets a server that answers "try later" every time.
    flapping = await queue_raw(settings, tenant, "flap@example.com", "Flapping", "Hello")
    sink.fail_next(50)
    backend = SMTPBackend(sink.url)
    for minutes in range(0, 20 * 90, 90):
        await deliver_due(settings, backend, now=later(minutes))
    gave_up = await outbox_row(last)
    assert gave_up["status"] == "failed" and gave_up["attempts"] == MAX_ATTEMPTS
    assert f"{MAX_ATTEMPTS} attempts" in gave_up["last_error"]
    tried = await outbox_row(flapping)
    assert tried["status"] == "failed" and tried["attempts"] == MAX_ATTEMPTS
    assert f"{MAX_ATTEMPTS} attempts" in tried["last_error"] and "421" in tried["last_error"]
    assert sink.to("last@example.com") == [] and sink.to("flap@example.com") == []


async def test_a_worker_killed_mid_send_leaves_no_other_email_leased(
    app, demo, settings, tmp_path, sink
):
    """A real `portal worker` process is killed while the SMTP server holds its message:
    only that email waits for its lease; the others go out at once with another worker."""
    await clear_outbox()
    tenant = await queries.tenant_by_host(DEMO_HOST)
    slow = SlowSink().start()
    first = await queue_raw(settings, tenant, "held@example.org", "Held", "Hi")
    others = [
        await queue_raw(settings, tenant, f"next{n}@example.org", "Next", "Hi") for n in (1, 2)
    ]
    env = {
        **os.environ,
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
        assert await asyncio.to_thread(slow.arrived.wait, 60), "the worker never sent"
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), timeout=10)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        slow.stop()
    # Right away (no lease has run out): the two others are sent, the held one waits.
    counts = await deliver_due(settings, SMTPBackend(sink.url))
    assert counts == {"sent": 2, "retry": 0, "failed": 0}
    assert [(await outbox_row(i))["status"] for i in others] == ["sent", "sent"]
    assert (await outbox_row(first))["status"] == "pending"


# --- two server processes sharing PostgreSQL -----------------------------------------------------


async def _signed_in_admin(server: Server) -> httpx.AsyncClient:
    """The demo business's administrator, signed in on `server`."""
    from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD

    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}",
        headers={"Host": f"{DEMO_HOST}.localhost:{server.port}"},
        timeout=30,
    )
    token = await csrf_from(client, "/office/sign-in")
    r = await client.post(
        "/office/sign-in",
        data={"_csrf_token": token, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    )
    assert r.status_code == 303, r.text[:300]
    return client


@pytest.mark.skipif(engine_kind() != "postgres", reason="two processes share PostgreSQL")
async def test_two_server_processes_deliver_each_email_once_and_retry_once(tmp_path, sink):
    """Two `portal serve` processes (each with its mail worker) on one PostgreSQL database:
    a poisoned row ahead of 100 good ones, all due at once; then both processes get Retry
    for the same failed email at the same moment."""
    async with fresh_database(tmp_path) as url:
        servers = await asyncio.to_thread(
            start_servers, tmp_path, 2, url, {"PORTAL_SMTP_URL": sink.url}
        )
        conn = await asyncpg.connect(url)
        try:
            tenant_id = await conn.fetchval("SELECT id FROM tenant WHERE host = $1", DEMO_HOST)
            insert = (
                "INSERT INTO outbox_email (tenant, message_id, to_addr, from_name, reply_to, "
                "subject, text_body, html_body, status, attempts, next_attempt_at, last_error, "
                "created_at) VALUES ($1, $2, $3, 'XYZ Services', '', $4, 'Hello', '', $5, 0, "
                "now() - interval '1 minute', '', now()) RETURNING id"
            )
            async with conn.transaction():  # both workers find all of them at once
                poisoned = await conn.fetchval(
                    insert,
                    tenant_id,
                    "<poison@localhost>",
                    "p@x.io\u2028Bcc: all@x.io",
                    "P",
                    "pending",
                )
                good = [
                    await conn.fetchval(
                        insert, tenant_id, f"<good{n}@localhost>", f"g{n}@x.io", f"N{n}", "pending"
                    )
                    for n in range(100)
                ]
            for _ in range(300):
                if not await conn.fetchval(
                    "SELECT count(*) FROM outbox_email WHERE status = 'pending'"
                ):
                    break
                await asyncio.sleep(0.1)
            rows = {r["id"]: r for r in await conn.fetch("SELECT * FROM outbox_email")}
            received = [m["Message-ID"] for m in sink.messages]
            assert sorted(received) == sorted(f"<good{n}@localhost>" for n in range(100))
            assert all(rows[i]["status"] == "sent" and rows[i]["attempts"] == 1 for i in good)
            assert rows[poisoned]["status"] == "failed" and rows[poisoned]["attempts"] == 1
            assert "could not be built" in rows[poisoned]["last_error"]

            # Both processes are asked to retry the same failed email at the same moment.
            again = await conn.fetchval(
                insert, tenant_id, "<again@localhost>", "again@x.io", "Again", "failed"
            )
            clients = [await _signed_in_admin(s) for s in servers]
            try:
                tokens = [await csrf_from(c, "/office/emails") for c in clients]
                answers = await asyncio.gather(
                    *[
                        c.post(f"/office/emails/{again}/retry", data={"_csrf_token": tok})
                        for c, tok in zip(clients, tokens, strict=True)
                    ]
                )
            finally:
                for c in clients:
                    await c.aclose()
            assert sorted(a.status_code for a in answers) == [303, 409]
            for _ in range(100):
                if (
                    await conn.fetchval("SELECT status FROM outbox_email WHERE id = $1", again)
                    == "sent"
                ):
                    break
                await asyncio.sleep(0.1)
            assert len(sink.to("again@x.io")) == 1
        finally:
            await conn.close()
            for server in servers:
                stop_server(server)

"""Issue 11's must-show, as a test: one poisoned email among 100 good ones of three
businesses, delivered by two real `portal worker` processes to a real SMTP server
(aiosmtpd), while the good ones include the receipts of real card payments.

Every good email arrives exactly once (counted by Message-ID and by recipient at the SMTP
server), the poisoned one is failed with its reason and that reason is on the business's
Office › Emails page, and the payments reconcile to the cent: the succeeded payments, their
allocations and the drop in the open balances are the same sum. `bench/load.py` runs the
same fault under load.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest

from portal.db import queries
from portal.db import tables as t
from portal.demo import DEMO_HOST
from portal.mail.outbox import queue_raw
from portal.testing import MailSink
from tests.support.businesses import import_business
from tests.support.paying import new_invoice, pay

POISONED_TO = "pat@xyz.example\u2028Bcc: everyone@example.com"


@pytest.fixture
def sink():
    server = MailSink().start()
    yield server
    server.stop()


async def open_balance(tenant_id: int) -> int:
    rows = (
        await t.Invoice.select(t.Invoice.balance_cents).where(t.Invoice.tenant == tenant_id).run()
    )
    return sum(r["balance_cents"] for r in rows)


async def test_one_poisoned_email_among_100_good_ones_with_real_workers(
    jane, admin, demo, settings, sink, tmp_path
):
    await t.OutboxEmail.delete().where(t.OutboxEmail.id > 0).run()
    await import_business("poisonb")
    await import_business("poisonc")
    tenants = [await queries.tenant_by_host(h) for h in (DEMO_HOST, "poisonb", "poisonc")]
    invoices = [await new_invoice(demo, total=total) for total in (12345, 6789, 1001)]
    open_before = await open_balance(demo)

    # The email that can never be built, first in line (written raw, as a row from before
    # the fix that cleans recipients on the way in).
    [row] = await t.OutboxEmail.insert(
        t.OutboxEmail(
            tenant=demo,
            message_id=f"<{uuid.uuid4().hex}@localhost>",
            to_addr=POISONED_TO,
            from_name=tenants[0]["name"],
            subject="Your invoice",
            text_body="Hello",
            next_attempt_at=datetime.now(UTC) - timedelta(minutes=5),
        )
    ).run()
    poisoned = row["id"]

    # Three real card payments: their receipts are among the good emails.
    for invoice in invoices:
        receipt = await pay(jane, [invoice["id"]])
        assert "Payment received" in unescape(receipt.text)
    good = [
        r["id"] for r in await t.OutboxEmail.select(t.OutboxEmail.id).run() if r["id"] != poisoned
    ]
    assert len(good) == 3
    for n in range(97):  # 100 good ones in all, of the three businesses
        tenant = tenants[n % 3]
        to = f"good{n}@{tenant['host']}.example"
        good.append(await queue_raw(settings, tenant, to, f"Note {n}", "Hello"))

    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORTAL_SECRET_KEY": settings.secret_key,
        "PORTAL_SMTP_URL": sink.url,
    }
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "portal.cli",
            "worker",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        for _ in range(1200):
            waiting = await t.OutboxEmail.count().where(t.OutboxEmail.status == "pending").run()
            if not waiting:
                break
            await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            await worker.wait()

    rows = {r["id"]: r for r in await t.OutboxEmail.select().run()}
    received = Counter(str(m["Message-ID"]) for m in sink.messages)
    # Every good email exactly once, by Message-ID and by recipient; the poisoned one never.
    assert sorted(received) == sorted(rows[i]["message_id"] for i in good)
    assert set(received.values()) == {1}
    recipients = Counter(str(m["To"]) for m in sink.messages)
    for i in good:
        assert rows[i]["status"] == "sent" and rows[i]["attempts"] == 1
        assert recipients[rows[i]["to_addr"]] >= 1
    assert recipients["jane@example.com"] == 3  # the three receipts
    bad = rows[poisoned]
    assert bad["status"] == "failed" and bad["attempts"] == 1
    assert "could not be built" in bad["last_error"] and "recipient" in bad["last_error"]
    # The office sees it, with its reason.
    page = unescape((await admin.get("/office/emails")).text)
    failed_part = page.split("Failed emails", 1)[1].split("Recent emails", 1)[0]
    assert "Bcc: everyone@example.com" in failed_part
    assert bad["last_error"] in failed_part

    # Payments reconciled to the cent.
    succeeded = (
        await t.Payment.select()
        .where(
            (t.Payment.tenant == demo)
            & (t.Payment.source == "portal")
            & (t.Payment.status == "succeeded")
        )
        .run()
    )
    allocations = (
        await t.PaymentAllocation.select()
        .where(t.PaymentAllocation.payment.is_in([p["id"] for p in succeeded]))
        .run()
    )
    paid = sum(p["amount_cents"] for p in succeeded)
    assert paid == 12345 + 6789 + 1001
    assert sum(a["amount_cents"] for a in allocations) == paid
    assert open_before - await open_balance(demo) == paid

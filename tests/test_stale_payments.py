"""A card charged whose callback was lost, by a customer who never comes back, is recorded
by the background worker.

Found by the load run's fault (bench/load.py --kill-at): an app process killed right
after the sandbox took the card never delivers the callback (the sandbox sends it once,
from that process), and until then only the customer's next Invoices or History page
asked the gateway. A customer who closed the tab left money charged and the invoice
unpaid. Now the worker asks the gateway about every payment pending for longer than
`STALE_AFTER` and settles those that ended.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

from portal.db.tables import AuditEvent, Payment, PaymentAllocation, SandboxCheckout
from portal.payments.service import STALE_AFTER, reconcile_stale
from tests.support.paying import balances, new_invoice, submit_pay


async def charged_without_callback(jane, demo, total: int) -> tuple[dict, int]:
    """A payment started by Jane whose card the provider took; its callback never came
    and Jane never came back. Returns the invoice and the payment id."""
    invoice = await new_invoice(demo, total=total)
    started = await submit_pay(jane, [invoice["id"]])
    ref = started.headers["location"].rsplit("/", 1)[1]
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: "Visa",
                SandboxCheckout.card_last4: "4242",
                SandboxCheckout.completed_at: datetime.now(UTC),
            }
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )
    [payment] = await Payment.select(Payment.id).where(Payment.gateway_ref == ref).run()
    return invoice, payment["id"]


async def started_ago(payment_id: int, age: timedelta) -> None:
    await (
        Payment.update({Payment.created_at: datetime.now(UTC) - age})
        .where(Payment.id == payment_id)
        .run()
    )


async def status_of(payment_id: int) -> str:
    row = await Payment.select(Payment.status).where(Payment.id == payment_id).first().run()
    return row["status"]


async def test_a_real_worker_records_a_charge_whose_callback_was_lost(
    jane, demo, settings, tmp_path
):
    invoice, payment_id = await charged_without_callback(jane, demo, 7300)
    await started_ago(payment_id, STALE_AFTER + timedelta(seconds=30))
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 7300}
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "PORTAL_VAR_DIR": str(tmp_path),
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
        for _ in range(600):
            if await status_of(payment_id) != "pending":
                break
            await asyncio.sleep(0.1)
    finally:
        worker.terminate()
        await worker.wait()
    assert await status_of(payment_id) == "succeeded"
    assert await balances(demo, invoice["number"]) == {invoice["number"]: 0}
    allocated = (
        await PaymentAllocation.select().where(PaymentAllocation.payment == payment_id).run()
    )
    assert sum(a["amount_cents"] for a in allocated) == 7300
    assert len(await AuditEvent.select().where(AuditEvent.invoice == invoice["id"]).run()) == 1


async def test_recent_and_still_open_payments_are_left_alone(jane, demo, settings):
    # Old, but the customer is still on the card page (nothing charged, checkout open).
    open_invoice = await new_invoice(demo, total=7500)
    started = await submit_pay(jane, [open_invoice["id"]])
    ref = started.headers["location"].rsplit("/", 1)[1]
    [still_open] = await Payment.select(Payment.id).where(Payment.gateway_ref == ref).run()
    await started_ago(still_open["id"], STALE_AFTER * 2)
    # Charged a moment ago: its callback may still be on its way; not the worker's yet.
    # (Started after the other: Jane's Invoices tab asks the gateway about her payments.)
    recent_invoice, recent = await charged_without_callback(jane, demo, 7400)
    await reconcile_stale(settings)
    assert await status_of(recent) == "pending"
    assert await status_of(still_open["id"]) == "pending"
    assert await balances(demo, recent_invoice["number"], open_invoice["number"]) == {
        recent_invoice["number"]: 7400,
        open_invoice["number"]: 7500,
    }
    # Once it is old enough, the charged one is recorded; the open one still waits.
    await reconcile_stale(settings, moment=datetime.now(UTC) + STALE_AFTER * 2)
    assert await status_of(recent) == "succeeded"
    assert await status_of(still_open["id"]) == "pending"

"""Refunds through the sandbox gateway (the demo's): the same office form and rules as
with Stripe (the sandbox keeps no balances: the portal's refund rows are the record)."""

from __future__ import annotations

from html import unescape

from portal.db import events
from portal.db.tables import Payment
from tests.support.http import post_form
from tests.support.paying import balances, new_invoice, pay


async def test_partial_and_full_refund_through_the_sandbox(admin, jane, demo):
    a = await new_invoice(demo, total=15000)
    receipt = await pay(jane, [a["id"]])
    assert "Payment received" in receipt.text
    payment = await Payment.select().order_by(Payment.id, ascending=False).first().run()
    cursor = max([e["id"] for e in await events.after(demo, 0, 1000)] or [0])

    part = await post_form(
        admin,
        f"/office/payments/{payment['id']}/refund",
        {"invoice": str(a["id"]), "amount": "$25", "reason": "Discount agreed on the phone"},
        csrf_page=f"/office/invoices/{a['id']}",
    )
    assert part.status_code == 303
    assert await balances(demo, a["number"]) == {a["number"]: 2500}
    rest = await post_form(
        admin,
        f"/office/payments/{payment['id']}/refund",
        {"invoice": str(a["id"]), "amount": "", "reason": "Job canceled"},
        csrf_page=f"/office/invoices/{a['id']}",
    )
    assert rest.status_code == 303
    assert await balances(demo, a["number"]) == {a["number"]: 15000}
    happened = [e["type"] for e in await events.after(demo, cursor, 100)]
    assert happened.count("payment.refunded") == 2
    page = unescape((await admin.get(f"/office/invoices/{a['id']}")).text)
    assert "Discount agreed on the phone" in page and "Job canceled" in page
    receipt_again = unescape((await jane.get(f"/payments/{payment['id']}")).text)
    assert "Refunded" in receipt_again and "$150.00" in receipt_again


async def test_a_payment_that_did_not_go_through_cannot_be_refunded(admin, jane, demo):
    a = await new_invoice(demo, total=5000)
    await pay(jane, [a["id"]], card="4000 0000 0000 0002")
    failed = await Payment.select().order_by(Payment.id, ascending=False).first().run()
    assert failed["status"] == "failed"
    answer = await post_form(
        admin,
        f"/office/payments/{failed['id']}/refund",
        {"invoice": str(a["id"]), "amount": "", "reason": "x"},
        csrf_page=f"/office/invoices/{a['id']}",
    )
    assert answer.status_code == 404
    assert await balances(demo, a["number"]) == {a["number"]: 5000}

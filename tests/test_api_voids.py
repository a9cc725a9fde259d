"""Invoice voids through the sync API: the system of record pushes an invoice with
`"status": "void"`. The customer no longer owes it (gone from the Invoices tab and its
total, "Void" in History, a pay form naming it refused and nothing charged), the office
invoice page says void, `invoice.voided` is in the events feed, and an invoice with money
on it cannot be voided (409: refund first) — nothing changes then."""

from __future__ import annotations

import html
import json
import re

import pytest

from portal.db import tables as t
from portal.demo import SANDBOX_ACCOUNT
from portal.importer import import_file
from tests.support.api import ADMIN_PASSWORD, api_client, bulk, new_key, register
from tests.support.http import make_client, staff_sign_in
from tests.support.paying import invoice_ids, portal_payments, submit_pay

HOST = "voidco"
PASSWORD = "a garden of tulips"


def invoice(number: str, cents: int, **extra: object) -> dict:
    return {
        "number": number,
        "job": f"J-{number}",
        "date": "2026-10-01",
        "lines": [{"description": "Repair", "unit_price_cents": cents}],
        **extra,
    }


@pytest.fixture(scope="module")
async def voidco(app) -> int:
    tenant_id = await import_file(
        json.dumps(
            {
                "format": "portal-import/1",
                "business": {
                    "host": HOST,
                    "name": "Voidco Plumbing",
                    "email": "help@voidco.example",
                    "portal": {
                        "enabled": True,
                        "legal_accepted_by": "boss@voidco.example",
                        "legal_accepted_at": "2026-01-05T15:00:00Z",
                        "payment_account": SANDBOX_ACCOUNT,
                        "payments_enabled": True,
                    },
                },
                "staff": [
                    {"email": "boss@voidco.example", "role": "admin", "password": ADMIN_PASSWORD}
                ],
            }
        )
    )
    return tenant_id


@pytest.fixture(scope="module")
async def writer(app, voidco):
    async with api_client(app, HOST, await new_key(voidco)) as client:
        lines = [
            {"record": "business_unit", "id": "PL", "name": "Plumbing"},
            {
                "record": "customer",
                "id": "C1",
                "name": "Val Oid",
                "emails": ["val@voidco.example"],
                "locations": [{"id": "L1", "street": "1 Main St"}],
            },
        ]
        for number in ("INV-1", "INV-2", "INV-3", "INV-4"):
            lines.append(
                {
                    "record": "job",
                    "number": f"J-{number}",
                    "customer": "C1",
                    "location": "L1",
                    "business_unit": "PL",
                    "status": "completed",
                    "completed_at": "2026-10-01T15:00:00Z",
                }
            )
        cents = {"INV-1": 10000, "INV-2": 5000, "INV-3": 7000, "INV-4": 3000}
        lines += [{"record": "invoice", **invoice(n, c)} for n, c in cents.items()]
        answer = await bulk(client, lines)
        assert answer.json()["errors"] == [], answer.text
        yield client


@pytest.fixture(scope="module")
async def val(app, settings, voidco, writer):
    client = await register(app, settings, HOST, "val@voidco.example", PASSWORD)
    yield client
    await client.aclose()


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


async def stored(tenant_id: int, number: str) -> dict:
    return (
        await t.Invoice.select()
        .where((t.Invoice.tenant == tenant_id) & (t.Invoice.number == number))
        .first()
        .run()
    )


async def test_a_voided_invoice_leaves_the_invoices_tab_shows_void_and_cannot_be_paid(
    app, voidco, writer, val
):
    before = text_of((await val.get("/invoices")).text)
    assert "INV-2" in before and "$250.00" in before  # the total due of all four

    answer = await writer.put("/invoices/INV-2", json=invoice("INV-2", 5000, status="void"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"record": "invoice", "id": "INV-2", "result": "updated"}

    tab = text_of((await val.get("/invoices")).text)
    assert "INV-2" not in tab
    assert "$200.00" in tab and "$250.00" not in tab  # the total due without it

    history = text_of((await val.get("/history")).text)
    assert re.search(r"INV-2 .*?\$50\.00 \$0\.00 Void", history), history

    [inv2] = await invoice_ids(voidco, "INV-2")
    page = text_of((await val.get(f"/invoices/{inv2}")).text)
    assert "Invoice INV-2 Void" in page and "voided this invoice" in page
    assert "Pay this invoice" not in page

    refused = await submit_pay(val, [inv2])
    assert refused.status_code == 422, refused.status_code
    assert "INV-2 was voided by Voidco Plumbing" in text_of(refused.text)
    assert await portal_payments(voidco) == []  # nothing charged, nothing started

    # The feed says so once; a second push of the same void is unchanged and says nothing.
    again = await writer.put("/invoices/INV-2", json=invoice("INV-2", 5000, status="void"))
    assert again.json()["result"] == "unchanged"
    feed = (await writer.get("/events", params={"after": 0})).json()["data"]
    voided = [e for e in feed if e["type"] == "invoice.voided"]
    assert [e["data"] for e in voided] == [
        {"invoice_id": inv2, "number": "INV-2", "total_cents": 5000}
    ]


async def test_the_office_invoice_page_says_void_with_the_trail(app, voidco, writer, val):
    [inv2] = await invoice_ids(voidco, "INV-2")
    async with make_client(app, f"http://{HOST}.localhost") as office:
        await staff_sign_in(office, "boss@voidco.example", ADMIN_PASSWORD)
        page = text_of((await office.get(f"/office/invoices/{inv2}")).text)
        customer = await t.Customer.select(t.Customer.id).where(t.Customer.tenant == voidco).run()
        listing = text_of((await office.get(f"/office/customers/{customer[0]['id']}")).text)
        job = text_of(
            (await office.get(f"/office/jobs/{(await stored(voidco, 'INV-2'))['job']}")).text
        )
    assert "Invoice INV-2 Void" in page and "This invoice is void" in page
    assert "Balance None: void" in page
    assert "Voided Invoice INV-2 voided" in page  # its line in the audit trail
    assert re.search(r"INV-2 .*?\$50\.00 Void Void: not sent", listing), listing
    assert re.search(r"INV-2 · .*? · total \$50\.00 · Void", job), job


async def test_an_invoice_with_money_on_it_is_not_voided(app, voidco, writer, val):
    # INV-3 is paid in part through the portal (a succeeded payment of $20).
    [inv3, inv4] = await invoice_ids(voidco, "INV-3", "INV-4")
    customer = (await stored(voidco, "INV-3"))["customer"]
    for number, invoice_id, status in (("INV-3", inv3, "succeeded"), ("INV-4", inv4, "pending")):
        payment = await t.Payment.insert(
            t.Payment(
                tenant=voidco,
                customer=customer,
                amount_cents=2000,
                status=status,
                idempotency_key=f"void-test-{number}",
            )
        ).run()
        await t.PaymentAllocation.insert(
            t.PaymentAllocation(
                tenant=voidco, payment=payment[0]["id"], invoice=invoice_id, amount_cents=2000
            )
        ).run()
    await t.Invoice.update({t.Invoice.balance_cents: 5000}).where(t.Invoice.id == inv3).run()
    events_before = await t.DomainEvent.count().where(t.DomainEvent.tenant == voidco).run()

    refused = await writer.put("/invoices/INV-3", json=invoice("INV-3", 7000, status="void"))
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/record-in-use") and problem["errors"][0]["field"] == "status"
    assert "2000 cents were paid on this invoice; refund the payment first" in problem["detail"]

    pending = await writer.put("/invoices/INV-4", json=invoice("INV-4", 3000, status="void"))
    assert pending.status_code == 409 and "in progress" in pending.json()["detail"]

    # In a batch, the refused void is named on its line; the rest is written.
    answer = await bulk(
        writer,
        [
            {"record": "invoice", **invoice("INV-1", 10000, summary="Still owed")},
            {"record": "invoice", **invoice("INV-3", 7000, status="void")},
        ],
    )
    body = answer.json()
    assert body["counts"] == {"updated": 1, "error": 1}
    assert body["errors"][0]["line"] == 2 and body["errors"][0]["field"] == "status"

    for number, balance in (("INV-3", 5000), ("INV-4", 3000)):
        row = await stored(voidco, number)
        assert (row["status"], row["balance_cents"]) == ("issued", balance)
    assert await t.DomainEvent.count().where(t.DomainEvent.tenant == voidco).run() == events_before
    tab = text_of((await val.get("/invoices")).text)
    assert "INV-3" in tab and "INV-4" in tab


async def test_an_invoice_issued_again_is_owed_again(app, voidco, writer, val):
    answer = await writer.put("/invoices/INV-2", json=invoice("INV-2", 5000))
    assert answer.json()["result"] == "updated"
    row = await stored(voidco, "INV-2")
    assert (row["status"], row["balance_cents"]) == ("issued", 5000)
    assert "INV-2" in text_of((await val.get("/invoices")).text)


async def test_the_database_keeps_a_void_invoice_at_nothing_owed(app, voidco, writer):
    # Whatever writes to it (a refund's late webhook, a script), a void invoice cannot be
    # made to owe money again: the database refuses, so no "balance > 0" read can list it.
    answer = await writer.put("/invoices/INV-2", json=invoice("INV-2", 5000, status="void"))
    assert answer.json()["result"] == "updated"
    [inv2] = await invoice_ids(voidco, "INV-2")
    with pytest.raises(Exception, match="status_valid"):
        await t.Invoice.update({t.Invoice.balance_cents: 100}).where(t.Invoice.id == inv2).run()
    assert (await stored(voidco, "INV-2"))["balance_cents"] == 0

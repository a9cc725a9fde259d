"""The sync API's push: bulk NDJSON batches that are idempotent (a second push changes
nothing), records a customer then sees as their own, the source-version rule (an older
update never overwrites a newer one), and bad input answered with RFC 9457 problem details
that store nothing."""

from __future__ import annotations

import base64
import html
import json
import re

import pytest

from portal.db import tables as t
from tests.support.api import api_client, bulk, empty_business, new_key, register

CUSTOMERS = 1_000
INVOICES = 10_000
PASSWORD = "a garden of tulips"


def records(tag: str = "") -> list[dict]:
    """One business unit, 1,000 customers, and 10,000 completed jobs with an invoice each
    (10 per customer), in the order a system would send them."""
    out: list[dict] = [{"record": "business_unit", "id": "PL", "name": "Plumbing"}]
    for c in range(CUSTOMERS):
        out.append(
            {
                "record": "customer",
                "id": f"C{c}",
                "name": f"Customer {c}{tag}",
                "emails": [f"c{c}@bulk.example"],
                "phone": "(555) 010-0000",
                "locations": [{"id": f"L{c}", "street": f"{c} Main St", "city": "Springfield"}],
                "updated_at": "2026-11-01T10:00:00Z",
            }
        )
    for n in range(INVOICES):
        c = n % CUSTOMERS
        out.append(
            {
                "record": "job",
                "number": f"J{n}",
                "customer": f"C{c}",
                "location": f"L{c}",
                "business_unit": "PL",
                "status": "completed",
                "completed_at": "2026-10-01T15:00:00Z",
                "summary": "Water heater flushed",
            }
        )
        out.append(
            {
                "record": "invoice",
                "number": f"INV-{n}",
                "job": f"J{n}",
                "date": "2026-10-01",
                "lines": [{"description": "Flush", "unit_price_cents": 10000 + n}],
                "version": 1,
            }
        )
    return out


async def push_all(client, items: list[dict]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for start in range(0, len(items), 10_000):
        answer = await bulk(client, items[start : start + 10_000])
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["errors"] == [], body["errors"][:3]
        for result, count in body["counts"].items():
            totals[result] = totals.get(result, 0) + count
    return totals


async def table_counts(tenant_id: int) -> dict[str, int]:
    out = {}
    for table in (
        t.BusinessUnit,
        t.Customer,
        t.CustomerEmail,
        t.Location,
        t.Job,
        t.Invoice,
        t.InvoiceLine,
        t.SyncRecord,
    ):
        out[table._meta.tablename] = await table.count().where(table.tenant == tenant_id).run()
    return out


@pytest.fixture(scope="module")
async def bulkco(app):
    return await empty_business("bulkco")


@pytest.fixture(scope="module")
async def writer(app, bulkco):
    async with api_client(app, "bulkco", await new_key(bulkco)) as client:
        yield client


async def test_bulk_push_twice_changes_nothing_the_second_time_and_customers_see_their_own(
    app, settings, bulkco, writer
):
    items = records()
    first = await push_all(writer, items)
    assert first == {"created": len(items)}
    after_first = await table_counts(bulkco)
    assert after_first["customer"] == CUSTOMERS and after_first["invoice"] == INVOICES
    assert after_first["invoice_line"] == INVOICES and after_first["location"] == CUSTOMERS
    snapshot = (
        await t.Invoice.select(t.Invoice.number, t.Invoice.total_cents)
        .where(t.Invoice.tenant == bulkco)
        .order_by(t.Invoice.id)
        .run()
    )

    second = await push_all(writer, items)
    assert second == {"unchanged": len(items)}
    assert await table_counts(bulkco) == after_first
    assert (
        await t.Invoice.select(t.Invoice.number, t.Invoice.total_cents)
        .where(t.Invoice.tenant == bulkco)
        .order_by(t.Invoice.id)
        .run()
        == snapshot
    )

    # Customer 7 registers with the email the push put on their record and sees exactly
    # their ten invoices: INV-7, INV-1007, ..., INV-9007.
    client = await register(app, settings, "bulkco", "c7@bulk.example", PASSWORD)
    try:
        page = html.unescape((await client.get("/invoices")).text)
    finally:
        await client.aclose()
    shown = set(re.findall(r"\bINV-\d+\b", page))
    assert shown == {f"INV-{n}" for n in range(7, INVOICES, CUSTOMERS)}


async def test_an_older_update_after_a_newer_one_changes_nothing(app, bulkco, writer):
    newer = {
        "id": "C1",
        "name": "Newer Name",
        "updated_at": "2026-11-20T10:00:00Z",
        "emails": ["c1@bulk.example"],
        "locations": [{"id": "L1", "street": "1 Main St"}],
    }
    older = {**newer, "name": "Older Name", "updated_at": "2026-11-10T10:00:00Z"}
    assert (await writer.put("/customers/C1", json=newer)).json()["result"] == "updated"
    stale = await writer.put("/customers/C1", json=older)
    assert stale.status_code == 200 and stale.json()["result"] == "stale"
    answer = await bulk(writer, [{"record": "customer", **older}])
    assert answer.json()["counts"] == {"stale": 1}
    row = (
        await t.Customer.select(t.Customer.name)
        .where((t.Customer.tenant == bulkco) & (t.Customer.external_id == "C1"))
        .first()
        .run()
    )
    assert row["name"] == "Newer Name"
    # The same rule with explicit versions: version 1 after version 2 is refused too.
    line = {
        "record": "invoice",
        "number": "INV-1",
        "job": "J1",
        "date": "2026-10-01",
        "lines": [{"description": "Flush", "unit_price_cents": 999}],
    }
    assert (await bulk(writer, [{**line, "version": 2}])).json()["counts"] == {"updated": 1}
    late = {**line, "version": 1, "lines": [{"description": "Old", "unit_price_cents": 5}]}
    assert (await bulk(writer, [late])).json()["counts"] == {"stale": 1}
    invoice = (
        await t.Invoice.select(t.Invoice.total_cents)
        .where((t.Invoice.tenant == bulkco) & (t.Invoice.number == "INV-1"))
        .first()
        .run()
    )
    assert invoice["total_cents"] == 999
    # A delete older than the record changes nothing either.
    gone = await writer.delete("/customers/C1", params={"updated_at": "2026-11-15T00:00:00Z"})
    assert gone.json()["result"] == "stale"
    assert (
        await t.Customer.exists()
        .where((t.Customer.tenant == bulkco) & (t.Customer.external_id == "C1"))
        .run()
    )


async def test_a_record_refers_to_what_came_before_it_in_the_same_batch(app, bulkco, writer):
    answer = await bulk(
        writer,
        [
            {
                "record": "customer",
                "id": "NEW1",
                "name": "Nia New",
                "locations": [{"id": "NL1", "street": "5 Oak Ave"}],
            },
            {
                "record": "job",
                "number": "NJ1",
                "customer": "NEW1",
                "location": "NL1",
                "business_unit": "PL",
                "status": "scheduled",
                "scheduled_start": "2026-12-10T15:00:00Z",
                "scheduled_end": "2026-12-10T17:00:00Z",
            },
            {
                "record": "membership",
                "id": "NM1",
                "customer": "NEW1",
                "location": "NL1",
                "type": "Comfort Club",
                "start_date": "2026-01-01",
                "visits": [{"date": "2026-12-20", "description": "Tune-up"}],
            },
        ],
    )
    assert answer.json() == {"counts": {"created": 3}, "errors": []}
    membership = await t.Membership.select().where(t.Membership.external_id == "NM1").first().run()
    assert await t.Visit.count().where(t.Visit.membership == membership["id"]).run() == 1


BAD_LINES = [
    ("malformed JSON", b'{"record": "customer", "id": "X1", "name": ', "", "not valid JSON"),
    ("wrong type", b'{"record": "customer", "id": "X2", "name": 42}', "name", "Expected `str`"),
    (
        "unknown field",
        b'{"record": "customer", "id": "X3", "name": "A", "colour": "red"}',
        "",
        "colour",
    ),
    ("unknown record", b'{"record": "wizard", "id": "X4"}', "record", "wizard"),
    ("blank name", b'{"record": "customer", "id": "X5", "name": "\\n "}', "name", "no text"),
    (
        "bad email",
        b'{"record": "customer", "id": "X6", "name": "A", "emails": ["nope"]}',
        "emails[0]",
        "not a valid email",
    ),
    (
        "unknown customer",
        b'{"record": "job", "number": "XJ1", "customer": "NOPE", '
        b'"location": "L1", "business_unit": "PL", "status": "scheduled"}',
        "customer",
        "NOPE",
    ),
    (
        "unknown job",
        b'{"record": "invoice", "number": "XI1", "job": "NOPE", "date": "2026-10-01"}',
        "job",
        "NOPE",
    ),
    (
        "completed without a time",
        b'{"record": "job", "number": "XJ2", "customer": "C2", '
        b'"location": "L2", "business_unit": "PL", "status": "completed"}',
        "completed_at",
        "required",
    ),
]


@pytest.mark.parametrize("label,line,field,detail", BAD_LINES, ids=[b[0] for b in BAD_LINES])
async def test_a_bad_record_in_a_batch_is_named_and_stored_nowhere(
    app, bulkco, writer, label, line, field, detail
):
    before = await table_counts(bulkco)
    good = json.dumps({"record": "business_unit", "id": "HV", "name": "HVAC"}).encode()
    answer = await writer.post("/bulk", content=good + b"\n" + line + b"\n")
    assert answer.status_code == 200
    body = answer.json()
    [error] = body["errors"]
    assert error["line"] == 2, error
    if field:
        assert error["field"] == field, error
    assert detail in error["detail"] or detail in error.get("record", ""), error
    after = await table_counts(bulkco)
    # Only the good line's business unit (first time) was written.
    assert after["customer"] == before["customer"] and after["job"] == before["job"]
    assert after["invoice"] == before["invoice"]


@pytest.mark.parametrize(
    "body,status,words",
    [
        (b'{"id": "Z1", "name": ', 400, "not valid JSON"),
        (b'{"id": "Z1", "name": 7}', 422, "name"),
        (b'{"id": "Z2", "name": "Zed"}', 422, "not the one in the URL"),
        (b'{"id": "Z1", "name": "Zed", "emails": ["bad"]}', 422, "emails[0]"),
        (
            b'{"id": "Z1", "name": "Zed", "portal_account": {"email": "z@x.example"}}',
            422,
            "portal_account",
        ),
    ],
)
async def test_a_bad_single_record_gets_problem_details_and_stores_nothing(
    app, bulkco, writer, body, status, words
):
    before = await table_counts(bulkco)
    answer = await writer.put(
        "/customers/Z1", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status and problem["type"].startswith("https://")
    assert words in problem.get("detail", "") + problem["title"], problem
    assert await table_counts(bulkco) == before


async def test_oversized_bodies_and_batches_are_refused_whole(app, bulkco, writer):
    before = await table_counts(bulkco)
    huge = b'{"id": "Z1", "name": "' + b"x" * 1_100_000 + b'"}'
    answer = await writer.put(
        "/customers/Z1", content=huge, headers={"Content-Type": "application/json"}
    )
    assert (
        answer.status_code == 413 and answer.headers["content-type"] == "application/problem+json"
    )
    line = b'{"record": "business_unit", "id": "B", "name": "B"}\n'
    answer = await writer.post("/bulk", content=line * 10_001)
    assert answer.status_code == 413 and "10000" in answer.json()["detail"].replace(",", "")
    assert await table_counts(bulkco) == before


async def test_a_delete_never_takes_money_records_with_it(app, bulkco, writer):
    invoice = (
        await t.Invoice.select()
        .where((t.Invoice.tenant == bulkco) & (t.Invoice.number == "INV-3"))
        .first()
        .run()
    )
    payment = (
        await t.Payment.insert(
            t.Payment(
                tenant=bulkco,
                customer=invoice["customer"],
                amount_cents=500,
                status="succeeded",
                idempotency_key="api-test-3",
            )
        )
        .returning(t.Payment.id)
        .run()
    )
    await t.PaymentAllocation.insert(
        t.PaymentAllocation(
            tenant=bulkco, payment=payment[0]["id"], invoice=invoice["id"], amount_cents=500
        )
    ).run()
    for path in ("/invoices/INV-3", "/jobs/J3", "/customers/C3"):
        refused = await writer.delete(path)
        assert refused.status_code == 409, (path, refused.text)
        assert "stays for the books" in refused.json()["detail"]
    assert await t.Invoice.exists().where(t.Invoice.id == invoice["id"]).run()
    # Without payments a delete goes through, and a re-push of the same version is stale.
    assert (await writer.delete("/invoices/INV-4")).json()["result"] == "deleted"
    assert (
        not await t.Invoice.exists()
        .where((t.Invoice.tenant == bulkco) & (t.Invoice.number == "INV-4"))
        .run()
    )

    # Unpaid invoices are money records too: a customer or job they belong to waits until
    # they are moved or deleted (the database would refuse the delete), and nothing changes.
    before = await table_counts(bulkco)
    for path, detail in (
        ("/customers/C5", "jobs still belong to this customer; move or delete them first"),
        ("/jobs/J5", "invoices still belong to this job; move or delete them first"),
    ):
        refused = await writer.delete(path)
        assert refused.status_code == 409, (path, refused.text)
        assert refused.json()["detail"].endswith(detail)
    assert await table_counts(bulkco) == before
    # Listed parent first, a batch deletes the children first: the whole customer goes.
    numbers = range(6, INVOICES, CUSTOMERS)
    lines = [
        {"record": "delete", "kind": "customer", "id": "C6"},
        *({"record": "delete", "kind": "job", "id": f"J{n}"} for n in numbers),
        *({"record": "delete", "kind": "invoice", "id": f"INV-{n}"} for n in numbers),
    ]
    answer = await bulk(writer, lines)
    assert answer.json() == {"counts": {"deleted": 21}, "errors": []}
    after = await table_counts(bulkco)
    assert (after["customer"], after["job"], after["invoice"]) == (
        before["customer"] - 1,
        before["job"] - 10,
        before["invoice"] - 10,
    )


async def test_a_membership_whose_card_was_changed_in_the_portal_stays(app, bulkco, writer):
    for number in ("M-CARD", "M-PLAIN"):
        membership = {
            "id": number,
            "customer": "C8",
            "location": "L8",
            "type": "Comfort Club",
            "start_date": "2026-01-01",
        }
        answer = await writer.put(f"/memberships/{number}", json=membership)
        assert answer.status_code == 200, answer.text
    row = await t.Membership.select().where(t.Membership.external_id == "M-CARD").first().run()
    await t.CardUpdate.insert(
        t.CardUpdate(
            tenant=bulkco,
            customer=row["customer"],
            membership=row["id"],
            idempotency_key="api-card-1",
            status="succeeded",
        )
    ).run()
    refused = await writer.delete("/memberships/M-CARD")
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].endswith(
        "the card on file was changed through the portal for this membership; "
        "it stays for the books"
    )
    assert await t.Membership.exists().where(t.Membership.id == row["id"]).run()
    assert (await writer.delete("/memberships/M-PLAIN")).json()["result"] == "deleted"


async def test_the_schema_describes_the_api_alone(app, bulkco, writer):
    answer = await writer.get("/openapi.json")
    schema = answer.json()
    assert schema["openapi"].startswith("3.1")
    assert schema["servers"] == [{"url": "/api/v1"}]
    paths = set(schema["paths"])
    assert {"/bulk", "/customers/{customer_id}", "/invoices/{number}", "/events"} <= paths
    assert not any(p.startswith(("/office", "/invoices/{invoice_id")) for p in paths)
    assert "application/x-ndjson" in schema["paths"]["/bulk"]["post"]["requestBody"]["content"]


async def test_an_invoice_pushed_with_its_pdf_downloads_that_pdf(app, settings, bulkco, writer):
    own_pdf = b"%PDF-1.4\n% the business's own invoice INV-17\n%%EOF\n"
    line = {
        "record": "invoice",
        "number": "INV-17",
        "job": "J17",
        "date": "2026-10-01",
        "lines": [{"description": "Flush", "unit_price_cents": 10017}],
        "version": 5,
        "pdf_base64": base64.b64encode(own_pdf).decode(),
    }
    assert (await bulk(writer, [line])).json() == {"counts": {"updated": 1}, "errors": []}
    bad = await bulk(
        writer, [{**line, "version": 6, "pdf_base64": base64.b64encode(b"GIF89a").decode()}]
    )
    assert bad.json()["errors"][0]["field"] == "pdf_base64"
    invoice = (
        await t.Invoice.select(t.Invoice.id)
        .where((t.Invoice.tenant == bulkco) & (t.Invoice.number == "INV-17"))
        .first()
        .run()
    )
    client = await register(app, settings, "bulkco", "c17@bulk.example", PASSWORD)
    try:
        download = await client.get(f"/invoices/{invoice['id']}/pdf")
    finally:
        await client.aclose()
    assert download.status_code == 200 and download.content == own_pdf

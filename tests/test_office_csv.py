"""Office › CSV upload: customers or open invoices from a spreadsheet, columns matched to
the portal's fields, a dry run that shows what would change (and changes nothing), then
the import — with the API's and importer's rules, row by row."""

from __future__ import annotations

import html
import re
from contextlib import asynccontextmanager

import pytest

from portal.db import tables as t
from tests.support.api import ADMIN_PASSWORD, api_client, bulk, empty_business, new_key
from tests.support.http import csrf_from, make_client, staff_sign_in

CUSTOMERS_CSV = (
    "Account,Customer Name,E-mail,Telephone,Address,Town,State,Postal Code\n"
    "A-1,Rita Rivers,rita@csv.example,(555) 010-1111,1 River Rd,Austin,TX,78701\n"
    "A-2,Sol Stone,sol@csv.example; sol.work@csv.example,,2 Stone St,Austin,TX,78702\n"
    "A-3,,nobody@csv.example,,3 Nowhere Ln,Austin,TX,78703\n"
)
INVOICES_CSV = (
    "Invoice #;Account;Invoice Date;Due;Amount Due;Memo\n"
    "INV-900;A-1;2026-11-02;2026-12-02;$1,250.50;Water heater\n"
    "INV-901;A-2;11/05/2026;;80;Drain cleared\n"
    "INV-902;A-9;2026-11-06;;10.00;Unknown customer\n"
    "INV-903;A-1;not a date;;10.00;Bad date\n"
)


def text(response) -> str:
    return html.unescape(response.text)


@pytest.fixture(scope="module")
async def csvco(app):
    tenant_id = await empty_business("csvco")
    async with api_client(app, "csvco", await new_key(tenant_id)) as api:
        await bulk(api, [{"record": "business_unit", "id": "PL", "name": "Plumbing"}])
    return tenant_id


@asynccontextmanager
async def office(app):
    async with make_client(app, "http://csvco.localhost") as client:
        await staff_sign_in(client, "boss@csvco.example", ADMIN_PASSWORD)
        yield client


def form_fields(page: str) -> dict[str, str]:
    """The fields the preview form would send: hidden inputs and each select's choice."""
    form = page[page.index('action="/office/csv/preview"') :]
    form = form[: form.index("</form>")]
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    }
    for name, options in re.findall(
        r'<select id="[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', form, re.S
    ):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        fields[name] = html.unescape(chosen.group(1)) if chosen else ""
    return fields


async def upload(client, kind: str, body: str):
    token = await csrf_from(client, "/office/csv")
    return await client.post(
        "/office/csv",
        data={"_csrf_token": token, "kind": kind},
        files={"file": ("upload.csv", body.encode(), "text/csv")},
    )


async def test_customers_are_matched_previewed_then_imported(app, csvco):
    async with office(app) as client:
        mapped = await upload(client, "customers", CUSTOMERS_CSV)
        assert mapped.status_code == 200, mapped.text
        assert "Match the columns (Customers, 3 rows)" in text(mapped)
        fields = form_fields(mapped.text)
        assert fields["map_id"] == "Account" and fields["map_emails"] == "E-mail"
        assert fields["map_zip"] == "Postal Code"

        dry = await client.post("/office/csv/preview", data=fields)
        page = text(dry)
        assert "Dry run: nothing has changed yet" in page
        assert "2 new, 0 changed, 0 unchanged, 1 refused" in page
        assert re.search(r"<td data-label=\"Row\">4</td><td data-label=\"Why\">[^<]*name", page)
        assert not await t.Customer.exists().where(t.Customer.tenant == csvco).run()
        # With JavaScript the same preview swaps only the upload region.
        swap = await client.post("/office/csv/preview", data=fields, headers={"HX-Request": "true"})
        assert swap.status_code == 200 and "<html" not in swap.text
        assert "2 new, 0 changed, 0 unchanged, 1 refused" in text(swap)

        fields = {**fields, "_csrf_token": await csrf_from(client, "/office/csv")}
        done = await client.post("/office/csv/import", data=fields)
        assert done.status_code == 303
        assert "Imported: 2 rows written." in text(await client.get(done.headers["location"]))
    rows = (
        await t.Customer.select()
        .where(t.Customer.tenant == csvco)
        .order_by(t.Customer.external_id)
        .run()
    )
    assert [(r["external_id"], r["name"]) for r in rows] == [
        ("A-1", "Rita Rivers"),
        ("A-2", "Sol Stone"),
    ]
    emails = (
        await t.CustomerEmail.select(t.CustomerEmail.email)
        .where(t.CustomerEmail.customer == rows[1]["id"])
        .run()
    )
    assert sorted(e["email"] for e in emails) == ["sol.work@csv.example", "sol@csv.example"]

    # The same file again: nothing would change.
    async with office(app) as client:
        fields = form_fields((await upload(client, "customers", CUSTOMERS_CSV)).text)
        again = text(await client.post("/office/csv/preview", data=fields))
    assert "0 new, 0 changed, 2 unchanged, 1 refused" in again


async def test_open_invoices_land_on_their_customers(app, csvco):
    async with office(app) as client:
        mapped = await upload(client, "invoices", INVOICES_CSV)
        fields = form_fields(mapped.text)
        assert fields["map_amount"] == "Amount Due" and fields["unit"] == "PL"
        before = await t.Invoice.count().where(t.Invoice.tenant == csvco).run()
        dry = text(await client.post("/office/csv/preview", data=fields))
        assert "2 new, 0 changed, 0 unchanged, 2 refused" in dry
        assert "no customer 'A-9'" in dry and "'not a date' is not a date" in dry
        assert await t.Invoice.count().where(t.Invoice.tenant == csvco).run() == before
        fields = {**fields, "_csrf_token": await csrf_from(client, "/office/csv")}
        assert (await client.post("/office/csv/import", data=fields)).status_code == 303
    invoice = await t.Invoice.select().where(t.Invoice.number == "INV-900").first().run()
    assert invoice["total_cents"] == 125050 and invoice["balance_cents"] == 125050
    second = await t.Invoice.select().where(t.Invoice.number == "INV-901").first().run()
    assert str(second["invoice_date"]) == "2026-11-05"


async def test_a_file_that_is_not_a_csv_or_a_mapping_left_out_is_explained(app, csvco):
    async with office(app) as client:
        empty = await upload(client, "customers", "")
        assert empty.status_code == 422 and "The file is empty" in text(empty)
        latin = await client.post(
            "/office/csv",
            data={"_csrf_token": await csrf_from(client, "/office/csv"), "kind": "customers"},
            files={"file": ("x.csv", "Name\nJos\xe9\n".encode("latin-1"), "text/csv")},
        )
        assert latin.status_code == 422 and "not UTF-8" in text(latin)
        fields = form_fields((await upload(client, "customers", CUSTOMERS_CSV)).text)
        fields["map_name"] = ""
        refused = await client.post("/office/csv/preview", data=fields)
        assert refused.status_code == 422 and "Choose the column that holds the name." in text(
            refused
        )


async def test_a_column_not_in_the_file_and_another_unit_are_named_and_nothing_changes(app, csvco):
    """A forged mapping: a column the file does not have, a unit not the business's. Each
    gets its message beside its field, the rest of the mapping is kept, nothing is read."""
    before = await t.Invoice.count().where(t.Invoice.tenant == csvco).run()
    async with office(app) as client:
        fields = form_fields((await upload(client, "invoices", INVOICES_CSV)).text)
        assert fields["map_number"] == "Invoice #" and fields["unit"] == "PL"
        refused = await client.post(
            "/office/csv/preview", data={**fields, "map_description": "Notes", "unit": "HVAC"}
        )
    assert refused.status_code == 422
    page = text(refused)
    assert "Choose one of the file's columns." in page
    assert "Choose the business unit these invoices are for." in page
    assert form_fields(refused.text)["map_number"] == "Invoice #"
    assert "Dry run" not in page
    assert await t.Invoice.count().where(t.Invoice.tenant == csvco).run() == before

"""Office › Activity (issue 17.12): every office change — settings, host, the legal
agreement, the payment account, email wording, staff — is recorded with who, when, the
old and the new value, in the change's own transaction; the Activity page lists them
newest first, filtered by kind, by who and by dates, a page at a time, and never shows
another business's entries."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from portal.db import tables as t
from tests.support.businesses import NEW_ADMIN_PASSWORD, NEW_OFFICE_PASSWORD, import_business
from tests.support.http import make_client, post_form, staff_sign_in

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}


async def read(client: httpx.AsyncClient, path: str) -> str:
    """A page's text as a person reads it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", (await client.get(path)).text))


@pytest.fixture(scope="module")
async def business(app) -> int:
    return await import_business("logbook")


@pytest.fixture
async def boss(app, business) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app, "http://logbook.localhost") as client:
        await staff_sign_in(client, "boss@logbook.example", NEW_ADMIN_PASSWORD)
        yield client


async def entries(tenant_id: int) -> list[dict]:
    return (
        await t.ActivityEvent.select()
        .where(t.ActivityEvent.tenant == tenant_id)
        .order_by(t.ActivityEvent.id)
        .run()
    )


def last(rows: list[dict], action: str) -> dict:
    found = [r for r in rows if r["action"] == action]
    assert found, f"no {action} entry in {[r['action'] for r in rows]}"
    return found[-1]


async def save(client, path: str, data: dict, *, page: str = "/office/settings", htmx=True):
    r = await post_form(client, path, data, csrf_page=page, headers=HX if htmx else None)
    assert r.status_code in (200, 303), (path, r.status_code, r.text[:300])
    return r


async def test_every_kind_of_office_change_is_recorded_with_old_and_new(app, business, boss):
    boss_email = "boss@logbook.example"
    # The legal agreement (before it, nothing can change).
    await save(boss, "/office/settings/legal", {"agree": "yes"}, htmx=False)
    # Settings: a text field, a toggle, the business units.
    await save(boss, "/office/settings/name", {"name": "Logbook Plumbing"})
    await save(boss, "/office/settings/portal_enabled", {"portal_enabled": "yes"})
    units = await t.BusinessUnit.select().where(t.BusinessUnit.tenant == business)
    await save(boss, "/office/settings/downloadable_units", {"downloadable_units": []})
    # The payment account, linked then unlinked.
    await save(boss, "/office/settings/payments/link", {})
    account = (await t.Tenant.select().where(t.Tenant.id == business).first())["payment_account_id"]
    await save(boss, "/office/settings/payments/unlink", {})
    # Email wording, saved then reset.
    await save(
        boss,
        "/office/notifications/invoice_email",
        {"subject": "Your invoice {InvoiceNumber}", "body": "Hi {CustomerName}, pay here."},
        page="/office/notifications/invoice_email",
        htmx=False,
    )
    await save(
        boss,
        "/office/notifications/invoice_email/reset",
        {},
        page="/office/notifications/invoice_email",
        htmx=False,
    )
    rows = await entries(business)
    assert all(r["actor"] == boss_email for r in rows)
    agreement = last(rows, "agreement.accepted")
    assert (agreement["old_value"], agreement["new_value"]) == ("Not accepted", "Accepted")
    name = [r for r in rows if r["subject"] == "Name"][-1]
    assert (name["old_value"], name["new_value"]) == ("Brightwater Plumbing", "Logbook Plumbing")
    toggle = [r for r in rows if r["subject"] == "Enable Customer Portal"][-1]
    assert (toggle["old_value"], toggle["new_value"]) == ("Off", "On")
    downloads = [r for r in rows if r["subject"] == "Business units whose invoices download"][-1]
    assert downloads["new_value"] == "None"
    assert all(u["name"] in downloads["old_value"] for u in units if u["invoices_downloadable"])
    linked, unlinked = last(rows, "payment_account.linked"), last(rows, "payment_account.unlinked")
    assert linked["new_value"] == account == unlinked["old_value"]
    changed = last(rows, "template.changed")
    assert changed["subject"] == "Invoice email"
    assert "Your invoice {InvoiceNumber}" in changed["new_value"]
    assert "Invoice {InvoiceNumber} from {BusinessName}" in changed["old_value"]
    reset = last(rows, "template.reset")
    assert "Your invoice {InvoiceNumber}" in reset["old_value"]
    # Saving a value unchanged records nothing.
    count = len(rows)
    await save(boss, "/office/settings/name", {"name": "Logbook Plumbing"})
    assert len(await entries(business)) == count


async def test_a_refused_change_records_nothing(app, business, boss):
    before = len(await entries(business))
    r = await post_form(
        boss, "/office/settings/name", {"name": ""}, csrf_page="/office/settings", headers=HX
    )
    assert r.status_code == 422
    async with make_client(app, "http://logbook.localhost") as desk:
        await staff_sign_in(desk, "desk@logbook.example", NEW_OFFICE_PASSWORD)
        r = await post_form(
            desk, "/office/settings/host", {"host": "deskmoved"}, csrf_page="/office/settings"
        )
        assert r.status_code == 403
    assert len(await entries(business)) == before


async def test_the_activity_page_filters_by_kind_who_and_dates_and_pages(app, business, boss):
    await save(boss, "/office/settings/phone", {"phone": "(555) 010-9999"})
    page = await read(boss, "/office/activity")
    assert "Setting changed: Phone" in page and "(555) 010-9999" in page
    assert "boss@logbook.example" in page
    only_payments = await read(boss, "/office/activity?kind=payment_account.")
    assert "Payment account linked" in only_payments and "Phone" not in only_payments
    nobody = await read(boss, "/office/activity?who=boss%40logbook.example&kind=staff.")
    assert "No changes match these filters." in nobody
    future = await read(boss, "/office/activity?from=2999-01-01")
    assert "No changes match these filters." in future
    bad = await read(boss, "/office/activity?from=yesterday&to=31/31/2026")
    assert "The From date isn't a date like 2026-12-01: it was left out." in bad
    assert "Setting changed: Phone" in bad  # the rest of the filters still apply
    # htmx swaps only the list.
    fragment = await boss.get(
        "/office/activity?kind=setting.", headers={**HX, "HX-Target": "div#activity-entries"}
    )
    assert 'id="activity-entries"' in fragment.text and "<nav" not in fragment.text
    # Sixty changes: the first page has fifty, "Older changes" the rest, none twice.
    for i in range(60):
        await t.ActivityEvent.insert(
            t.ActivityEvent(
                tenant=business, actor="system", actor_kind="system", action="setting.changed",
                subject=f"Bulk {i:02d}", old_value="a", new_value="b",
            )
        )  # fmt: skip
    first = html.unescape((await boss.get("/office/activity?who=system")).text)
    assert first.count("Bulk ") == 50 and "Bulk 59" in first and "Bulk 09" not in first
    older = first.split('href="/office/activity?who=system&before=')[1].split('"')[0]
    second = await read(boss, f"/office/activity?who=system&before={older}")
    assert second.count("Bulk ") == 10 and "Bulk 09" in second and "Bulk 10" not in second


async def test_another_business_never_sees_these_entries(app, business, boss):
    other = await import_business("otherlog")
    await t.ActivityEvent.insert(
        t.ActivityEvent(
            tenant=other, actor="boss@otherlog.example", action="setting.changed",
            subject="Secret setting", old_value="x", new_value="y",
        )
    )  # fmt: skip
    page = await read(boss, "/office/activity")
    assert "Secret setting" not in page and "otherlog" not in page
    filtered = await read(boss, "/office/activity?who=boss%40otherlog.example")
    assert "Secret setting" not in filtered

"""The Invoices tab a page at a time (issue 18): a customer with many open invoices sees
25, oldest first, with the count and total due of all of them, and moves through them by
keyset links (`?from=` / `?before=`) that work as plain links and as htmx swaps of the
list and its pay form. The pay form pays invoices chosen on the page shown."""

from __future__ import annotations

import re
from html import unescape

import pytest

from portal.db.tables import Invoice
from tests.support.http import CSRF_FIELD
from tests.support.paying import KEY_FIELD, new_invoice, path_of

ADDED = 56  # with Jane's own four open invoices: 60, so pages of 25, 25 and 10


def text(response) -> str:
    return unescape(response.text)


def listed(html: str) -> list[str]:
    return re.findall(r'<span class="vh">Select </span>([^<]+)</span>', html)


def link(html: str, name: str) -> str | None:
    found = re.search(r'<a href="([^"]+)"[^>]*>' + re.escape(name) + "</a>", html)
    return unescape(found.group(1)) if found else None


def total_due(html: str) -> str:
    return re.search(r"Total due</th><td[^>]*><strong>([^<]+)<", html).group(1)


@pytest.fixture(scope="module")
async def sixty(demo: int, jane) -> list[str]:
    """Jane's 60 open invoices' numbers, oldest first (as the tab orders them)."""
    for n in range(ADDED):
        await new_invoice(demo, total=1000 + n, days_ago=200 - n * 3)
    rows = await Invoice.raw(
        """SELECT i.number FROM invoice i JOIN job j ON j.id = i.job
        JOIN customer c ON c.id = i.customer
        WHERE c.external_id = 'C-1001' AND i.tenant = {} AND i.balance_cents > 0
          AND i.total_cents > 0 AND j.status = 'completed'
        ORDER BY i.invoice_date, i.id""",
        demo,
    ).run()
    assert len(rows) == 60
    return [r["number"] for r in rows]


async def test_pages_of_25_oldest_first_with_the_whole_count_and_total(jane, sixty):
    first = text(await jane.get("/invoices"))
    assert listed(first) == sixty[:25]
    assert "25 of 60 open invoices shown, oldest first. The total due is for all 60." in first
    assert link(first, "Previous 25 invoices") is None
    second = text(await jane.get(link(first, "Next 25 invoices")))
    assert listed(second) == sixty[25:50]
    assert total_due(second) == total_due(first)
    third = text(await jane.get(link(second, "Next 25 invoices")))
    assert listed(third) == sixty[50:]
    assert "10 of 60 open invoices shown" in third
    assert link(third, "Next 25 invoices") is None
    back = text(await jane.get(link(third, "Previous 25 invoices")))
    assert listed(back) == sixty[25:50]
    again = text(await jane.get(link(back, "Previous 25 invoices")))
    assert listed(again) == sixty[:25]
    assert link(again, "Previous 25 invoices") is None  # back on the first page


async def test_htmx_paging_swaps_only_the_list_and_its_pay_form(jane, sixty):
    first = text(await jane.get("/invoices"))
    url = link(first, "Next 25 invoices")
    assert f'hx-get="{url}" hx-target="#pay-form" hx-swap="outerHTML"' in unescape(first)
    swapped = text(
        await jane.get(
            url,
            headers={
                "HX-Request": "true",
                "HX-Request-Type": "partial",
                "HX-Target": "form#pay-form",
            },
        )
    )
    assert swapped.lstrip().startswith("<form") and 'id="pay-form"' in swapped
    assert '<nav class="tabs"' not in swapped
    assert listed(swapped) == sixty[25:50]
    # The page's first invoice rides along in the form, so a problem shows this page again.
    assert f'name="from" value="{url.split("from=")[1]}"' in swapped


async def test_paying_two_invoices_on_the_second_page(jane, sixty):
    second = text(await jane.get(link(text(await jane.get("/invoices")), "Next 25 invoices")))
    ids = dict(
        (number, value)
        for value, number in re.findall(
            r'name="invoice" value="(\d+)"><span><span class="vh">Select </span>([^<]+)<', second
        )
    )
    start = re.search(r'name="from" value="([^"]+)"', second).group(1)
    form = {
        "_csrf_token": CSRF_FIELD.search(second).group(1),
        "key": KEY_FIELD.search(second).group(1),
        "from": start,
        "invoice": [ids[sixty[30]], ids[sixty[31]]],
    }
    # A problem (part of two invoices) shows the same page again, both still ticked.
    refused = await jane.post("/invoices/pay", data={**form, "action": "partial", "amount": "5"})
    assert refused.status_code == 422
    assert listed(text(refused)) == sixty[25:50]
    assert text(refused).count(" checked>") == 2
    paid = await jane.post("/invoices/pay", data={**form, "action": "full"})
    assert paid.status_code == 303
    assert path_of(paid.headers["location"]).startswith("/sandbox-gateway/checkout/")


async def test_pay_this_invoice_shows_the_page_it_is_on(jane, demo, sixty):
    (row,) = await Invoice.raw(
        "SELECT id FROM invoice WHERE tenant = {} AND number = {}", demo, sixty[55]
    ).run()
    html = text(await jane.get(f"/invoices?select={row['id']}"))
    assert listed(html)[0] == sixty[55]
    assert f'value="{row["id"]}" checked' in html
    assert link(html, "Previous 25 invoices")


@pytest.mark.parametrize(
    "query",
    ["from=junk", "before=2026-13-01.5", "from=2026-01-01.99999999999", "from=9999-12-31.1"],
)
async def test_bad_or_stale_cursors_show_the_first_page(jane, sixty, query):
    response = await jane.get(f"/invoices?{query}")
    assert response.status_code == 200
    assert listed(text(response)) == sixty[:25]


async def test_the_count_and_total_leave_out_invoices_of_unfinished_jobs(jane, demo, sixty):
    before = text(await jane.get("/invoices"))
    await new_invoice(demo, total=77700, job_status="scheduled", days_ago=400)
    await new_invoice(demo, total=88800, job_status="in_progress", days_ago=401)
    await new_invoice(demo, total=99900, job_status="canceled", days_ago=402)
    after = text(await jane.get("/invoices"))
    assert "25 of 60 open invoices shown" in after
    assert total_due(after) == total_due(before)
    assert listed(after) == sixty[:25]


async def test_hostile_text_in_every_column_is_shown_as_text(jane, demo, sixty):
    from portal.db.tables import BusinessUnit, Job, Location

    evil = '<script>alert("x")</script>&'
    made = await new_invoice(demo, total=4321, days_ago=900)  # the oldest: first on the page
    (row,) = await Invoice.raw(
        "SELECT job, location, business_unit FROM invoice WHERE id = {}", made["id"]
    ).run()
    await Invoice.update({Invoice.number: "N" + evil}).where(Invoice.id == made["id"]).run()
    await Job.update({Job.summary: "J" + evil}).where(Job.id == row["job"]).run()
    await (
        Location.update({Location.name: "L" + evil, Location.street: "S" + evil})
        .where(Location.id == row["location"])
        .run()
    )
    await (
        BusinessUnit.update({BusinessUnit.name: "U" + evil})
        .where(BusinessUnit.id == row["business_unit"])
        .run()
    )
    html = (await jane.get("/invoices")).text
    assert "<script>" not in html
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;"
    for prefix in "NJLSU":
        assert prefix + escaped in html, prefix

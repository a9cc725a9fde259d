"""History tab: invoices by service location, newest first, paid and unpaid, never $0;
one location a page at a time (keyset) with the location in the URL; the invoice page."""

from __future__ import annotations

import re
from html import unescape

import pytest

from portal.db.tables import Invoice, Location
from tests.support.paying import invoice_ids, new_invoice, pay

ROW = re.compile(r'<a href="/invoices/(\d+)" hx-get="/invoices/\d+">([^<]+)</a>')


def numbers(html: str) -> list[str]:
    return [m.group(2) for m in ROW.finditer(html)]


async def location_id(tenant_id: int, external_id: str) -> int:
    row = (
        await Location.select(Location.id)
        .where((Location.tenant == tenant_id) & (Location.external_id == external_id))
        .first()
        .run()
    )
    return row["id"]


async def history_numbers(tenant_id: int, location: str) -> list[str]:
    """What History should list for a location: over $0, newest first."""
    rows = await Invoice.raw(
        "SELECT i.number FROM invoice i JOIN location l ON l.id = i.location "
        "WHERE i.tenant = {} AND l.external_id = {} AND i.total_cents > 0 "
        "ORDER BY i.invoice_date DESC, i.id DESC",
        tenant_id,
        location,
    ).run()
    return [r["number"] for r in rows]


async def test_grouped_by_location_newest_first_paid_and_unpaid(jane, demo):
    html = (await jane.get("/history")).text
    sections = re.findall(r'<section class="history-group".*?</section>', html, re.S)
    assert len(sections) == 2
    assert '<h2 id="loc-' in sections[0] and "Home" in sections[0]
    assert "Lake cabin" in sections[1]
    home = await history_numbers(demo, "L-JANE-HOME")
    cabin = await history_numbers(demo, "L-JANE-CABIN")
    assert numbers(sections[0]) == home[:5]
    assert numbers(sections[1]) == cabin[:5]
    assert len(home) > 5 and "See all invoices at Home" in sections[0]
    assert len(cabin) > 5 or "See all invoices at" not in sections[1]
    # Statuses: unpaid, partly paid, paid, job not finished.
    text = unescape(html)
    for status in ("Unpaid", "Partly paid", "Job not finished"):
        assert f">{status}</span>" in text
    assert "INV-1035" not in html and "Warranty call-back" not in html  # $0


async def test_one_location_pages_through_everything_once(jane, demo):
    home = await location_id(demo, "L-JANE-HOME")
    expected = await history_numbers(demo, "L-JANE-HOME")
    assert "INV-1035" not in expected
    seen: list[str] = []
    url = f"/history?location={home}"
    pages = 0
    while url:
        html = (await jane.get(url)).text
        pages += 1
        assert "Lake cabin</h2>" not in html  # only the chosen location
        assert f'<option value="{home}" selected>' in html
        seen += numbers(html)
        older = re.search(r'href="(/history\?location=\d+&amp;older=[^"]+)"', html)
        url = unescape(older.group(1)) if older else None
    assert pages >= 2
    assert seen == expected
    # And back: "Newer invoices" leads to the previous page.
    second = (await jane.get(f"/history?location={home}")).text
    older = unescape(re.search(r'href="(/history\?location=\d+&amp;older=[^"]+)"', second).group(1))
    page2 = (await jane.get(older)).text
    newer = unescape(re.search(r'href="(/history\?location=\d+&amp;newer=[^"]+)"', page2).group(1))
    assert numbers((await jane.get(newer)).text) == numbers(second)


@pytest.mark.parametrize("value", ["abc", "99999999", "-1"])
async def test_unknown_location_is_404(jane, demo, value):
    assert (await jane.get(f"/history?location={value}")).status_code == 404


async def test_another_customers_location_is_404(jane, demo):
    bob_home = await location_id(demo, "L-BOB")
    assert (await jane.get(f"/history?location={bob_home}")).status_code == 404


async def test_a_mangled_cursor_shows_the_first_page(jane, demo):
    home = await location_id(demo, "L-JANE-HOME")
    first = numbers((await jane.get(f"/history?location={home}")).text)
    assert numbers((await jane.get(f"/history?location={home}&older=garbage")).text) == first
    assert numbers((await jane.get(f"/history?location={home}&older=2026-13-45.1")).text) == first


async def test_htmx_filter_swaps_the_region(jane, demo):
    home = await location_id(demo, "L-JANE-HOME")
    response = await jane.get(
        f"/history?location={home}", headers={"HX-Request": "true", "HX-Request-Type": "partial"}
    )
    assert response.status_code == 200
    assert "<html" not in response.text and "<h1>History</h1>" in response.text


async def test_invoice_page_shows_lines_totals_payments_and_trail(jane, demo):
    (inv,) = await invoice_ids(demo, "INV-1039")  # partly paid (imported payment)
    html = unescape((await jane.get(f"/invoices/{inv}")).text)
    assert "<h1>Invoice INV-1039" in html and "Partly paid" in html
    assert "Drain cleaning" in html  # the line
    assert "$189.00" in html and "$50.00" in html and "$139.00" in html
    assert "Visa ending 4242" in html  # the imported payment
    assert "Imported record" in html  # its audit event
    assert "Download PDF" in html  # Plumbing allows downloads
    assert "Pay this invoice" in html


async def test_payment_shows_in_history_and_the_invoice_trail(jane, demo):
    invoice = await new_invoice(demo, total=12300, location="L-JANE-CABIN", days_ago=0)
    cabin = await location_id(demo, "L-JANE-CABIN")
    before = unescape((await jane.get(f"/history?location={cabin}")).text)
    assert re.search(invoice["number"] + r".*?>Unpaid</span>", before, re.S)
    await pay(jane, [invoice["id"]], action="partial", amount="23")
    after = unescape((await jane.get(f"/history?location={cabin}")).text)
    assert re.search(invoice["number"] + r".*?\$100\.00.*?>Partly paid</span>", after, re.S)
    await pay(jane, [invoice["id"]])
    done = unescape((await jane.get(f"/history?location={cabin}")).text)
    assert re.search(invoice["number"] + r".*?\$0\.00.*?>Paid</span>", done, re.S)
    page = unescape((await jane.get(f"/invoices/{invoice['id']}")).text)
    trail = page.split("Audit trail")[1]
    assert trail.count("jane@example.com") == 2
    assert "$23.00" in trail and "$100.00" in trail
    assert "Pay this invoice" not in page


async def test_zero_and_foreign_invoices_are_404(jane, demo):
    zero, bob = await invoice_ids(demo, "INV-1035", "INV-1041")
    for invoice in (zero, bob, 99999999):
        assert (await jane.get(f"/invoices/{invoice}")).status_code == 404

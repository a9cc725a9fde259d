"""A customer with more open invoices than a page holds (issue 18), in a real browser
with JavaScript on and off: the Invoices tab shows 25, oldest first, and the count and
total due of all of them; "Next 25 invoices" and "Previous 25 invoices" move through
them (htmx swaps the list, a plain link loads the page); two invoices chosen on the
second page are paid in one payment, and the tab then counts two fewer."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from portal.testing import Server, stop_server
from tests.support.browser import sign_in

EXPIRY = f"12 / {(date.today().year + 3) % 100:02d}"
ADDED = 40  # with Jane's four open demo invoices: 44, pages of 25 and 19


def add_open_invoices(database: Path, count: int) -> None:
    """`count` open invoices for Jane (C-1001), older than her own, each on a completed
    job of its own (copies of one of hers: INV-P000 is the oldest)."""
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        invoice = db.execute(
            """SELECT i.* FROM invoice i JOIN customer c ON c.id = i.customer
            JOIN job j ON j.id = i.job
            WHERE c.external_id = 'C-1001' AND j.status = 'completed' AND i.total_cents > 0
            ORDER BY i.id LIMIT 1"""
        ).fetchone()
        job = db.execute("SELECT * FROM job WHERE id = ?", (invoice["job"],)).fetchone()
        for n in range(count):
            job_row = {**dict(job), "number": f"PJ-{n:03d}", "booking_request": None}
            job_row["summary"] = f"Paging visit {n}"
            job_id = insert(db, "job", job_row)
            day = date.today() - timedelta(days=3000 - n)
            total = 10_000 + n * 100
            insert(
                db,
                "invoice",
                {
                    **dict(invoice),
                    "number": f"INV-P{n:03d}",
                    "job": job_id,
                    "invoice_date": day.isoformat(),
                    "due_date": (day + timedelta(days=30)).isoformat(),
                    "summary": f"Paging visit {n}",
                    "total_cents": total,
                    "balance_cents": total,
                },
            )


def insert(db: sqlite3.Connection, table: str, row: dict) -> int:
    columns = [c for c in row if c != "id"]
    cursor = db.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [row[c] for c in columns],
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    yield started
    for srv in started.values():
        stop_server(srv)


@pytest.fixture
def server(servers: dict[str, Server], js: bool, tmp_path_factory, start_demo_server) -> Server:
    """A demo portal of its own for each JS setting, Jane with 44 open invoices."""
    key = "js" if js else "nojs"
    if key not in servers:
        srv = start_demo_server(tmp_path_factory.mktemp(f"invoice-pages-{key}"))
        add_open_invoices(srv.var_dir / "portal.sqlite3", ADDED)
        servers[key] = srv
    return servers[key]


def shown(page: Page) -> list[str]:
    names = page.get_by_role("checkbox").evaluate_all(
        "boxes => boxes.map(b => b.labels[0].textContent.trim())"
    )
    return [n.removeprefix("Select ").strip() for n in names]


def cents(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text))


def money(value: int) -> str:
    return f"${value // 100:,}.{value % 100:02d}"


def test_pages_through_open_invoices_and_pays_two_on_the_second_page(
    server: Server, page: Page, js: bool
):
    sign_in(page, server.base_url)
    expect(page.get_by_text("25 of 44 open invoices shown, oldest first.")).to_be_visible()
    first_page = shown(page)
    assert first_page == [f"INV-P{n:03d}" for n in range(25)]
    due = cents(page.locator("td[data-label='Total due']").inner_text())
    expect(page.get_by_role("link", name="Previous 25 invoices")).to_have_count(0)

    if js:  # htmx swaps the list in place: the page is not loaded again
        page.evaluate("window.stillTheSamePage = true")
    page.get_by_role("link", name="Next 25 invoices").click()
    expect(page).to_have_url(re.compile(r"/invoices\?from="))
    expect(page.get_by_role("checkbox", name="Select INV-P025")).to_be_visible()
    if js:
        assert page.evaluate("window.stillTheSamePage === true")
    expect(page.get_by_role("checkbox", name="Select INV-P000")).to_have_count(0)
    second_page = shown(page)
    assert second_page[:15] == [f"INV-P{n:03d}" for n in range(25, 40)]
    assert len(second_page) == 19  # and Jane's own four
    expect(page.get_by_text("19 of 44 open invoices shown")).to_be_visible()
    expect(page.locator("td[data-label='Total due']")).to_have_text(money(due))
    expect(page.get_by_role("link", name="Next 25 invoices")).to_have_count(0)

    # Back to the first page and forward again with the browser's buttons, then
    # Previous and Next, as a customer looking around would.
    page.go_back()
    expect(page.get_by_role("checkbox", name="Select INV-P000")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Select INV-P025")).to_have_count(0)
    page.go_forward()
    expect(page.get_by_role("checkbox", name="Select INV-P025")).to_be_visible()
    expect(page.get_by_role("link", name="Invoices", exact=True)).to_be_visible()
    page.get_by_role("link", name="Previous 25 invoices").click()
    expect(page.get_by_role("checkbox", name="Select INV-P000")).to_be_visible()
    page.get_by_role("link", name="Next 25 invoices").click()
    expect(page.get_by_role("checkbox", name="Select INV-P030")).to_be_visible()

    page.get_by_role("checkbox", name="Select INV-P030").check()
    page.get_by_role("checkbox", name="Select INV-P031").check()
    paid = 10_000 + 3000 + 10_000 + 3100
    page.get_by_role("button", name="Pay in full").click()
    expect(page.get_by_role("button", name=f"Pay {money(paid)}")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry date (MM / YY)").fill(EXPIRY)
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    receipt = page.get_by_role("table")
    expect(receipt.get_by_role("link", name="INV-P030")).to_be_visible()
    expect(receipt.get_by_role("link", name="INV-P031")).to_be_visible()

    page.get_by_role("link", name="Back to invoices").click()
    expect(page.get_by_text("25 of 42 open invoices shown")).to_be_visible()
    expect(page.locator("td[data-label='Total due']")).to_have_text(money(due - paid))
    page.get_by_role("link", name="Next 25 invoices").click()
    expect(page.get_by_role("checkbox", name="Select INV-P029")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Select INV-P030")).to_have_count(0)
    expect(page.get_by_role("checkbox", name="Select INV-P031")).to_have_count(0)

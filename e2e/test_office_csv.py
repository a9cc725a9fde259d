"""Office › CSV upload in a real browser, JavaScript on and off: choose a file, match its
columns, see the dry run (nothing changed yet), import, and the customer is there."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.browser import import_business_into
from tests.support.businesses import NEW_ADMIN_PASSWORD

CSV = (
    "Account,Customer Name,E-mail,Address\n"
    "A-1,Rita Rivers,rita@csv.example,1 River Rd\n"
    "A-2,Sol Stone,sol@csv.example,2 Stone St\n"
)


def test_customers_from_a_csv(server, page: Page, js: bool, tmp_path: Path):
    host = f"csv-{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(f"boss@{host}.example")
    page.get_by_label("Password").fill(NEW_ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="CSV upload").click()
    expect(page.get_by_role("heading", name="CSV upload", exact=True)).to_be_visible()

    file = tmp_path / "customers.csv"
    file.write_text(CSV)
    page.get_by_label("Customers").check()
    page.get_by_label("CSV file").set_input_files(str(file))
    page.get_by_role("button", name="Upload and match columns").click()
    expect(
        page.get_by_role("heading", name="Match the columns (Customers, 2 rows)")
    ).to_be_visible()
    expect(page.get_by_label("Customer number")).to_have_value("Account")
    expect(page.get_by_label("Emails (optional)")).to_have_value("E-mail")

    page.get_by_role("button", name="Preview changes").click()
    expect(page.get_by_role("heading", name="Dry run: nothing has changed yet")).to_be_visible()
    expect(page.get_by_text("2 new, 0 changed, 0 unchanged, 0 refused")).to_be_visible()

    page.get_by_role("button", name="Import these rows").click()
    expect(page.get_by_text("Imported: 2 rows written.")).to_be_visible()
    page.get_by_role("link", name="Customers", exact=True).click()
    expect(page.get_by_text("Sol Stone")).to_be_visible()

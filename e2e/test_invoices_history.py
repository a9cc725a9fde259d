"""History and invoice pages in a real browser, with JavaScript on and off: grouped by
service location, a location filter in the URL, pages of older invoices, the invoice
page, and PDF downloads only where the office allows them."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.support.browser import sign_in


def test_history_by_location_with_filter_and_pages(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    page.get_by_role("link", name="History", exact=True).click()
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^Home"), level=2)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^Lake cabin"), level=2)).to_be_visible()
    expect(page.get_by_text("Warranty call-back")).to_have_count(0)  # $0 never shown

    page.get_by_label("Service location").select_option(label="Lake cabin · 48 Shoreline Road")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/history\?location=\d+$"))
    expect(page.get_by_role("heading", name=re.compile(r"^Home"), level=2)).to_have_count(0)
    expect(page.get_by_role("heading", name=re.compile(r"^Lake cabin"), level=2)).to_be_visible()
    first_page = page.locator("td[data-label='Invoice']").all_inner_texts()
    assert len(first_page) == 15

    page.get_by_role("link", name="Older invoices").click()
    expect(page).to_have_url(re.compile(r"/history\?location=\d+&older="))
    expect(page.get_by_role("link", name="Newer invoices")).to_be_visible()
    second_page = page.locator("td[data-label='Invoice']").all_inner_texts()
    assert second_page and not set(second_page) & set(first_page)

    # The URL is shareable: loading it afresh shows the same page.
    url = page.url
    page.goto(url)
    assert page.locator("td[data-label='Invoice']").all_inner_texts() == second_page
    page.get_by_role("link", name="Newer invoices").click()
    expect(page.locator("td[data-label='Invoice']").first).to_have_text(first_page[0])


def test_invoice_page_and_pdf_download(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    page.get_by_role("link", name="History", exact=True).click()
    page.get_by_role("link", name="INV-1039", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Invoice INV-1039"))).to_be_visible()
    expect(page).to_have_url(re.compile(r"/invoices/\d+$"))
    expect(page.get_by_role("cell", name="Drain cleaning")).to_be_visible()
    expect(page.locator("table.trail")).to_contain_text("Imported record")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename == "INV-1039.pdf"
    with open(download.value.path(), "rb") as fh:
        assert fh.read(5) == b"%PDF-"

    # An Electrical invoice: the office did not allow downloads.
    page.get_by_role("link", name="Back to History").click()
    page.get_by_role("link", name="INV-1037", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Invoice INV-1037"))).to_be_visible()
    expect(page.get_by_role("link", name="Download PDF")).to_have_count(0)
    response = page.goto(page.url + "/pdf")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("This invoice can't be downloaded here")

"""What a first real use of the portal found on the customer side (issue 17, items 1–6), in a
real browser with JavaScript on and off: each test is something a customer would notice."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from portal.demo import JANE_EMAIL
from tests.support.browser import add_portal_account, fits_the_width, sign_in, text_lines
from tests.support.mail import dev_mailbox

OFFICE = ("office@xyzservices.example", "office-demo-pass")
# On two records (Acme Property Management and Maple Court HOA): the record switcher shows.
ACME = ("facilities@acme.example", "acme-contracts-2026")


@pytest.fixture(scope="module")
def acme(server) -> tuple[str, str]:
    add_portal_account(server, *ACME)
    return ACME


@pytest.fixture(params=[1280, 360])
def width(request: pytest.FixtureRequest) -> int:
    """Desktop and phone widths, for what a person sees of the layout."""
    return request.param


def office_sign_in(page: Page, base: str) -> None:
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(OFFICE[0])
    page.get_by_label("Password").fill(OFFICE[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()


def insert_request(server, service_type: str) -> int:
    """An appointment request of Jane's in the server's database, as the scheduler stores it."""
    day = (date.today() + timedelta(days=3)).isoformat()
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as db:
        tenant, customer, location = db.execute(
            "SELECT c.tenant, c.id, l.id FROM customer c JOIN location l ON l.customer = c.id "
            "WHERE c.external_id = 'C-1001' ORDER BY l.id LIMIT 1"
        ).fetchone()
        cursor = db.execute(
            "INSERT INTO booking_request (tenant, customer, location, account_email, service_type,"
            " preferred_windows, notes, status, dismiss_reason, idempotency_key, created_at,"
            " handled_by) VALUES (?, ?, ?, ?, ?, ?, '', 'new', '', ?, ?, '')",
            (
                tenant,
                customer,
                location,
                JANE_EMAIL,
                service_type,
                json.dumps([{"date": day, "window": "morning"}]),
                uuid.uuid4().hex,
                datetime.now(UTC).isoformat(),
            ),
        )
        return cursor.lastrowid


def test_the_dismissal_reason_reaches_the_customer_on_the_page_and_by_email(
    server, page: Page, js: bool
):
    service = f"Pool heater {'js' if js else 'nojs'}"
    reason = f"We don't service pool heaters ({'js' if js else 'nojs'}); try Sunny Pools."
    insert_request(server, service)
    office_sign_in(page, server.base_url)
    page.goto(server.url("/office/bookings"))
    card = page.get_by_role("article", name=service)
    card.get_by_role("link", name="Dismiss").click()
    card = page.get_by_role("article", name=service)
    card.get_by_label("Reason").fill(reason)
    card.get_by_role("button", name="Dismiss request").click()
    expect(page.get_by_text("the customer was emailed the reason")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, server.base_url)
    page.get_by_role("link", name="Scheduler").click()
    row = page.locator("#your-requests").get_by_role("row").filter(has_text=service)
    expect(row).to_contain_text("Closed")
    expect(row).to_contain_text(reason)

    message = dev_mailbox(server.var_dir / "mail", JANE_EMAIL, reason)
    text = message.get_body(("plain",)).get_content()
    assert service in text
    assert "Hello Jane" in text


def test_the_record_switcher_reads_in_whole_words_and_switches(
    server, acme, page: Page, js: bool, width: int
):
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, server.base_url, *acme)
    switcher = page.locator("form.switch")
    label = switcher.get_by_text("Viewing", exact=True)
    button = switcher.get_by_role("button", name="Switch")
    expect(label).to_be_visible()
    assert text_lines(label) == 1, "Viewing wraps"
    assert text_lines(button) == 1, "Switch wraps"
    assert fits_the_width(page)
    box = switcher.get_by_label("Viewing").bounding_box()
    assert box is not None and box["x"] + box["width"] <= width
    switcher.get_by_label("Viewing").select_option(label="Maple Court HOA")
    button.click()
    expect(page.locator("form.switch").get_by_label("Viewing")).to_have_value(
        page.locator("form.switch option", has_text="Maple Court HOA").get_attribute("value")
    )


def test_switching_records_stays_on_the_tab_the_person_is_on(server, acme, page: Page, js: bool):
    """Open Invoices, go to History (an htmx swap with JavaScript on), switch record: the
    other record's History, not the Invoices tab the page was first loaded on."""
    sign_in(page, server.base_url, *acme)
    page.goto(server.url("/invoices"))
    page.get_by_role("link", name="History", exact=True).click()
    expect(page).to_have_url(server.url("/history"))
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    switcher = page.locator("form.switch")
    switcher.get_by_label("Viewing").select_option(label="Maple Court HOA")
    switcher.get_by_role("button", name="Switch").click()
    expect(page).to_have_url(server.url("/history"))
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="History", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.locator("form.switch").get_by_label("Viewing")).to_have_value(
        page.locator("form.switch option", has_text="Maple Court HOA").get_attribute("value")
    )
    expect(page.locator("main")).to_contain_text("3 Maple Court")


def test_a_declined_card_is_explained_in_whole_sentences(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    page.get_by_role("link", name="Memberships").click()
    page.locator("li.membership").filter(has_text="Comfort Club Gold").get_by_role(
        "link", name=re.compile("Visits")
    ).first.click()
    page.get_by_role("button", name="Update payment card").click()
    expect(page).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_label("Expiry date (MM / YY)").fill("12 / 39")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name="Save card").click()
    # The card page sends the customer back to the membership, which says what happened.
    message = page.get_by_text("Your card on file was not changed")
    expect(message).to_have_text(
        "Your card on file was not changed. Your card was declined. You can try again."
    )
    assert ".." not in page.locator("main").inner_text()


def test_an_invoice_opened_from_invoices_stays_under_invoices_with_its_pdf(
    server, page: Page, js: bool
):
    sign_in(page, server.base_url)
    rows = page.locator("table.open-invoices tbody tr")
    downloadable = rows.filter(has_text="HVAC").or_(rows.filter(has_text="Plumbing")).first
    number = downloadable.locator("td[data-label='Invoice'] .pick > span").evaluate(
        "el => el.lastChild.textContent.trim()"
    )
    pdf = downloadable.get_by_role("link", name=f"PDF of {number}")
    expect(pdf).to_be_visible()
    with page.expect_download() as download:
        pdf.click()
    assert download.value.suggested_filename.endswith(".pdf")
    # Electrical invoices are not downloadable: no PDF link on their rows.
    for row in rows.filter(has_text="Electrical").all():
        expect(row.get_by_role("link", name=re.compile("^PDF"))).to_have_count(0)

    downloadable.get_by_role("link", name=f"View {number}").click()
    expect(page.get_by_role("heading", name=re.compile(f"Invoice {number}"))).to_be_visible()
    tabs = page.get_by_role("navigation", name="Portal sections")
    expect(tabs.get_by_role("link", name="Invoices")).to_have_attribute("aria-current", "page")
    page.get_by_role("link", name="Back to Invoices").click()
    expect(page).to_have_url(server.url("/invoices"))
    expect(page.get_by_role("heading", name="Invoices", level=1)).to_be_visible()

    # From History, the same invoice is under History.
    tabs.get_by_role("link", name="History").click()
    page.get_by_role("link", name=number, exact=True).first.click()
    expect(tabs.get_by_role("link", name="History")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("link", name="Back to History")).to_be_visible()


def test_a_pdf_that_is_not_offered_explains_itself_and_stays_a_404(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    page.get_by_role("link", name="History", exact=True).click()
    row = page.get_by_role("row").filter(has_text="Electrical").first
    link = row.get_by_role("link").first
    href = link.get_attribute("href")
    response = page.goto(server.url(href.split("?")[0] + "/pdf"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_have_text(
        "This invoice can't be downloaded here — call us at (555) 010-4477 for a copy."
    )


DAY = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [A-Z][a-z]{2} \d{1,2}, \d{4}$")
DATE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}$")


def test_one_date_style_everywhere(server, page: Page, js: bool):
    sign_in(page, server.base_url)
    for cell in page.locator("td[data-label='Date']").all():
        assert DATE.match(cell.inner_text().strip()), cell.inner_text()
    page.get_by_role("link", name="Memberships").click()
    page.locator("li.membership").filter(has_text="Comfort Club Gold").get_by_role(
        "link", name=re.compile("Visits")
    ).first.click()
    expect(page.get_by_role("heading", name="Upcoming visits")).to_be_visible()
    # Upcoming and past visits: the same style, each day with its weekday.
    visit_days = page.locator("td[data-label='Date']").all()
    assert len(visit_days) >= 2
    for cell in visit_days:
        text = cell.inner_text().replace("Canceled", "").strip()
        assert DAY.match(text), text
    page.get_by_role("link", name="Scheduler").click()
    appointment = page.locator(".card strong").first
    assert re.match(
        r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [A-Z][a-z]{2} \d{1,2}, \d{4} · ",
        (appointment.inner_text()),
    ), appointment.inner_text()


def test_phone_numbers_and_history_rows_read_right_on_a_phone(
    server, page: Page, js: bool, width: int
):
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(server.url("/sign-in"))
    footer_phone = page.locator("footer, .auth-footer, p").get_by_role(
        "link", name="(555) 010-4477"
    )
    expect(footer_phone.first).to_be_visible()
    for phone in page.get_by_role("link", name="(555) 010-4477").all():
        assert text_lines(phone) == 1, "the phone number breaks across lines"
    sign_in(page, server.base_url)
    page.get_by_role("link", name="History", exact=True).click()
    # Measured once History is shown (JS off the click starts a navigation: measuring at
    # once can find no document at all).
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    assert fits_the_width(page)
    # An Electrical invoice has no download: its row shows no empty "Download" label.
    row = page.get_by_role("row").filter(has_text="Electrical").first
    expect(row).to_be_visible()
    if width < 600:  # stacked rows label each cell; an empty cell would be a bare label
        expect(row.locator("td[data-label='Download']")).not_to_be_visible()
    downloadable = page.get_by_role("row").filter(has_text="HVAC").first
    expect(downloadable.get_by_role("link", name=re.compile("^Download PDF"))).to_be_visible()


def test_each_scheduler_choice_stands_clear_of_the_field_above(
    server, page: Page, js: bool, width: int
):
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, server.base_url)
    page.get_by_role("link", name="Scheduler").click()
    form = page.locator("form#request-appointment")
    first = form.get_by_role("group", name="First choice")
    for earlier, later in (("First choice", "Second choice"), ("Second choice", "Third choice")):
        above = form.get_by_role("group", name=earlier).get_by_label("Time of day").bounding_box()
        heading = form.get_by_role("group", name=later).locator("legend").bounding_box()
        assert above and heading
        gap = heading["y"] - (above["y"] + above["height"])
        assert gap >= 12, f"{later} sits {gap:.0f} px under the field above"
    expect(first).to_be_visible()


def test_back_after_paying_never_ticks_an_invoice_the_customer_did_not_choose(
    server, page: Page, js: bool
):
    sign_in(page, server.base_url)
    boxes = page.get_by_role("checkbox")
    assert boxes.count() >= 2
    boxes.first.check()
    page.get_by_role("button", name="Pay in full").click()
    expect(page).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry date (MM / YY)").fill("12 / 39")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()

    page.go_back()
    page.go_back()
    expect(page).to_have_url(server.url("/invoices"))
    expect(page.get_by_role("button", name="Pay in full")).to_be_visible()
    # The paid invoice left the list; the one that moved into its place is not ticked.
    page.wait_for_load_state("load")
    checked = page.locator("input[type=checkbox]:checked")
    expect(checked).to_have_count(0)
    page.get_by_role("button", name="Pay in full").click()
    expect(page.get_by_role("alert")).to_be_visible()  # nothing chosen: nothing to pay
    expect(page).not_to_have_url(re.compile(r"/sandbox-gateway/"))
    # The receipt email greets the customer by name.
    receipt = dev_mailbox(server.var_dir / "mail", JANE_EMAIL, "This is your receipt")
    assert receipt.get_body(("plain",)).get_content().startswith("Hello Jane Doe,")

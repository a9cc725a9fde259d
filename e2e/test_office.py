"""The office in a real browser, JavaScript on and off: a newly imported business is set up
by its administrator (office staff cannot change anything before the agreement is
accepted); each setting saves inline with JavaScript, with Save without it; the customer
side follows each change."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.browser import import_business_into
from tests.support.businesses import (
    NEW_ADMIN_PASSWORD,
    NEW_CUSTOMER_PASSWORD,
    NEW_OFFICE_PASSWORD,
)


def office_sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()


def customer_sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(NEW_CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/invoices")


def saved(page: Page, js: bool, key: str) -> None:
    """Wait for a setting to be saved: inline with JavaScript, with Save without it."""
    if js:
        expect(page.locator(f"#saved-{key}")).to_have_text("Saved")
    else:
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_text("Your settings were saved.")).to_be_visible()


def change_and_save(page: Page, js: bool, key: str, change: Callable[[], None]) -> None:
    """Make a change and wait for it to be saved. With JavaScript, wait for this change's own
    answer: a second save of the same setting finds the first one's "Saved" still shown."""
    if js:
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith(f"/office/settings/{key}")
        ):
            change()
    else:
        change()
    saved(page, js, key)


def type_and_save(page: Page, js: bool, label: str, key: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    if js:
        field.press("Tab")  # leaving the field is a change: htmx saves it
    saved(page, js, key)


def logo_file(tmp_path: Path) -> Path:
    path = tmp_path / "logo.png"
    Image.new("RGB", (300, 150), (10, 120, 60)).save(path, format="PNG")
    return path


def image_loaded(page: Page, img: Locator, timeout_s: float = 10.0) -> None:
    """Wait until the image has finished loading.

    Polled from Python: with scripting off the page's own timers do not run,
    so ``page.wait_for_function`` checks once and then never again.
    """
    deadline = time.monotonic() + timeout_s
    while not img.evaluate("img => img.complete && img.naturalWidth > 0"):
        assert time.monotonic() < deadline, "the image did not load"
        page.wait_for_timeout(100)


def test_new_business_is_set_up_by_its_administrator(
    server, browser: Browser, page: Page, js: bool, tmp_path: Path
):
    host = f"fresh-{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    customer = browser.new_context(java_script_enabled=js).new_page()
    customer.set_default_timeout(10_000)

    # Just imported: the customer portal is closed.
    customer.goto(base + "/sign-in")
    expect(
        customer.get_by_role("heading", name="Our customer portal isn't available")
    ).to_be_visible()

    # Office staff see the agreement but cannot accept it or change anything.
    office_sign_in(page, base, f"desk@{host}.example", NEW_OFFICE_PASSWORD)
    expect(page.get_by_text("An administrator must accept this agreement")).to_be_visible()
    expect(page.get_by_role("button", name="Accept")).to_have_count(0)
    expect(page.get_by_label("Enable Customer Portal")).to_be_disabled()
    expect(page.get_by_label("Name", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Save", exact=True)).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You're signed out.")).to_be_visible()

    # The administrator accepts the agreement.
    office_sign_in(page, base, f"boss@{host}.example", NEW_ADMIN_PASSWORD)
    page.get_by_label(
        "I agree and accept these terms and consent to Partner's access to my account and data"
    ).check()
    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_text("the legal agreement is accepted")).to_be_visible()
    expect(page.get_by_text(f"Accepted by boss@{host}.example on")).to_be_visible()
    if js:
        page.evaluate("window.stillTheSamePage = true")

    # Enable Customer Portal: the customer can sign in.
    page.get_by_label("Enable Customer Portal").check()
    saved(page, js, "portal_enabled")
    customer_sign_in(customer, base, f"pat@{host}.example")
    tabs = customer.get_by_role("navigation", name="Portal sections")
    expect(tabs.get_by_role("link", name="Memberships")).to_have_count(0)
    expect(tabs.get_by_role("link", name="Scheduler")).to_have_count(0)

    # Memberships, with Canceled ones too: the tab appears.
    page.get_by_label("Enable users to view memberships in Customer Portal").check()
    saved(page, js, "memberships_enabled")
    expect(page.get_by_text("Active memberships always show.")).to_be_visible()
    page.get_by_label("Canceled").check()
    saved(page, js, "membership_statuses")
    customer.reload()
    expect(tabs.get_by_role("link", name="Memberships")).to_be_visible()

    # The scheduler needs service types; then its tab appears.
    type_and_save(
        page,
        js,
        "Service types customers can request",
        "service_types",
        "Leak repair\nDrain cleaning",
    )
    page.get_by_role("checkbox", name="Appointment Scheduler").check()
    saved(page, js, "scheduler_enabled")
    customer.reload()
    expect(tabs.get_by_role("link", name="Scheduler")).to_be_visible()

    # Business information.
    type_and_save(page, js, "Name", "name", "Brightwater Services")
    expect(page.get_by_role("banner")).to_contain_text("Brightwater Services")  # header too
    type_and_save(page, js, "Phone", "phone", "(555) 333-7788")
    customer.reload()
    expect(customer.get_by_role("banner")).to_contain_text("Brightwater Services")
    expect(customer.get_by_role("link", name="(555) 333-7788")).to_be_visible()

    # A bad phone number is refused beside its field and changes nothing.
    field = page.get_by_label("Phone", exact=True)
    field.fill("call me maybe")
    if js:
        field.press("Tab")
    else:
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Enter a phone number like (555) 010-4477")).to_be_visible()
    expect(page.get_by_label("Phone", exact=True)).to_have_attribute("aria-invalid", "true")
    customer.reload()
    expect(customer.get_by_role("link", name="(555) 333-7788")).to_be_visible()
    if not js:
        page.goto(base + "/office/settings")  # leave the refused form behind

    # Logo: stored 50 pixels high; the customer's header shows it.
    page.get_by_label("Logo", exact=True).set_input_files(logo_file(tmp_path))
    saved(page, js, "logo")
    logo = page.get_by_role("img", name="Current logo of Brightwater Services")
    expect(logo).to_be_visible()
    logo.element_handle().wait_for_element_state("visible")
    image_loaded(page, logo)
    assert logo.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [100, 50]
    expect(page.locator("#office-brand img")).to_be_visible()  # the office header shows it
    customer.reload()
    header_logo = customer.locator("header.brand img")
    expect(header_logo).to_be_visible()
    assert header_logo.evaluate("img => img.naturalHeight") == 50

    # Which business units' invoices customers may download (saved and kept).
    expect(page.get_by_label("Plumbing", exact=True)).to_be_checked()
    change_and_save(
        page, js, "downloadable_units", page.get_by_label("Plumbing", exact=True).uncheck
    )
    change_and_save(
        page, js, "downloadable_units", page.get_by_label("Electrical", exact=True).check
    )
    if js:
        # Every save so far was an inline swap: the page itself never reloaded.
        assert page.evaluate("window.stillTheSamePage") is True
    page.reload()
    expect(page.get_by_label("Plumbing", exact=True)).not_to_be_checked()
    expect(page.get_by_label("Electrical", exact=True)).to_be_checked()

    # Turning the portal off closes it for the customer at once.
    page.get_by_label("Enable Customer Portal").uncheck()
    saved(page, js, "portal_enabled")
    customer.reload()
    expect(
        customer.get_by_role("heading", name="Our customer portal isn't available")
    ).to_be_visible()
    page.get_by_label("Enable Customer Portal").check()
    saved(page, js, "portal_enabled")

    # A reserved host is refused; a new host moves the portal and the office with it.
    new_host = f"brightwater-{'js' if js else 'nojs'}"
    field = page.get_by_label("Host", exact=True)
    field.fill("support")
    if js:
        field.press("Tab")
    else:
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("That name is reserved, please choose another.")).to_be_visible()
    page.get_by_label("Host", exact=True).fill(new_host)
    if js:  # checked first, then confirmed in place
        page.get_by_label("Host", exact=True).press("Tab")
        page.get_by_role("button", name="Move portal").click()
    else:
        page.get_by_role("button", name="Save", exact=True).click()
    new_base = f"http://{new_host}.localhost:{server.port}"
    expect(page).to_have_url(
        new_base + "/office/sign-in?done=moved&next=/office/settings%3Fsaved%3Dmoved"
    )
    expect(page.get_by_text("The portal moved to this address.")).to_be_visible()
    page.get_by_label("Email").fill(f"boss@{host}.example")
    page.get_by_label("Password").fill(NEW_ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(new_base + "/office/settings?saved=moved")
    expect(page.get_by_role("link", name=new_base + "/")).to_be_visible()  # Share your portal
    # A link to the old address (one already emailed) is redirected to the new one.
    customer.goto(base + "/sign-in")
    expect(customer).to_have_url(new_base + "/sign-in")
    expect(customer.get_by_role("heading", name="Sign in to Brightwater Services")).to_be_visible()
    customer_sign_in(customer, new_base, f"pat@{host}.example")
    expect(customer.get_by_role("banner")).to_contain_text("Brightwater Services")
    customer.context.close()


def test_share_your_portal_panel_gives_a_button_for_the_website(server, page: Page, js: bool):
    office_sign_in(page, server.base_url, "admin@xyzservices.example", "admin-demo-pass")
    panel = page.get_by_role("region", name="Share your portal")
    expect(panel.get_by_role("link", name=server.url("/"))).to_be_visible()
    snippet = panel.get_by_label("HTML for your website").input_value()
    assert snippet.startswith(f'<a href="{server.url("/")}"') and "style=" in snippet
    # The example button in the panel is the same link.
    expect(
        panel.get_by_role("link", name="Pay your bill and book service online")
    ).to_have_attribute("href", server.url("/"))


def test_office_menu_swaps_the_region_with_javascript(server, page: Page, js: bool):
    office_sign_in(page, server.base_url, "office@xyzservices.example", "office-demo-pass")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    menu = page.get_by_role("navigation", name="Office sections")
    menu.get_by_role("link", name="Customers").click()
    expect(page.get_by_role("heading", name="Customers", level=1)).to_be_visible()
    expect(page).to_have_url(server.url("/office/customers"))
    expect(page).to_have_title("Customers · Office · XYZ Services")
    if js:
        assert requests == [server.url("/office/customers")]
    page.get_by_label("Find a customer").fill("bob")
    if not js:
        page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="Bob Stone")).to_be_visible()
    expect(page.get_by_role("link", name="Jane Doe")).to_have_count(0)


def insert_request(server, service_type: str, notes: str = "") -> int:
    """An appointment request in the server's database, as the portal's scheduler stores it."""
    day = (date.today() + timedelta(days=3)).isoformat()
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as db:
        tenant, customer, location = db.execute(
            "SELECT c.tenant, c.id, l.id FROM customer c JOIN location l ON l.customer = c.id "
            "WHERE c.external_id = 'C-1001' ORDER BY l.id LIMIT 1"
        ).fetchone()
        cursor = db.execute(
            "INSERT INTO booking_request (tenant, customer, location, account_email, service_type,"
            " preferred_windows, notes, status, dismiss_reason, idempotency_key, created_at,"
            " handled_by) VALUES (?, ?, ?, 'jane@example.com', ?, ?, ?, 'new', '', ?, ?, '')",
            (
                tenant,
                customer,
                location,
                service_type,
                json.dumps([{"date": day, "window": "afternoon"}]),
                notes,
                uuid.uuid4().hex,
                datetime.now(UTC).isoformat(),
            ),
        )
        return cursor.lastrowid


def test_book_a_job_and_dismiss_a_request(server, page: Page, js: bool):
    mode = "js" if js else "nojs"
    insert_request(server, f"Boiler check {mode}", notes="Dog in the yard")
    insert_request(server, f"Gutter cleaning {mode}")
    office_sign_in(page, server.base_url, "office@xyzservices.example", "office-demo-pass")
    menu = page.get_by_role("navigation", name="Office sections")
    menu.get_by_role("link", name="Bookings").click()
    expect(page.get_by_role("heading", name="Bookings", level=1)).to_be_visible()
    new_before = int(menu.get_by_role("link", name="Bookings").inner_text().split()[1])

    card = page.get_by_role("article", name=f"Boiler check {mode}")
    expect(card.get_by_text("Dog in the yard")).to_be_visible()
    expect(card.get_by_text("afternoon")).to_be_visible()
    card.get_by_role("link", name="Book job").click()
    card = page.get_by_role("article", name=f"Boiler check {mode}")
    expect(card.get_by_role("heading", name="Book a job")).to_be_visible()
    expect(card.get_by_label("Arrival window")).to_have_value("afternoon")  # as preferred
    card.get_by_label("Business unit").select_option(label="HVAC")
    card.get_by_label("Summary").fill("Annual boiler check")
    card.get_by_role("button", name="Book job").click()
    expect(page.get_by_text("is booked and the customer was emailed.")).to_be_visible()
    card = page.get_by_role("article", name=f"Boiler check {mode}")
    expect(card.get_by_role("heading")).to_contain_text("Booked")
    expect(card.get_by_role("link", name="Book job")).to_have_count(0)
    expect(menu.get_by_role("link", name="Bookings")).to_contain_text(f"{new_before - 1} new")

    other = page.get_by_role("article", name=f"Gutter cleaning {mode}")
    other.get_by_role("link", name="Dismiss").click()
    other = page.get_by_role("article", name=f"Gutter cleaning {mode}")
    # The reason is required: the browser asks for it before sending anything.
    other.get_by_role("button", name="Dismiss request").click()
    expect(other.get_by_label("Reason")).to_be_focused()
    other.get_by_label("Reason").fill("We don't clean gutters.")
    other.get_by_role("button", name="Dismiss request").click()
    expect(
        page.get_by_text("The request was dismissed and the customer was emailed")
    ).to_be_visible()
    other = page.get_by_role("article", name=f"Gutter cleaning {mode}")
    expect(other.get_by_text("We don't clean gutters.")).to_be_visible()


def test_notification_wording_is_checked_previewed_and_saved(server, page: Page, js: bool):
    office_sign_in(page, server.base_url, "admin@xyzservices.example", "admin-demo-pass")
    page.goto(server.url("/office/notifications"))
    page.get_by_role("link", name="Booking confirmed").click()
    subject = page.get_by_label("Subject")
    subject.fill("Booked for {AppointmentDay}")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Unknown placeholder {AppointmentDay}.")).to_be_visible()
    expect(page.get_by_label("Subject")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Subject").fill("Booked for {AppointmentDate} ({CustomerName})")
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("region", name="Preview")
    expect(preview).to_contain_text("Booked for")
    expect(preview).to_contain_text("(Jane Doe)")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved. This wording is used from now on.")).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Use the default wording").click()
    expect(page.get_by_text("Back to the default wording.")).to_be_visible()
    expect(page.get_by_label("Subject")).to_have_value(
        "Your appointment with {BusinessName} is booked"
    )


def test_customer_emails_invite_and_email_invoice(server, page: Page, js: bool):
    mode = "js" if js else "nojs"
    office_sign_in(page, server.base_url, "office@xyzservices.example", "office-demo-pass")
    page.goto(server.url("/office/customers?q=Bob"))
    page.get_by_role("link", name="Bob Stone").click()
    expect(page.get_by_role("heading", name="Bob Stone")).to_be_visible()
    invoices = page.get_by_role("region", name="Invoices")
    invoices.get_by_role("button", name="Email invoice").first.click()
    expect(invoices.get_by_text("The invoice email is on its way")).to_be_visible()

    emails = page.get_by_role("region", name="Contact emails and portal access")
    expect(emails.get_by_text("No portal account")).to_be_visible()
    emails.get_by_label("Add an email").fill(f"Bob.{mode}@Example.com")
    emails.get_by_role("button", name="Add email").click()
    emails = page.get_by_role("region", name="Contact emails and portal access")
    expect(emails.get_by_text("The email was added.")).to_be_visible()
    expect(emails.get_by_text(f"bob.{mode}@example.com")).to_be_visible()
    emails.get_by_role("button", name=f"Invite bob.{mode}@example.com").click()
    emails = page.get_by_role("region", name="Contact emails and portal access")
    expect(emails.get_by_text("An invitation was sent")).to_be_visible()
    expect(emails.get_by_text("Invited, not confirmed yet")).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    emails.get_by_role("button", name=f"Remove bob.{mode}@example.com").click()
    emails = page.get_by_role("region", name="Contact emails and portal access")
    expect(emails.get_by_text("The email was removed.")).to_be_visible()
    expect(emails.get_by_text(f"bob.{mode}@example.com")).to_have_count(0)

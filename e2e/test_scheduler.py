"""Requesting an appointment in a real browser, JS on and off."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from tests.support.browser import sign_in

ADDRESSES = {
    "Home": "Home: 12 Oak Street, Springfield",
    "Lake cabin": "Lake cabin: 48 Shoreline Road, Lake Carroll",
}


def _day(days_ahead: int) -> tuple[str, str]:
    """(value for the date field, how the portal writes it) `days_ahead` of the business's today."""
    day = datetime.now(UTC).astimezone(ZoneInfo("America/Chicago")).date() + timedelta(
        days=days_ahead
    )
    text = f"{day:%a}, {day:%b} {day.day}, {day.year}"
    return day.isoformat(), text


def test_jane_requests_an_appointment_and_sees_it_as_requested(server, page: Page, js: bool):
    # Each run asks for something different, so the two runs sharing the server
    # each find their own request.
    service, place, window = (
        ("Drain cleaning", "Home", "Morning") if js else ("HVAC tune-up", "Lake cabin", "Afternoon")
    )
    notes = f"Test request with JS {'on' if js else 'off'}"
    first_value, first_text = _day(7 if js else 8)
    second_value, second_text = _day(9 if js else 10)
    sign_in(page, server.base_url)
    page.get_by_role("link", name="Scheduler").click()
    expect(page).to_have_url(server.url("/schedule"))
    form = page.locator("form#request-appointment")
    expect(form.get_by_role("heading", name="Request an appointment")).to_be_visible()

    form.get_by_label("Service location").select_option(label=ADDRESSES[place])
    form.get_by_label(service).check()
    first = form.get_by_role("group", name="First choice")
    first.get_by_label("Date").fill(first_value)
    first.get_by_label("Time of day").select_option(label=window)
    second = form.get_by_role("group", name="Second choice")
    second.get_by_label("Date").fill(second_value)
    form.get_by_label("Notes").fill(notes)
    form.get_by_role("button", name="Send request").click()

    expect(
        page.get_by_role("status").filter(has_text="We've received your request")
    ).to_contain_text(f"{service} at {place}")
    if js:
        expect(page).to_have_url(server.url("/schedule"))  # swapped in place
    else:
        expect(page).to_have_url(re.compile(r"/schedule\?requested=\d+$"))
    requests = page.locator("#your-requests")
    expect(requests.get_by_role("heading", name="Your requests")).to_be_visible()
    row = requests.get_by_role("row").filter(has_text=notes)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(service)
    expect(row).to_contain_text(f"{first_text} · {window.lower()}")
    expect(row).to_contain_text(f"{second_text} · any time")
    expect(row).to_contain_text("Requested")
    # The form is ready for another request: empty again.
    expect(form.get_by_label("Notes")).to_have_value("")


def test_other_without_notes_is_explained_and_nothing_is_lost(server, page: Page, js: bool):
    notes = f"Gate latch broken (JS {'on' if js else 'off'})"
    value, _ = _day(12)
    sign_in(page, server.base_url)
    page.goto(server.url("/schedule"))
    form = page.locator("form#request-appointment")
    form.get_by_label("Service location").select_option(label=ADDRESSES["Home"])
    form.get_by_label("Other").check()
    form.get_by_role("group", name="First choice").get_by_label("Date").fill(value)
    form.get_by_role("button", name="Send request").click()

    expect(page.get_by_role("alert")).to_have_text("Please fix the problem below.")
    notes_field = form.get_by_label("Notes")
    expect(notes_field).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_text("Tell us in the notes what you need done.")).to_be_visible()
    # What was chosen is still there.
    expect(form.get_by_label("Other")).to_be_checked()
    expect(form.get_by_role("group", name="First choice").get_by_label("Date")).to_have_value(value)
    expect(page.locator("#your-requests").get_by_text(notes)).to_have_count(0)

    notes_field.fill(notes)
    form.get_by_role("button", name="Send request").click()
    expect(
        page.get_by_role("status").filter(has_text="We've received your request")
    ).to_be_visible()
    row = page.locator("#your-requests").get_by_role("row").filter(has_text=notes)
    expect(row).to_contain_text("Other")
    expect(row).to_contain_text("Requested")

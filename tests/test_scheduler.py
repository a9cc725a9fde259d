"""Scheduler tab: requesting an appointment, the requests' statuses, upcoming appointments."""

from __future__ import annotations

import asyncio
import html as htmllib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from portal.db import bookings
from portal.db.tables import (
    BookingRequest,
    BusinessUnit,
    Customer,
    Job,
    Location,
    OutboxEmail,
    Tenant,
)
from portal.demo import JANE_EMAIL, SERVICE_TYPES
from portal.mail.backends import FileBackend
from portal.mail.worker import deliver_due
from tests.support.http import CSRF_FIELD, csrf_from

HX_PARTIAL = {"HX-Request": "true", "HX-Request-Type": "partial"}
KEY_FIELD = re.compile(r'name="request_key" value="([^"]+)"')


def business_today() -> date:
    """Today in the demo business's zone: what "past" and "60 days ahead" count from."""
    return datetime.now(UTC).astimezone(ZoneInfo("America/Chicago")).date()


def visible_text(page: str) -> str:
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture(autouse=True)
async def scheduler_on(demo: int) -> AsyncIterator[None]:
    await _set(demo, scheduler_enabled=True)
    yield
    await _set(demo, scheduler_enabled=True)


async def _set(tenant_id: int, **values) -> None:
    changes = {getattr(Tenant, k): v for k, v in values.items()}
    await Tenant.update(changes).where(Tenant.id == tenant_id).run()


async def location_id(external_id: str) -> int:
    row = (
        await Location.select(Location.id).where(Location.external_id == external_id).first().run()
    )
    return row["id"]


async def count_requests() -> int:
    return await BookingRequest.count().run()


async def count_emails() -> int:
    return await OutboxEmail.count().where(OutboxEmail.subject.like("%appointment request%")).run()


async def fresh_form(client: httpx.AsyncClient) -> dict[str, str]:
    """The hidden fields of a freshly loaded request form (CSRF token, request key)."""
    page = (await client.get("/schedule")).text
    token = CSRF_FIELD.search(page).group(1)
    return {"_csrf_token": token, "request_key": KEY_FIELD.search(page).group(1)}


async def valid_request(client: httpx.AsyncClient, **overrides: str) -> dict[str, str]:
    """A request form filled in the way Jane would, with `overrides`."""
    day = business_today() + timedelta(days=5)
    data = {
        **await fresh_form(client),
        "location": str(await location_id("L-JANE-HOME")),
        "service_type": "Drain cleaning",
        "date_1": day.isoformat(),
        "window_1": "morning",
        "date_2": "",
        "window_2": "any",
        "date_3": "",
        "window_3": "any",
        "notes": "Kitchen sink drains slowly.",
    }
    data.update(overrides)
    return data


# --- the tab and the form ---------------------------------------------------------------------


async def test_form_offers_the_customers_locations_and_the_offices_service_types(jane):
    page = (await jane.get("/schedule")).text
    assert "<h1>Scheduler</h1>" in page
    assert "<h2>Request an appointment</h2>" in page
    assert "Home: 12 Oak Street, Springfield" in page
    assert "Lake cabin: 48 Shoreline Road, Lake Carroll" in page
    assert "7 Birch Lane" not in page  # Bob's
    for name in [*SERVICE_TYPES, "Other"]:
        assert f'name="service_type" value="{name}"' in page
    for choice in ("First choice", "Second choice", "Third choice"):
        assert choice in page
    for window in ("Morning", "Afternoon", "Any time"):
        assert f">{window}</option>" in page
    today = business_today()
    assert f'min="{today.isoformat()}"' in page
    assert f'max="{(today + timedelta(days=60)).isoformat()}"' in page
    assert KEY_FIELD.search(page)


async def test_each_form_gets_its_own_request_key(jane):
    first = KEY_FIELD.search((await jane.get("/schedule")).text).group(1)
    second = KEY_FIELD.search((await jane.get("/schedule")).text).group(1)
    assert first != second and len(first) >= 16


async def test_scheduler_off_hides_tab_and_the_url_is_404(jane, demo):
    assert 'href="/schedule"' in (await jane.get("/invoices")).text
    token = await csrf_from(jane, "/schedule")
    await _set(demo, scheduler_enabled=False)
    assert 'href="/schedule"' not in (await jane.get("/invoices")).text
    response = await jane.get("/schedule")
    assert response.status_code == 404
    assert "Page not found" in response.text
    before = await count_requests()
    response = await jane.post("/schedule", data={"_csrf_token": token, "service_type": "Other"})
    assert response.status_code == 404
    assert await count_requests() == before


async def test_upcoming_booked_appointments_are_listed(jane):
    page = (await jane.get("/schedule")).text
    assert "Upcoming appointments" in page
    # The demo's scheduled HVAC job (in three days), in the business's time zone.
    job = (
        await Job.select()
        .where(Job.status == "scheduled")
        .order_by(Job.scheduled_start)
        .first()
        .run()
    )
    start = job["scheduled_start"].astimezone(ZoneInfo("America/Chicago"))
    end = job["scheduled_end"].astimezone(ZoneInfo("America/Chicago"))
    assert f"{start:%a}, {start:%b} {start.day}, {start.year}" in page
    assert f"{start.hour}–{end.hour}" in page
    assert job["summary"] in page and job["number"] in page


# --- a good request ---------------------------------------------------------------------------


async def test_request_is_saved_emailed_and_listed_as_requested(jane, settings, demo):
    before_emails = await count_emails()
    data = await valid_request(
        jane,
        location=str(await location_id("L-JANE-CABIN")),
        service_type="HVAC tune-up",
        date_2=(business_today() + timedelta(days=6)).isoformat(),
        window_2="afternoon",
        notes="Furnace makes a rattling noise.",
    )
    response = await jane.post("/schedule", data=data)
    assert response.status_code == 303
    assert re.fullmatch(r"/schedule\?requested=\d+", response.headers["location"])
    row = (
        await BookingRequest.select()
        .where(BookingRequest.idempotency_key == data["request_key"])
        .first()
        .run()
    )
    jane_customer = (
        await Customer.select(Customer.id).where(Customer.external_id == "C-1001").first().run()
    )
    assert row["tenant"] == demo
    assert row["customer"] == jane_customer["id"]
    assert row["location"] == await location_id("L-JANE-CABIN")
    assert row["account_email"] == JANE_EMAIL
    assert row["service_type"] == "HVAC tune-up"
    assert row["status"] == "new"
    assert row["notes"] == "Furnace makes a rattling noise."
    assert json.loads(row["preferred_windows"]) == [
        {"date": data["date_1"], "window": "morning"},
        {"date": data["date_2"], "window": "afternoon"},
    ]
    assert row["created_at"] is not None
    # The confirmation email waits in the outbox; the worker delivers it.
    assert await count_emails() == before_emails + 1
    await deliver_due(settings, FileBackend(settings.mail_dir))
    newest = max(settings.mail_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime)
    mail = newest.read_text()
    assert "To: jane@example.com" in mail
    assert "Subject: We've received your appointment request" in mail
    assert "HVAC tune-up" in mail and "Lake cabin: 48 Shoreline Road" in mail
    assert "Furnace makes a rattling noise." in mail
    assert "http://xyzplumbing.localhost:8000/schedule" in mail

    page = (await jane.get(response.headers["location"])).text
    text = visible_text(page)
    assert "We've received your request for HVAC tune-up at Lake cabin" in text
    listing = text[text.index("Your requests") :]
    assert "HVAC tune-up" in listing and "Requested" in listing
    first = date.fromisoformat(data["date_1"])
    assert f"{first:%a}, {first:%b} {first.day}, {first.year} · morning" in listing


async def test_double_submit_creates_one_request_and_shows_the_same_result(jane):
    before, before_emails = await count_requests(), await count_emails()
    data = await valid_request(jane, notes="Double submit check")
    first = await jane.post("/schedule", data=data)
    second = await jane.post("/schedule", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert await count_requests() == before + 1
    assert await count_emails() == before_emails + 1
    page = (await jane.get(second.headers["location"])).text
    assert "We&#39;ve received your request for Drain cleaning" in page
    assert page.count("Double submit check") == 1  # listed once


async def test_two_submits_at_the_same_moment_create_one_request(jane):
    before, before_emails = await count_requests(), await count_emails()
    data = await valid_request(jane, notes="Racing submits")
    first, second = await asyncio.gather(
        jane.post("/schedule", data=data), jane.post("/schedule", data=data)
    )
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert await count_requests() == before + 1
    assert await count_emails() == before_emails + 1


async def test_htmx_submit_swaps_a_fresh_form_and_updates_the_list(jane):
    data = await valid_request(jane, service_type="Electrical inspection")
    response = await jane.post("/schedule", data=data, headers=HX_PARTIAL)
    assert response.status_code == 200
    page = response.text
    assert "<html" not in page
    assert page.lstrip().startswith('<form method="post" action="/schedule"')
    assert "We&#39;ve received your request for Electrical inspection" in page
    new_key = KEY_FIELD.search(page).group(1)
    assert new_key != data["request_key"]  # the next request is a new one
    partial = page[page.index('<hx-partial hx-target="#your-requests"') :]
    assert "Electrical inspection" in partial and "Requested" in partial
    # Sent again (a retry): the same answer, still one request.
    again = await jane.post("/schedule", data=data, headers=HX_PARTIAL)
    assert again.status_code == 200
    assert "We&#39;ve received your request for Electrical inspection" in again.text
    assert (
        await BookingRequest.count()
        .where(BookingRequest.idempotency_key == data["request_key"])
        .run()
        == 1
    )


async def test_other_with_notes_is_accepted_and_today_and_the_last_day_are_allowed(jane):
    today, last = business_today(), business_today() + timedelta(days=60)
    data = await valid_request(
        jane,
        service_type="Other",
        notes="Gate latch is broken",
        date_1=today.isoformat(),
        date_2=last.isoformat(),
        date_3=f"{last.month}/{last.day}/{last.year}",  # typed the US way, without a picker
        window_3="morning",
    )
    response = await jane.post("/schedule", data=data)
    assert response.status_code == 303, visible_text(response.text)
    row = (
        await BookingRequest.select()
        .where(BookingRequest.idempotency_key == data["request_key"])
        .first()
        .run()
    )
    assert row["service_type"] == "Other"
    assert [w["date"] for w in json.loads(row["preferred_windows"])] == [
        today.isoformat(),
        last.isoformat(),
        last.isoformat(),
    ]


async def test_notes_of_exactly_the_limit_are_accepted(jane):
    data = await valid_request(jane, notes="x" * 1000)
    assert (await jane.post("/schedule", data=data)).status_code == 303


# --- requests that are refused ----------------------------------------------------------------


def _days(n: int) -> str:
    return (business_today() + timedelta(days=n)).isoformat()


REFUSED = [
    ({"location": ""}, "location", "Choose the service location."),
    ({"service_type": ""}, "service_type", "Choose what the visit is for."),
    ({"service_type": "Roof repair"}, "service_type", "Choose what the visit is for."),
    ({"service_type": "Other", "notes": "  "}, "notes", "Tell us in the notes what you need done."),
    ({"date_1": ""}, "date_1", "Choose a date for your first choice."),
    ({"date_1": "next tuesday"}, "date_1", "Enter the date like 2026-12-03."),
    ({"date_1": "2026-02-30"}, "date_1", "Enter the date like 2026-12-03."),
    ({"date_1": _days(-1)}, "date_1", "That date has passed."),
    ({"date_2": _days(61)}, "date_2", "We take requests up to 60 days ahead."),
    ({"date_3": _days(400)}, "date_3", "We take requests up to 60 days ahead."),
    ({"window_1": "evening"}, "window_1", "Choose morning, afternoon or any time."),
    (
        {"date_2": _days(5), "window_2": "morning"},
        "date_2",
        "You already chose this date and time of day.",
    ),
    ({"notes": "x" * 1001}, "notes", "Notes can be up to 1,000 characters; yours have 1,001."),
    ({"request_key": ""}, None, "This form could not be read."),
    ({"request_key": "<script>"}, None, "This form could not be read."),
]


@pytest.mark.parametrize("changes,field,message", REFUSED)
async def test_bad_requests_get_a_clear_message_and_save_nothing(jane, changes, field, message):
    before, before_emails = await count_requests(), await count_emails()
    data = await valid_request(jane, **changes)
    response = await jane.post("/schedule", data=data)
    assert response.status_code == 422
    page = response.text
    assert page.startswith("<!doctype html>")  # without JS: the whole page, form filled in
    assert message in htmllib.unescape(page)
    if field:
        assert f'id="f-{field}-error"' in page
    assert 'role="alert"' in page
    if changes.get("notes") is None and data["date_1"]:
        assert f'value="{data["date_1"]}"' in page  # what was typed is kept
    assert await count_requests() == before
    assert await count_emails() == before_emails


async def test_a_date_typed_month_first_comes_back_as_the_pickers_date(jane):
    """12/3/2026 is read as a date: with another problem on the form, it comes back in the
    date picker's own format (a picker shows nothing for a value it cannot read)."""
    day = business_today() + timedelta(days=5)
    typed = f"{day.month}/{day.day}/{day.year}"
    before = await count_requests()
    data = await valid_request(jane, date_1=typed, service_type="")
    response = await jane.post("/schedule", data=data)
    assert response.status_code == 422
    assert "Choose what the visit is for." in htmllib.unescape(response.text)
    assert f'id="f-date_1" name="date_1" type="date" value="{day.isoformat()}"' in response.text
    assert 'id="f-date_1-error"' not in response.text
    assert await count_requests() == before


async def test_bad_request_with_htmx_gets_only_the_form_back(jane):
    before = await count_requests()
    data = await valid_request(jane, date_1=_days(-3), notes="Keep this note")
    response = await jane.post("/schedule", data=data, headers=HX_PARTIAL)
    assert response.status_code == 422
    page = response.text
    assert page.lstrip().startswith('<form method="post" action="/schedule"')
    assert "<html" not in page and "Your requests" not in page
    assert "That date has passed." in page
    assert "Keep this note</textarea>" in page
    assert 'value="Drain cleaning" required checked' in page
    assert await count_requests() == before


@pytest.mark.parametrize("external_id", ["L-BOB", "L-ACME-1"])
async def test_another_customers_location_is_refused(jane, external_id):
    before = await count_requests()
    data = await valid_request(jane, location=str(await location_id(external_id)))
    response = await jane.post("/schedule", data=data)
    assert response.status_code == 422
    assert "Choose one of your service locations." in response.text
    assert await count_requests() == before


async def test_unknown_and_malformed_location_ids_are_refused(jane):
    before = await count_requests()
    for value in ("999999", "abc", "-1", "1 OR 1=1"):
        response = await jane.post("/schedule", data=await valid_request(jane, location=value))
        assert response.status_code == 422, value
        assert "Choose one of your service locations." in response.text
    assert await count_requests() == before


async def test_a_key_used_by_another_customer_shows_nothing_of_theirs(jane, demo):
    bob = await Customer.select(Customer.id).where(Customer.external_id == "C-1002").first().run()
    await BookingRequest.insert(
        BookingRequest(
            tenant=demo,
            customer=bob["id"],
            location=await location_id("L-BOB"),
            service_type="Plumbing repair",
            notes="Bob's private note",
            idempotency_key="bobs-key-0123456789",
        )
    ).run()
    before = await count_requests()
    data = await valid_request(jane, request_key="bobs-key-0123456789")
    response = await jane.post("/schedule", data=data)
    assert response.status_code == 422
    assert "This form could not be read." in response.text
    assert "Bob" not in response.text
    assert await count_requests() == before


async def test_malformed_body_is_a_clear_refusal(jane):
    token = (await fresh_form(jane))["_csrf_token"]
    response = await jane.post(
        "/schedule",
        content=b"\xff\xfe garbage",
        headers={"content-type": "application/x-www-form-urlencoded", "x-csrftoken": token},
    )
    assert response.status_code == 422
    assert "Please fix the" in response.text or "could not be read" in response.text


# --- what the customer reads about their requests ---------------------------------------------


async def test_statuses_read_requested_booked_and_closed(jane, demo):
    jane_row = (
        await Customer.select(Customer.id).where(Customer.external_id == "C-1001").first().run()
    )
    home = await location_id("L-JANE-HOME")
    booked, closed = await BookingRequest.insert(
        BookingRequest(
            tenant=demo,
            customer=jane_row["id"],
            location=home,
            service_type="Booked thing",
            status="booked",
            idempotency_key="status-test-booked-0001",
        ),
        BookingRequest(
            tenant=demo,
            customer=jane_row["id"],
            location=home,
            service_type="Closed thing",
            status="dismissed",
            dismiss_reason="Duplicate",
            idempotency_key="status-test-closed-0001",
        ),
    ).run()
    unit = (
        await BusinessUnit.select(BusinessUnit.id).where(BusinessUnit.tenant == demo).first().run()
    )
    # 14:00–18:00 UTC on Tue 3 Dec 2030 is 8–12 in Chicago (CST, UTC-6).
    await Job.insert(
        Job(
            tenant=demo,
            customer=jane_row["id"],
            location=home,
            business_unit=unit["id"],
            booking_request=booked["id"],
            number="J-STATUS-1",
            summary="Booked from the portal",
            status="scheduled",
            scheduled_start=datetime(2030, 12, 3, 14, 0, tzinfo=UTC),
            scheduled_end=datetime(2030, 12, 3, 18, 0, tzinfo=UTC),
        )
    ).run()
    text = visible_text((await jane.get("/schedule")).text)
    listing = text[text.index("Your requests") :]
    assert re.search(r"Booked thing .*Booked for Tue, Dec 3, 2030 · 8 AM–12 PM", listing)
    # The office's reason is for the customer (its form says so): shown with the status.
    assert re.search(r"Closed thing .*Closed Duplicate", listing)
    # The booked job is also among the upcoming appointments.
    assert "Booked from the portal" in text[: text.index("Your requests")]


async def test_requests_are_paged_newest_first(jane, demo):
    jane_row = (
        await Customer.select(Customer.id).where(Customer.external_id == "C-1001").first().run()
    )
    home = await location_id("L-JANE-HOME")
    await BookingRequest.insert(
        *[
            BookingRequest(
                tenant=demo,
                customer=jane_row["id"],
                location=home,
                service_type=f"Paged request {i:02d}",
                idempotency_key=f"paging-test-key-{i:04d}",
            )
            for i in range(25)
        ]
    ).run()
    page_size = bookings.REQUESTS_PAGE
    first = (await jane.get("/schedule")).text
    assert re.findall(r"Paged request (\d\d)", first) == [
        f"{i:02d}" for i in range(24, 24 - page_size, -1)
    ]
    seen = re.findall(r"Paged request (\d\d)", first)
    page = first
    for _ in range(30):
        older = re.search(r'href="(/schedule\?before=\d+)#your-requests"', page)
        if older is None:
            break
        page = (await jane.get(older.group(1))).text
        assert "Newest requests" in page
        shown = re.findall(r"Paged request (\d\d)", page)
        assert len(shown) <= page_size
        seen += shown
    assert seen == [f"{i:02d}" for i in range(24, -1, -1)]  # each once, newest first


async def test_another_customers_requests_are_not_shown(jane, demo):
    page = (await jane.get("/schedule")).text
    assert "Bob&#39;s private note" not in page and "Plumbing repair" not in visible_text(
        page[page.index("Your requests") :]
    )


async def test_malformed_paging_and_notice_parameters_are_ignored(jane):
    for query in ("before=abc", "before=99999999999", "requested=2147483648", "requested=-5"):
        response = await jane.get(f"/schedule?{query}")
        assert response.status_code == 200, query
        assert "Request an appointment" in response.text
        assert "received your request" not in response.text


async def test_without_service_types_only_other_is_offered(jane, demo):
    await _set(demo, service_types="[]")
    try:
        page = (await jane.get("/schedule")).text
        assert re.findall(r'name="service_type" value="([^"]+)"', page) == ["Other"]
        response = await jane.post(
            "/schedule", data=await valid_request(jane, service_type="Drain cleaning")
        )
        assert response.status_code == 422
        assert "Choose what the visit is for." in response.text
    finally:
        await _set(demo, service_types=json.dumps(SERVICE_TYPES))


async def test_signed_out_visitor_is_sent_to_sign_in(client, demo):
    response = await client.get("/schedule")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/schedule"

"""Office › Bookings: appointment requests newest first; Book job makes one scheduled job
(even when two staff book at once), marks the request booked and emails the customer;
Dismiss closes it with a reason; bad input and other businesses' requests change nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from portal import appointments
from portal.db import office_bookings as bookings
from portal.db.tables import (
    BookingRequest,
    BusinessUnit,
    Customer,
    Job,
    Location,
    OutboxEmail,
    Tenant,
)
from portal.demo import ADMIN_EMAIL, DEMO_HOST, JANE_EMAIL, OFFICE_EMAIL
from tests.support.businesses import import_business
from tests.support.http import csrf_from

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}
CHICAGO = ZoneInfo("America/Chicago")


def local_today() -> date:
    return datetime.now(CHICAGO).date()


async def demo_tenant() -> dict[str, Any]:
    row = (
        await Tenant.select(Tenant.id, Tenant.time_zone)
        .where(Tenant.host == DEMO_HOST)
        .first()
        .run()
    )
    assert row is not None
    return row


async def new_request(
    host: str = DEMO_HOST,
    customer: str = "C-1001",
    *,
    service_type: str = "Drain cleaning",
    windows: list[dict[str, str]] | None = None,
    notes: str = "",
    minutes_ago: int = 0,
    account_email: str = JANE_EMAIL,
) -> int:
    """An appointment request as the portal's scheduler stores it."""
    tenant = await Tenant.select(Tenant.id).where(Tenant.host == host).first().run()
    who = (
        await Customer.select(Customer.id)
        .where((Customer.tenant == tenant["id"]) & (Customer.external_id == customer))
        .first()
        .run()
    )
    where = await Location.select(Location.id).where(Location.customer == who["id"]).first().run()
    if windows is None:
        tomorrow = local_today() + timedelta(days=2)
        windows = [{"date": tomorrow.isoformat(), "window": "morning"}]
    rows = await BookingRequest.insert(
        BookingRequest(
            tenant=tenant["id"],
            customer=who["id"],
            location=where["id"],
            account_email=account_email,
            service_type=service_type,
            preferred_windows=json.dumps(windows),
            notes=notes,
            idempotency_key=uuid.uuid4().hex,
            created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        )
    ).run()
    return rows[0]["id"]


async def unit_id(name: str = "Plumbing", host: str = DEMO_HOST) -> int:
    tenant = await Tenant.select(Tenant.id).where(Tenant.host == host).first().run()
    row = (
        await BusinessUnit.select(BusinessUnit.id)
        .where((BusinessUnit.tenant == tenant["id"]) & (BusinessUnit.name == name))
        .first()
        .run()
    )
    return row["id"]


async def request_row(request_id: int) -> dict[str, Any]:
    return await BookingRequest.select().where(BookingRequest.id == request_id).first().run()


async def jobs_for(request_id: int) -> list[dict[str, Any]]:
    return await Job.select().where(Job.booking_request == request_id).run()


async def post(client: httpx.AsyncClient, path: str, data: dict[str, Any], **kw) -> httpx.Response:
    token = await csrf_from(client, "/office/bookings")
    return await client.post(path, data={"_csrf_token": token, **data}, **kw)


def booking_form(day: date, unit: int, window: str = "morning", summary: str = "Clear drain"):
    return {
        "date": day.isoformat(),
        "window": window,
        "business_unit": str(unit),
        "summary": summary,
    }


async def test_requests_are_listed_newest_first_and_new_ones_stand_out(admin):
    old = await new_request(service_type="Furnace check", minutes_ago=90, notes="Gate code 1234")
    newer = await new_request(
        service_type="Leaky faucet",
        minutes_ago=5,
        windows=[
            {"date": "2026-12-07", "window": "afternoon"},
            {"date": "2026-12-08", "window": "any"},
        ],
    )
    handled = await new_request(service_type="Dismissed thing", minutes_ago=30)
    await (
        BookingRequest.update(
            {BookingRequest.status: "dismissed", BookingRequest.dismiss_reason: "Duplicate"}
        )
        .where(BookingRequest.id == handled)
        .run()
    )
    page = (await admin.get("/office/bookings")).text
    assert page.index("Leaky faucet") < page.index("Dismissed thing") < page.index("Furnace check")
    assert f'class="card booking is-new" id="booking-{newer}"' in page
    assert f'class="card booking" id="booking-{handled}"' in page
    assert "Mon, Dec 7, 2026 · afternoon" in page and "Tue, Dec 8, 2026 · any time" in page
    assert "Gate code 1234" in page and "12 Oak Street, Springfield" in page
    assert "Jane Doe" in page and "Duplicate" in page
    # The menu counts the new ones.
    new_count = await BookingRequest.count().where(BookingRequest.status == "new").run()
    assert f"{new_count} new</span>" in page
    only_new = (await admin.get("/office/bookings?status=new")).text
    assert "Dismissed thing" not in only_new and f"booking-{old}" in only_new


async def test_book_job_creates_a_scheduled_job_and_emails_the_customer(admin):
    request_id = await new_request(service_type="Water heater", notes="Side door")
    form = await admin.get(f"/office/bookings/{request_id}/book")
    assert form.status_code == 200
    preferred = (local_today() + timedelta(days=2)).isoformat()
    assert f'name="date" type="date" value="{preferred}"' in form.text
    assert 'value="morning" selected' in form.text
    existing = {j["number"] for j in await Job.select(Job.number).run()}
    day = local_today() + timedelta(days=3)
    plumbing = await unit_id()
    response = await post(
        admin,
        f"/office/bookings/{request_id}/book",
        booking_form(day, plumbing, "afternoon", "Replace water heater"),
    )
    assert response.status_code == 303
    [job] = await jobs_for(request_id)
    assert response.headers["location"] == f"/office/bookings?done=booked&job={job['number']}"
    assert job["number"].startswith("J-") and job["number"] not in existing
    assert job["status"] == "scheduled" and job["business_unit"] == plumbing
    assert job["summary"] == "Replace water heater"
    assert job["scheduled_start"] == datetime(day.year, day.month, day.day, 12, tzinfo=CHICAGO)
    assert job["scheduled_end"] == datetime(day.year, day.month, day.day, 17, tzinfo=CHICAGO)
    row = await request_row(request_id)
    assert row["status"] == "booked" and row["handled_by"] == ADMIN_EMAIL
    assert row["handled_at"] is not None
    email = (
        await OutboxEmail.select()
        .where(OutboxEmail.to_addr == JANE_EMAIL)
        .order_by(OutboxEmail.id, ascending=False)
        .first()
        .run()
    )
    assert email["subject"] == "Your appointment with XYZ Services is booked"
    assert f"{day:%A}, {day:%b} {day.day}, {day.year}" in email["text_body"]
    assert "between 12 PM and 5 PM" in email["text_body"]
    assert "http://xyzplumbing.localhost:8000/sign-in" in email["text_body"]
    assert 'href="http://xyzplumbing.localhost:8000/sign-in"' in email["html_body"]
    listed = (await admin.get(response.headers["location"])).text
    assert f"Job {job['number']} is booked and the customer was emailed." in listed


async def test_book_job_inline_swaps_the_card_and_the_menu_count(admin):
    request_id = await new_request(service_type="Inline booking")
    opened = await admin.get(f"/office/bookings/{request_id}/book", headers=HX)
    assert opened.text.startswith("<article") and "Book a job" in opened.text
    response = await post(
        admin,
        f"/office/bookings/{request_id}/book",
        booking_form(local_today() + timedelta(days=1), await unit_id("HVAC")),
        headers=HX,
    )
    assert response.status_code == 200
    assert response.text.startswith("<article")
    assert "is booked and the customer was emailed" in response.text
    assert '<hx-partial hx-target="#new-bookings"' in response.text
    assert len(await jobs_for(request_id)) == 1


@pytest.mark.parametrize(
    "change,field,message",
    [
        ({"date": "yesterday"}, "date", "Enter the date of the visit"),
        ({"date": "2020-01-01"}, "date", "Choose today or a later date."),
        ({"date": "2099-01-01"}, "date", "Choose a date within the next year."),
        ({"window": "midnight"}, "window", "Choose an arrival window."),
        ({"business_unit": "999999"}, "business_unit", "Choose a business unit."),
        ({"summary": "   "}, "summary", "Describe the job in a few words."),
        ({"summary": "x" * 301}, "summary", "Use at most 300 characters"),
    ],
)
async def test_bad_booking_input_changes_nothing(admin, change, field, message):
    request_id = await new_request(service_type="Bad input")
    data = {**booking_form(local_today() + timedelta(days=1), await unit_id()), **change}
    response = await post(admin, f"/office/bookings/{request_id}/book", data, headers=HX)
    assert response.status_code == 422
    assert message in response.text
    assert f'id="f-{field}-error"' in response.text
    assert (await request_row(request_id))["status"] == "new"
    assert await jobs_for(request_id) == []


def test_the_book_job_form_is_checked_field_by_field():
    tenant = {"time_zone": "America/Chicago"}
    units = [{"id": 7, "name": "Plumbing"}]
    day = local_today() + timedelta(days=2)
    form = booking_form(day, 7, window="afternoon", summary="  Clear\nthe drain ")
    checked = appointments.check_booking(tenant, form, units)
    assert checked.ok and checked.values == form
    assert checked.clean == bookings.Booking(day, "afternoon", 7, "Clear the drain")
    bad = {"date": "2020-01-01", "window": "dawn", "business_unit": "8", "summary": ""}
    refused = appointments.check_booking(tenant, bad, units)
    assert refused.clean is None and refused.values == bad
    assert refused.problems == {
        "date": "Choose today or a later date.",
        "window": "Choose an arrival window.",
        "business_unit": "Choose a business unit.",
        "summary": "Describe the job in a few words.",
    }


async def test_another_business_unit_cannot_be_used(admin):
    await import_business("unitbiz")
    request_id = await new_request(service_type="Foreign unit")
    data = booking_form(local_today() + timedelta(days=1), await unit_id("Plumbing", "unitbiz"))
    response = await post(admin, f"/office/bookings/{request_id}/book", data)
    assert response.status_code == 422
    assert await jobs_for(request_id) == []


async def test_booking_an_already_booked_request_says_who_did(admin, office):
    request_id = await new_request(service_type="Twice")
    data = booking_form(local_today() + timedelta(days=1), await unit_id())
    first = await post(office, f"/office/bookings/{request_id}/book", data)
    assert first.status_code == 303  # office-role staff book jobs too
    second = await post(admin, f"/office/bookings/{request_id}/book", data)
    assert second.status_code == 409
    [job] = await jobs_for(request_id)
    assert f"already booked as job {job['number']} by {OFFICE_EMAIL}" in second.text
    again = await admin.get(f"/office/bookings/{request_id}/book")
    assert "already booked" in again.text and "Book a job" not in again.text


async def test_dismiss_needs_a_reason_and_closes_the_request(admin):
    request_id = await new_request(service_type="To dismiss")
    opened = await admin.get(f"/office/bookings/{request_id}/dismiss")
    assert "Dismiss the request" in opened.text
    empty = await post(admin, f"/office/bookings/{request_id}/dismiss", {"reason": "  "})
    assert empty.status_code == 422 and "Say why the request is dismissed" in empty.text
    assert (await request_row(request_id))["status"] == "new"
    done = await post(
        admin, f"/office/bookings/{request_id}/dismiss", {"reason": "We don't serve that area."}
    )
    assert done.status_code == 303
    row = await request_row(request_id)
    assert row["status"] == "dismissed" and row["dismiss_reason"] == "We don't serve that area."
    assert row["handled_by"] == ADMIN_EMAIL
    late = await post(
        admin,
        f"/office/bookings/{request_id}/book",
        booking_form(local_today() + timedelta(days=1), await unit_id()),
    )
    assert late.status_code == 409 and "already dismissed" in late.text
    assert await jobs_for(request_id) == []


async def test_another_business_request_is_404(admin):
    await import_business("farbiz")
    theirs = await new_request("farbiz", "C1", account_email="pat@farbiz.example")
    assert (await admin.get(f"/office/bookings/{theirs}")).status_code == 404
    assert (await admin.get(f"/office/bookings/{theirs}/book")).status_code == 404
    data = booking_form(local_today() + timedelta(days=1), await unit_id())
    assert (await post(admin, f"/office/bookings/{theirs}/book", data)).status_code == 404
    assert (
        await post(admin, f"/office/bookings/{theirs}/dismiss", {"reason": "x"})
    ).status_code == 404
    assert (await request_row(theirs))["status"] == "new"


async def test_two_staff_booking_at_once_make_exactly_one_job(app, admin, office, settings):
    tenant = await demo_tenant()
    tenant_dict = {"id": tenant["id"], "time_zone": tenant["time_zone"], "host": DEMO_HOST,
                   "name": "XYZ Services", "currency": "USD", "logo_version": 0, "email": "",
                   "phone": ""}  # fmt: skip
    request_id = await new_request(service_type="Race")
    checked = bookings.Booking(
        day=local_today() + timedelta(days=1),
        window="morning",
        unit_id=await unit_id(),
        summary="Race",
    )
    outcomes = await asyncio.gather(
        *[
            appointments.book(settings, tenant_dict, request_id, checked, f"staff{i}@x.example")
            for i in range(5)
        ],
        return_exceptions=True,
    )
    numbers = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, appointments.AlreadyHandled)]
    assert len(numbers) == 1 and len(refused) == 4, outcomes
    [job] = await jobs_for(request_id)
    assert job["number"] == numbers[0]
    assert (await request_row(request_id))["handled_by"] in {
        f"staff{i}@x.example" for i in range(5)
    }

    # Through the web, two staff members pressing Book job together.
    request_id = await new_request(service_type="Web race")
    data = booking_form(local_today() + timedelta(days=1), await unit_id())
    tokens = [await csrf_from(c, "/office/bookings") for c in (admin, office)]
    responses = await asyncio.gather(
        *[
            c.post(f"/office/bookings/{request_id}/book", data={"_csrf_token": t, **data})
            for c, t in zip((admin, office), tokens, strict=True)
        ]
    )
    assert sorted(r.status_code for r in responses) == [303, 409]
    assert len(await jobs_for(request_id)) == 1
    emails = await OutboxEmail.count().where(OutboxEmail.subject.like("%is booked")).run()
    assert emails >= 2  # one per booked request, none for the refused attempts


async def test_concurrent_bookings_of_different_requests_get_different_numbers(settings, admin):
    tenant = await demo_tenant()
    tenant_dict = {"id": tenant["id"], "time_zone": tenant["time_zone"], "host": DEMO_HOST,
                   "name": "XYZ Services", "currency": "USD", "logo_version": 0, "email": "",
                   "phone": ""}  # fmt: skip
    ids = [await new_request(service_type=f"Parallel {i}") for i in range(4)]
    checked = bookings.Booking(
        day=local_today() + timedelta(days=1),
        window="any",
        unit_id=await unit_id(),
        summary="Parallel",
    )
    numbers = await asyncio.gather(
        *[appointments.book(settings, tenant_dict, i, checked, ADMIN_EMAIL) for i in ids]
    )
    assert len(set(numbers)) == 4


def test_scheduled_times_are_utc_from_the_business_local_day():
    tenant = {"time_zone": "America/Chicago"}
    winter = bookings.scheduled_times(tenant, date(2026, 12, 7), "morning")
    assert winter == (datetime(2026, 12, 7, 14, tzinfo=UTC), datetime(2026, 12, 7, 18, tzinfo=UTC))
    summer = bookings.scheduled_times(tenant, date(2026, 7, 7), "afternoon")
    assert summer == (datetime(2026, 7, 7, 17, tzinfo=UTC), datetime(2026, 7, 7, 22, tzinfo=UTC))


def test_malformed_preferred_windows_are_skipped():
    assert bookings.preferred_windows("not json") == []
    assert bookings.preferred_windows('{"date": "2026-12-07"}') == []
    got = bookings.preferred_windows(
        '[{"date": "2026-12-07", "window": "dawn"}, {"date": "bad"}, 3, {"date": "2026-12-08", "window": "morning"}]'
    )
    assert [(w["date"].isoformat(), w["window"]) for w in got] == [
        ("2026-12-07", "any"),
        ("2026-12-08", "morning"),
    ]


async def test_bookings_list_pages_through_older_requests(admin):
    for i in range(25):
        await new_request(service_type=f"Page item {i:02d}", minutes_ago=1000 + i)
    first = (await admin.get("/office/bookings")).text
    assert "Older requests" in first
    seen: list[str] = []
    path = "/office/bookings"
    for _ in range(10):
        page = (await admin.get(path)).text
        seen += [f"Page item {i:02d}" for i in range(25) if f"Page item {i:02d} ·" in page]
        if "Older requests</a>" not in page:
            break
        after = page.split("after=")[1].split('"')[0]
        path = f"/office/bookings?status=all&after={after}"
    assert sorted(seen) == [f"Page item {i:02d}" for i in range(25)]  # each once, none lost

"""Appointments as a record type of their own: PUT/DELETE /api/v1/appointments/{id} (and
bulk lines), a time window at one of the customer's locations for a service type, with its
status, optionally for a job and answering the customer's appointment request. The customer
sees the upcoming ones on the Scheduler tab; the request it answers shows as booked for its
time and leaves the office's queue."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from portal.db import tables as t
from portal.importer import import_file
from tests.support.api import ADMIN_PASSWORD, api_client, bulk, new_key, register

HOST = "apptco"
PASSWORD = "a garden of tulips"
SOON = datetime.now(UTC).replace(hour=15, minute=0, second=0, microsecond=0) + timedelta(days=3)


def at(days: int, hours: int = 0) -> str:
    return (SOON + timedelta(days=days, hours=hours)).isoformat().replace("+00:00", "Z")


def appointment(ident: str, **extra: object) -> dict:
    return {
        "id": ident,
        "customer": "C1",
        "location": "L1",
        "starts_at": at(0),
        "ends_at": at(0, 2),
        "service_type": "Furnace tune-up",
        **extra,
    }


@pytest.fixture(scope="module")
async def apptco(app) -> int:
    return await import_file(
        json.dumps(
            {
                "format": "portal-import/1",
                "business": {
                    "host": HOST,
                    "name": "Appt Heating",
                    "email": "help@apptco.example",
                    "time_zone": "UTC",
                    "portal": {
                        "enabled": True,
                        "legal_accepted_by": "boss@apptco.example",
                        "legal_accepted_at": "2026-01-05T15:00:00Z",
                        "scheduler_enabled": True,
                        "service_types": ["Furnace tune-up", "Leak"],
                    },
                },
                "staff": [
                    {"email": "boss@apptco.example", "role": "admin", "password": ADMIN_PASSWORD}
                ],
            }
        )
    )


@pytest.fixture(scope="module")
async def writer(app, apptco):
    async with api_client(app, HOST, await new_key(apptco)) as client:
        answer = await bulk(
            client,
            [
                {"record": "business_unit", "id": "HV", "name": "HVAC"},
                *[
                    {
                        "record": "customer",
                        "id": c,
                        "name": f"Customer {c}",
                        "emails": [f"{c.lower()}@apptco.example"],
                        "locations": [{"id": f"L{c[1:]}", "street": f"{c[1:]} Elm St"}],
                    }
                    for c in ("C1", "C2")
                ],
                {
                    "record": "job",
                    "number": "J1",
                    "customer": "C1",
                    "location": "L1",
                    "business_unit": "HV",
                    "status": "scheduled",
                    "summary": "Replace the thermostat",
                    "scheduled_start": at(1),
                    "scheduled_end": at(1, 3),
                },
            ],
        )
        assert answer.json()["errors"] == [], answer.text
        yield client


@pytest.fixture(scope="module")
async def customer(app, settings, apptco, writer):
    client = await register(app, settings, HOST, "c1@apptco.example", PASSWORD)
    yield client
    await client.aclose()


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


async def new_request(tenant_id: int, customer_id: str) -> int:
    who = (
        await t.Customer.select(t.Customer.id)
        .where((t.Customer.tenant == tenant_id) & (t.Customer.external_id == customer_id))
        .first()
        .run()
    )
    where = (
        await t.Location.select(t.Location.id).where(t.Location.customer == who["id"]).first().run()
    )
    rows = await t.BookingRequest.insert(
        t.BookingRequest(
            tenant=tenant_id,
            customer=who["id"],
            location=where["id"],
            service_type="Leak",
            preferred_windows=json.dumps([{"date": SOON.date().isoformat(), "window": "any"}]),
            idempotency_key=uuid.uuid4().hex,
        )
    ).run()
    return int(rows[0]["id"])


async def test_pushed_appointments_show_as_upcoming_on_the_scheduler(app, apptco, writer, customer):
    answers = [
        await writer.put(f"/appointments/{a['id']}", json=a)
        for a in (
            appointment(
                "A1", service_type="Water heater install", starts_at=at(2), ends_at=at(2, 4)
            ),
            appointment("A2", job="J1", starts_at=at(1), ends_at=at(1, 3), status="in_progress"),
            appointment("A3", status="canceled", service_type="Canceled visit"),
            appointment("A4", starts_at=at(-10), ends_at=at(-10, 1), service_type="Last month"),
        )
    ]
    assert [a.json()["result"] for a in answers] == ["created"] * 4, [a.text for a in answers]

    page = text_of((await customer.get("/schedule")).text)
    upcoming = page.split("Upcoming appointments", 1)[1].split("Request an appointment", 1)[0]
    assert "Water heater install" in upcoming and "Furnace tune-up" in upcoming
    assert "Under way" in upcoming and "Job J1" in upcoming
    # The job A2 stands for is listed once, as the appointment; canceled and past ones not.
    assert "Replace the thermostat" not in upcoming
    assert "Canceled visit" not in upcoming and "Last month" not in upcoming
    assert upcoming.index("Furnace tune-up") < upcoming.index("Water heater install")

    # The same push again changes nothing; a later change moves it.
    again = await writer.put(
        "/appointments/A1",
        json=appointment(
            "A1", service_type="Water heater install", starts_at=at(2), ends_at=at(2, 4)
        ),
    )
    assert again.json()["result"] == "unchanged"
    moved = await writer.put("/appointments/A1", json=appointment("A1", status="canceled"))
    assert moved.json()["result"] == "updated"
    page = text_of((await customer.get("/schedule")).text)
    assert "Water heater install" not in page


async def test_an_appointment_answers_the_customers_request(app, apptco, writer, customer):
    request_id = await new_request(apptco, "C1")
    answer = await bulk(
        writer,
        [
            {
                "record": "appointment",
                **appointment("A5", booking_request=request_id, starts_at=at(4), ends_at=at(4, 2)),
            }
        ],
    )
    assert answer.json() == {"counts": {"created": 1}, "errors": []}
    request = await t.BookingRequest.select().where(t.BookingRequest.id == request_id).first().run()
    assert (request["status"], request["handled_by"]) == ("booked", "System of record")
    page = text_of((await customer.get("/schedule")).text)
    day = (SOON + timedelta(days=4)).strftime("%b %-d")
    assert re.search(rf"Leak .*?Booked for \w+, {day}", page), page

    # Another customer's request, a job of another customer, a window that ends before it
    # starts, another customer's location: refused, naming the field; nothing stored.
    other_request = await new_request(apptco, "C2")
    before = await t.Appointment.count().where(t.Appointment.tenant == apptco).run()
    for body, field in (
        (appointment("A6", booking_request=other_request), "booking_request"),
        (appointment("A6", booking_request=999_999), "booking_request"),
        (appointment("A6", ends_at=at(0, -1)), "ends_at"),
        (appointment("A6", location="L2"), "location"),
        (appointment("A6", customer="NOPE"), "customer"),
    ):
        refused = await writer.put("/appointments/A6", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == field, refused.text
    assert await t.Appointment.count().where(t.Appointment.tenant == apptco).run() == before
    still = (
        await t.BookingRequest.select().where(t.BookingRequest.id == other_request).first().run()
    )
    assert still["status"] == "new"


async def test_a_deleted_appointment_leaves_the_scheduler(app, apptco, writer, customer):
    assert "Furnace tune-up" in text_of((await customer.get("/schedule")).text)
    gone = await writer.delete("/appointments/A2")
    assert gone.json() == {"record": "appointment", "id": "A2", "result": "deleted"}
    page = text_of((await customer.get("/schedule")).text)
    upcoming = page.split("Request an appointment", 1)[0]
    # A2 is gone; its job J1, still scheduled, shows on its own again.
    assert "Under way" not in upcoming and "Replace the thermostat" in upcoming


async def test_the_schema_lists_appointments(app, writer):
    schema = (await writer.get("/openapi.json")).json()
    assert "put" in schema["paths"]["/appointments/{appointment_id}"]
    assert "delete" in schema["paths"]["/appointments/{record_id}"]
    assert "AppointmentRecord" in json.dumps(schema["components"])

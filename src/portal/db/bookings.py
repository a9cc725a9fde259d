"""Appointment requests from the portal's scheduler, and a customer's booked appointments.

A request is a `BookingRequest` row that office staff handle under Bookings:
they book a job from it (the job points back with `booking_request`) or close
it. Every function is scoped by business and by the customer being viewed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portal.db import events
from portal.db.tables import BookingRequest, Job, Location

REQUESTS_PAGE = 20
UPCOMING_LIMIT = 10


async def customer_locations(tenant_id: int, customer_id: int) -> list[dict[str, Any]]:
    """The customer's service locations, by name and street."""
    return await (
        Location.select(
            Location.id,
            Location.name,
            Location.street,
            Location.city,
            Location.state,
            Location.zip,
        )
        .where((Location.tenant == tenant_id) & (Location.customer == customer_id))
        .order_by(Location.name)
        .order_by(Location.street)
        .run()
    )


@dataclass
class NewRequest:
    """A validated appointment request, ready to save."""

    customer_id: int
    location: dict[str, Any]
    account_email: str
    service_type: str
    preferred_windows: list[dict[str, str]]  # [{"date": "YYYY-MM-DD", "window": "morning"}]
    notes: str
    idempotency_key: str


async def _by_key(tenant_id: int, key: str) -> dict[str, Any] | None:
    return await (
        BookingRequest.select(BookingRequest.id, BookingRequest.customer)
        .where((BookingRequest.tenant == tenant_id) & (BookingRequest.idempotency_key == key))
        .first()
        .run()
    )


async def insert_request(tenant_id: int, new: NewRequest) -> int | None:
    """Insert the request; None when its idempotency key is taken already (the unique
    index (tenant, idempotency_key) decides, so a racing repeat inserts nothing)."""
    rows = await (
        BookingRequest.insert(
            BookingRequest(
                tenant=tenant_id,
                customer=new.customer_id,
                location=new.location["id"],
                account_email=new.account_email,
                service_type=new.service_type,
                preferred_windows=json.dumps(new.preferred_windows),
                notes=new.notes,
                status="new",
                idempotency_key=new.idempotency_key,
            )
        )
        .on_conflict(
            target=(BookingRequest.tenant, BookingRequest.idempotency_key),
            action="DO NOTHING",
        )
        .returning(BookingRequest.id)
        .run()
    )
    if not rows:
        return None
    await events.emit(
        tenant_id,
        "booking.requested",
        {
            "booking_request_id": rows[0]["id"],
            "customer": await events.customer_source_id(tenant_id, new.customer_id),
            "service_type": new.service_type,
        },
    )
    return int(rows[0]["id"])


async def request_by_key(tenant_id: int, customer_id: int, key: str) -> int | None:
    """The id of the request made with this idempotency key, if it is this customer's."""
    existing = await _by_key(tenant_id, key)
    if existing is None:  # cannot happen after a conflict on this very key
        raise RuntimeError("booking request conflict without a request")
    return _own(existing, customer_id)


def _own(row: dict[str, Any], customer_id: int) -> int | None:
    return row["id"] if row["customer"] == customer_id else None


@dataclass
class RequestsPage:
    """A page of the customer's requests, newest first, and the cursor of the next page."""

    rows: list[dict[str, Any]]
    older: int | None


async def requests_for_customer(
    tenant_id: int, customer_id: int, before: int | None = None
) -> RequestsPage:
    """The customer's appointment requests, newest first (keyset on id), each with the
    booked job's times when there is one (`job_start`, `job_end`, `job_status`).
    Two statements."""
    where = (BookingRequest.tenant == tenant_id) & (BookingRequest.customer == customer_id)
    if before is not None:
        where = where & (BookingRequest.id < before)
    rows = await (
        BookingRequest.select(
            BookingRequest.id,
            BookingRequest.service_type,
            BookingRequest.preferred_windows,
            BookingRequest.notes,
            BookingRequest.status,
            BookingRequest.dismiss_reason,
            BookingRequest.created_at,
            BookingRequest.location.name.as_alias("location_name"),
            BookingRequest.location.street.as_alias("location_street"),
        )
        .where(where)
        .order_by(BookingRequest.id, ascending=False)
        .limit(REQUESTS_PAGE + 1)
        .run()
    )
    older = None
    if len(rows) > REQUESTS_PAGE:
        rows = rows[:REQUESTS_PAGE]
        older = rows[-1]["id"]
    jobs: dict[int, dict[str, Any]] = {}
    booked = [r["id"] for r in rows if r["status"] == "booked"]
    if booked:
        for job in await (
            Job.select(Job.booking_request, Job.scheduled_start, Job.scheduled_end, Job.status)
            .where(
                (Job.tenant == tenant_id)
                & (Job.customer == customer_id)
                & Job.booking_request.is_in(booked)
            )
            .run()
        ):
            jobs[job["booking_request"]] = job
    for row in rows:
        row["preferred_windows"] = _windows(row["preferred_windows"])
        booked_job = jobs.get(row["id"])
        row["job_start"] = booked_job["scheduled_start"] if booked_job else None
        row["job_end"] = booked_job["scheduled_end"] if booked_job else None
        row["job_status"] = booked_job["status"] if booked_job else None
    return RequestsPage(rows=rows, older=older)


def _windows(raw: str) -> list[dict[str, str]]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return []
    return (
        [w for w in value if isinstance(w, dict) and "date" in w] if isinstance(value, list) else []
    )


async def upcoming_appointments(
    tenant_id: int, customer_id: int, now: datetime
) -> list[dict[str, Any]]:
    """The customer's next booked jobs (scheduled or under way, not yet over), soonest first."""
    return await (
        Job.select(
            Job.id,
            Job.number,
            Job.summary,
            Job.status,
            Job.scheduled_start,
            Job.scheduled_end,
            Job.location.name.as_alias("location_name"),
            Job.location.street.as_alias("location_street"),
        )
        .where(
            (Job.tenant == tenant_id)
            & (Job.customer == customer_id)
            & Job.status.is_in(["scheduled", "in_progress"])
            & Job.scheduled_start.is_not_null()
            & (
                (Job.scheduled_end >= now)
                | (Job.scheduled_end.is_null() & (Job.scheduled_start >= now))
            )
        )
        .order_by(Job.scheduled_start)
        .order_by(Job.id)
        .limit(UPCOMING_LIMIT)
        .run()
    )

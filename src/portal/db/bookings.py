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

from portal.db import events, fast
from portal.db.tables import BookingRequest

# The Scheduler tab reads only what it shows (issue 18): a page of requests (older ones
# through "Older requests") and the next few appointments ("See all" shows up to
# UPCOMING_ALL).
REQUESTS_PAGE = 5
UPCOMING_SHOWN = 5
UPCOMING_ALL = 100


async def customer_locations(
    tenant_id: int, customer_id: int, location_ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """The customer's service locations, by name and street (only `location_ids`, a
    grant's, when given)."""
    places, place_args = fast.within("id", location_ids)
    return await fast.fetch(
        """SELECT id, name, street, city, state, zip FROM location
        WHERE tenant = {} AND customer = {}"""
        + places
        + " ORDER BY name, street",
        tenant_id,
        customer_id,
        *place_args,
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
    tenant_id: int,
    customer_id: int,
    before: int | None = None,
    location_ids: list[int] | None = None,
) -> RequestsPage:
    """The customer's appointment requests, newest first (keyset on id), each with the
    booked job's times when there is one (`job_start`, `job_end`, `job_status`) and those of
    the latest appointment the business's own system pushed for it (`appointment_start`,
    `appointment_end`, `appointment_status`). One statement. `location_ids`: only those
    for a grant's locations (None: all)."""
    places, args = fast.within("location", location_ids)
    keyset, args = places, [tenant_id, customer_id, *args]
    if before is not None:
        keyset += " AND r.id < {}"
        args.append(before)
    rows = await fast.fetch(
        f"""SELECT r.id, r.service_type, r.preferred_windows, r.notes, r.status,
            r.dismiss_reason, r.created_at,
            l.name AS location_name, l.street AS location_street,
            j.scheduled_start AS job_start, j.scheduled_end AS job_end, j.status AS job_status,
            ap.starts_at AS appointment_start, ap.ends_at AS appointment_end,
            ap.status AS appointment_status
        FROM (
            SELECT id, tenant, customer, location, service_type, preferred_windows, notes,
                status, dismiss_reason, created_at
            FROM booking_request r
            WHERE tenant = {{}} AND customer = {{}} {keyset}
            ORDER BY id DESC LIMIT {REQUESTS_PAGE + 1}
        ) r
        JOIN location l ON l.id = r.location
        LEFT JOIN job j ON j.booking_request = r.id AND r.status = 'booked'
            AND j.tenant = r.tenant AND j.customer = r.customer
        LEFT JOIN appointment ap ON ap.id = (
            SELECT MAX(x.id) FROM appointment x
            WHERE x.booking_request = r.id AND x.tenant = r.tenant AND x.customer = r.customer
        )
        ORDER BY r.id DESC""",
        *args,
    )
    older = None
    if len(rows) > REQUESTS_PAGE:
        rows = rows[:REQUESTS_PAGE]
        older = rows[-1]["id"]
    for row in rows:
        row["preferred_windows"] = _windows(row["preferred_windows"])
        row["created_at"] = fast.timestamp(row["created_at"])
        row["job_start"] = fast.timestamp(row["job_start"])
        row["job_end"] = fast.timestamp(row["job_end"])
        row["appointment_start"] = fast.timestamp(row["appointment_start"])
        row["appointment_end"] = fast.timestamp(row["appointment_end"])
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
    tenant_id: int,
    customer_id: int,
    now: datetime,
    location_ids: list[int] | None = None,
    limit: int = UPCOMING_SHOWN + 1,
) -> list[dict[str, Any]]:
    """The customer's next appointments, soonest first: those the business's own system
    pushed (`appointment`, not canceled or done, not yet over) and the booked jobs
    (scheduled or under way, not yet over) that no pushed appointment already stands for,
    only at `location_ids` (a grant's) when given, at most `limit` of them. `number` is the
    job's number ("" for an appointment without a job). One statement."""
    jobs_at, job_args = fast.within("j.location", location_ids)
    appointments_at, appointment_args = fast.within("a.location", location_ids)
    rows = await fast.fetch(
        f"""SELECT kind, id, number, summary, status, scheduled_start, scheduled_end,
            location_name, location_street
        FROM (
            SELECT 'job' AS kind, j.id, j.number, j.summary, j.status, j.scheduled_start,
                j.scheduled_end, l.name AS location_name, l.street AS location_street
            FROM job j JOIN location l ON l.id = j.location
            WHERE j.tenant = {{}} AND j.customer = {{}}
              AND j.status IN ('scheduled', 'in_progress') AND j.scheduled_start IS NOT NULL
              AND (j.scheduled_end >= {{}}
                   OR (j.scheduled_end IS NULL AND j.scheduled_start >= {{}}))
              AND NOT EXISTS (SELECT 1 FROM appointment x WHERE x.job = j.id)
              {jobs_at}
            UNION ALL
            SELECT 'appointment' AS kind, a.id, COALESCE(j.number, '') AS number,
                a.service_type AS summary, a.status, a.starts_at AS scheduled_start,
                a.ends_at AS scheduled_end, l.name AS location_name,
                l.street AS location_street
            FROM appointment a JOIN location l ON l.id = a.location
            LEFT JOIN job j ON j.id = a.job
            WHERE a.tenant = {{}} AND a.customer = {{}}
              AND a.status IN ('scheduled', 'in_progress') AND a.ends_at >= {{}}
              {appointments_at}
        ) upcoming
        ORDER BY scheduled_start, kind, id
        LIMIT {int(limit)}""",
        tenant_id,
        customer_id,
        now,
        now,
        *job_args,
        tenant_id,
        customer_id,
        now,
        *appointment_args,
    )
    for row in rows:
        row["scheduled_start"] = fast.timestamp(row["scheduled_start"])
        row["scheduled_end"] = fast.timestamp(row["scheduled_end"])
    return rows

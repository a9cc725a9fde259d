"""The isolation world: two businesses (A: alphaplumb, B: betaheat), two registered customers
each with a location, invoices (one partly paid), an imported payment and a membership with a
visit, plus a booking request, a pending card update and portal payments made through the app;
an admin and an office-role staff member of each business signed in. Used by the isolation
matrix, the hostile-input, header and fault tests (the `world` fixture in tests/conftest.py).

Also: a snapshot of every table (to prove a request changed nothing), response bodies without
their per-request values, and the app's route table."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
from litestar import Litestar
from piccolo.engine.sqlite import SQLiteEngine

from portal.db import engine as db_engine
from portal.db import grants as grants_db
from portal.db import tables as t
from portal.db.queries import tenant_by_host
from portal.importer import import_file
from portal.mail import alerts
from tests.support.http import make_client, post_form, sign_in, staff_sign_in
from tests.support.paying import enter_card, path_of, submit_pay

PASSWORD = "iso-matrix-pass-2468"

# Random per response, so never compared: CSRF token, CSP nonce, form idempotency keys.
VOLATILE = [
    re.compile(r'(name="_csrf_token" value=")[^"]*(")'),
    re.compile(r'(hx-headers=\'\{"x-csrftoken": ")[^"]*(")'),
    re.compile(r'(x-csrftoken[^>]*?")[A-Za-z0-9_\-.]{20,}(")'),
    re.compile(r'(nonce=")[^"]*(")'),
    re.compile(r'(name="(?:key|request_key|card_key)" value=")[^"]*(")'),
]


def normalized(body: str) -> str:
    """A response body without the values that differ between any two requests."""
    for pattern in VOLATILE:
        body = pattern.sub(r"\1~\2", body)
    return body


# --- the world: two businesses x two customers, staff of each role ----------------------------


@dataclass
class Customer:
    """One customer of a business, the records they own, and a signed-in client."""

    key: str  # "A1", "A2", "B1", "B2"
    host: str
    business_name: str
    name: str
    email: str
    markers: list[str]  # text only this customer's records contain
    id: int = 0
    location_id: int = 0
    invoice_ids: list[int] = field(default_factory=list)
    payment_ids: list[int] = field(default_factory=list)
    job_id: int = 0  # the job of the first invoice
    membership_id: int = 0
    card_update_id: int = 0
    booking_id: int = 0
    booking_key: str = ""
    payment_key: str = ""
    card_key: str = ""
    email_id: int = 0
    staff_id: int = 0
    failed_email_id: int = 0  # set by the failed_emails fixture
    alert_id: int = 0  # an office alert about this customer's payment
    passkey_id: int = 0  # a passkey of this customer's portal account
    grant_id: int = 0  # this customer's record shared with a helper (issue 16.4)
    checkout_ids: list[str] = field(default_factory=list)
    client: httpx.AsyncClient | None = None


@dataclass
class Business:
    key: str  # "A" or "B"
    host: str
    name: str
    id: int = 0
    customers: list[Customer] = field(default_factory=list)
    admin: httpx.AsyncClient | None = None
    office: httpx.AsyncClient | None = None
    admin_email: str = ""
    office_email: str = ""


@dataclass
class World:
    a: Business
    b: Business

    def __repr__(self) -> str:  # short, in hypothesis's falsifying examples
        return f"World({self.a.host}, {self.b.host})"

    def customer(self, key: str) -> Customer:
        business = self.a if key.startswith("A") else self.b
        return business.customers[int(key[1]) - 1]


def business_data(key: str, host: str, name: str) -> dict[str, Any]:
    """One business as an import file: two registered customers with a location, completed
    jobs with invoices (one partly paid), an imported payment, a membership with visits."""
    low = key.lower()
    today = date.today()
    customers, jobs, invoices, payments, memberships = [], [], [], [], []
    people = {
        "A": [("Ava Alderwood", "Alderwood Lane"), ("Abe Ashgrove", "Ashgrove Court")],
        "B": [("Bea Birchfield", "Birchfield Road"), ("Ben Beechmont", "Beechmont Way")],
    }[key]
    for n, (person, street) in enumerate(people, start=1):
        cid = f"{key}{n}"
        email = f"{person.split()[0].lower()}@{host}.example"
        customers.append(
            {
                "id": cid,
                "name": person,
                "emails": [email],
                "locations": [
                    {"id": f"L{cid}", "name": f"Home of {cid}", "street": f"{n}1 {street}"}
                ],
                "portal_account": {"email": email, "password": PASSWORD},
            }
        )
        for j in (1, 2):
            jobs.append(
                {
                    "number": f"J-{cid}-{j}",
                    "customer": cid,
                    "location": f"L{cid}",
                    "business_unit": "PL",
                    "summary": f"Repair {j} for {person}",
                    "status": "completed",
                    "completed_at": f"{today - timedelta(days=10 + j)}T15:00:00Z",
                }
            )
            invoices.append(
                {
                    "number": f"INV-{cid}-{j}",
                    "job": f"J-{cid}-{j}",
                    "date": str(today - timedelta(days=10 + j)),
                    "due_date": str(today + timedelta(days=20)),
                    "lines": [{"description": f"Work {j} at {street}", "unit_price_cents": 40000}],
                }
            )
        payments.append(
            {
                "reference": f"P-{cid}",
                "customer": cid,
                "paid_at": f"{today - timedelta(days=5)}T10:00:00Z",
                "card_brand": "Visa",
                "card_last4": "4242",
                "allocations": [{"invoice": f"INV-{cid}-2", "amount_cents": 5000}],
            }
        )
        memberships.append(
            {
                "id": f"M-{cid}",
                "customer": cid,
                "location": f"L{cid}",
                "type": f"{street} Comfort Club",
                "status": "active",
                "start_date": str(today - timedelta(days=100)),
                "card": {"brand": "Visa", "last4": "1111"},
                "visits": [
                    {
                        "date": str(today + timedelta(days=30)),
                        "window_start": "08:00",
                        "window_end": "12:00",
                        "description": f"Tune-up at {street}",
                        "status": "upcoming",
                    }
                ],
            }
        )
    return {
        "format": "portal-import/1",
        "business": {
            "host": host,
            "name": name,
            "email": f"help@{host}.example",
            "phone": "(555) 010-2000",
            "time_zone": "America/Chicago",
            "portal": {
                "enabled": True,
                "legal_accepted_by": f"boss@{host}.example",
                "legal_accepted_at": "2026-01-05T15:00:00Z",
                "scheduler_enabled": True,
                "service_types": ["Repair", "Maintenance"],
                "memberships_enabled": True,
                "membership_statuses": ["canceled"],
                "payment_account": f"sandbox_acct_{low}{low}{low}",
                "payments_enabled": True,
            },
        },
        "business_units": [{"id": "PL", "name": "Plumbing"}],
        "staff": [
            {
                "email": f"boss@{host}.example",
                "name": "Boss",
                "role": "admin",
                "password": PASSWORD,
            },
            {
                "email": f"desk@{host}.example",
                "name": "Desk",
                "role": "office",
                "password": PASSWORD,
            },
        ],
        "customers": customers,
        "jobs": jobs,
        "invoices": invoices,
        "payments": payments,
        "memberships": memberships,
    }


async def _ids_of(business: Business) -> None:
    """Read the database ids of each customer's records."""
    for c in business.customers:
        ext = c.key
        cust = (
            await t.Customer.select(t.Customer.id)
            .where((t.Customer.tenant == business.id) & (t.Customer.external_id == ext))
            .first()
            .run()
        )
        c.id = cust["id"]
        loc = await t.Location.select(t.Location.id).where(t.Location.customer == c.id).run()
        c.location_id = loc[0]["id"]
        inv = (
            await t.Invoice.select(t.Invoice.id, t.Invoice.job)
            .where(t.Invoice.customer == c.id)
            .order_by(t.Invoice.id)
            .run()
        )
        c.invoice_ids = [r["id"] for r in inv]
        c.job_id = inv[0]["job"]
        mem = await t.Membership.select(t.Membership.id).where(t.Membership.customer == c.id).run()
        c.membership_id = mem[0]["id"]
        email = (
            await t.CustomerEmail.select(t.CustomerEmail.id)
            .where(t.CustomerEmail.customer == c.id)
            .first()
            .run()
        )
        c.email_id = email["id"]
        staff = (
            await t.StaffUser.select(t.StaffUser.id)
            .where(t.StaffUser.tenant == business.id)
            .order_by(t.StaffUser.id)
            .first()
            .run()
        )
        c.staff_id = staff["id"]  # a staff member of the customer's business


async def _passkey(business: Business, c: Customer) -> None:
    """A passkey on the customer's account (its key material is never checked here)."""
    account = (
        await t.PortalAccount.select(t.PortalAccount.id)
        .where((t.PortalAccount.tenant == business.id) & (t.PortalAccount.email == c.email))
        .first()
        .run()
    )
    rows = await t.Passkey.insert(
        t.Passkey(
            tenant=business.id,
            account=account["id"],
            credential_id=f"credential-of-{c.key}",
            public_key="not-a-key",
            name="Chrome on Android",
        )
    ).run()
    c.passkey_id = rows[0]["id"]


async def _customer_activity(c: Customer) -> None:
    """Through the app: a booking request, a card update left pending, a portal payment
    paid on the card page, and a second one left pending on the card page."""
    assert c.client is not None
    page = (await c.client.get("/schedule")).text
    c.booking_key = re.search(r'name="request_key" value="([^"]+)"', page).group(1)
    day = (date.today() + timedelta(days=3)).isoformat()
    r = await post_form(
        c.client,
        "/schedule",
        {
            "location": str(c.location_id),
            "service_type": "Repair",
            "date_1": day,
            "window_1": "morning",
            "notes": f"Gate code of {c.name}: 4711",
            "request_key": c.booking_key,
        },
    )
    assert r.status_code == 303, r.text
    booking = (
        await t.BookingRequest.select(t.BookingRequest.id)
        .where(t.BookingRequest.customer == c.id)
        .first()
        .run()
    )
    c.booking_id = booking["id"]
    # A card update, left on the card page (pending).
    page = (await c.client.get(f"/memberships/{c.membership_id}")).text
    c.card_key = re.search(r'name="key" value="([^"]+)"', page).group(1)
    r = await post_form(
        c.client,
        f"/memberships/{c.membership_id}/card",
        {"key": c.card_key},
        csrf_page=f"/memberships/{c.membership_id}",
    )
    assert r.status_code == 303, r.text
    c.checkout_ids.append(r.headers["location"].rsplit("/", 1)[1])
    update = (
        await t.CardUpdate.select(t.CardUpdate.id)
        .where(t.CardUpdate.customer == c.id)
        .first()
        .run()
    )
    c.card_update_id = update["id"]
    # A portal payment of part of the first invoice, paid on the card page.
    page = (await c.client.get("/invoices")).text
    c.payment_key = re.search(r'name="key" value="([^"]+)"', page).group(1)
    started = await submit_pay(
        c.client, [c.invoice_ids[0]], action="partial", amount="25.00", key=c.payment_key
    )
    assert started.status_code == 303, started.text
    c.checkout_ids.append(started.headers["location"].rsplit("/", 1)[1])
    done = await enter_card(c.client, started.headers["location"])
    assert done.status_code == 303, done.text
    receipt = await c.client.get(path_of(done.headers["location"]))
    assert receipt.status_code == 200
    pays = (
        await t.Payment.select(t.Payment.id)
        .where(t.Payment.customer == c.id)
        .order_by(t.Payment.id)
        .run()
    )
    c.payment_ids = [p["id"] for p in pays]  # imported and portal


async def _office_alert(app: Litestar, c: Customer) -> None:
    """An office alert about the customer's payment, as a late card payment raises one."""
    tenant = await tenant_by_host(c.host)
    await alerts.raise_alert(
        app.state.settings,
        tenant,
        kind="late_payment",
        title=f"Late card payment of $25.00 recorded (INV-{c.key}-1)",
        message=f"A card payment by {c.email} went through after it was reported as failed.",
    )
    alert = (
        await t.OfficeAlert.select(t.OfficeAlert.id)
        .where(t.OfficeAlert.tenant == tenant["id"])
        .order_by(t.OfficeAlert.id, ascending=False)
        .first()
        .run()
    )
    c.alert_id = alert["id"]


@contextlib.asynccontextmanager
async def build_world(app: Litestar) -> AsyncIterator[World]:
    """Two businesses (A: alphaplumb, B: betaheat) with their customers signed in, and an
    admin and an office-role staff member of each signed in to the office."""
    made = World(
        a=Business("A", "alphaplumb", "Alphaplumb Services"),
        b=Business("B", "betaheat", "Betaheat Comfort"),
    )
    clients: list[httpx.AsyncClient] = []
    for business in (made.a, made.b):
        data = business_data(business.key, business.host, business.name)
        business.id = await import_file(json.dumps(data))
        for n, raw in enumerate(data["customers"], start=1):
            person = raw["name"]
            street = raw["locations"][0]["street"]
            markers = [
                person,
                raw["emails"][0],
                street,
                f"INV-{business.key}{n}-",
                f"{street.split(' ', 1)[1]} Comfort Club",
                f"Gate code of {person}",
            ]
            business.customers.append(
                Customer(
                    f"{business.key}{n}",
                    business.host,
                    business.name,
                    person,
                    raw["emails"][0],
                    markers,
                )
            )
        await _ids_of(business)
        base = f"http://{business.host}.localhost"
        for c in business.customers:
            c.client = make_client(app, base)
            clients.append(c.client)
            await sign_in(c.client, c.email, PASSWORD)
            await _passkey(business, c)
            c.grant_id = await grants_db.create(
                business.id,
                c.id,
                f"helper-of-{c.key.lower()}@example.org",
                "view",
                [c.location_id],
                c.email,
            )
            await _customer_activity(c)
            await _office_alert(app, c)
        business.admin_email = f"boss@{business.host}.example"
        business.office_email = f"desk@{business.host}.example"
        business.admin = make_client(app, base)
        business.office = make_client(app, base)
        clients += [business.admin, business.office]
        await staff_sign_in(business.admin, business.admin_email, PASSWORD)
        await staff_sign_in(business.office, business.office_email, PASSWORD)
    try:
        yield made
    finally:
        for client in clients:
            await client.aclose()


# --- snapshots of every table ------------------------------------------------------------------

# Bookkeeping a read may do: a session's "last seen" is touched at most once a minute.
IGNORED_COLUMNS = {"session": {"last_seen_at"}}


async def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table (ordered by id), as comparable tuples.

    Read straight through the driver, all tables on one connection: the hostile-input tests
    take thousands of snapshots, and through the query builder they were most of the suite's
    time."""
    engine = db_engine.current_engine()
    if isinstance(engine, SQLiteEngine):
        with contextlib.closing(sqlite3.connect(engine.path)) as connection:
            tables = {name: _sqlite_rows(connection, name) for name in TABLE_NAMES}
    else:
        async with engine.pool.acquire() as connection:
            tables = {
                name: [tuple(row.items()) for row in await connection.fetch(_all_rows(name))]
                for name in TABLE_NAMES
            }
    out: dict[str, list[tuple]] = {}
    for name, rows in tables.items():
        ignored = IGNORED_COLUMNS.get(name, set())
        out[name] = [
            tuple((k, repr(v)) for k, v in sorted(row) if k not in ignored) for row in rows
        ]
    return out


TABLE_NAMES = [table._meta.tablename for table in t.TABLES]


def _all_rows(table: str) -> str:
    return f'SELECT * FROM "{table}" ORDER BY id'


def _sqlite_rows(connection: sqlite3.Connection, table: str) -> list[tuple]:
    cursor = connection.execute(_all_rows(table))
    names = [column[0] for column in cursor.description]
    return [tuple(zip(names, row, strict=True)) for row in cursor.fetchall()]


def diff(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> list[str]:
    """Tables whose rows changed, with a short description."""
    changed = []
    for name in before:
        if before[name] != after[name]:
            added = [r for r in after[name] if r not in before[name]]
            gone = [r for r in before[name] if r not in after[name]]
            changed.append(f"{name}: +{added[:2]} -{gone[:2]}")
    return changed


# --- the route table ---------------------------------------------------------------------------


def app_routes(app: Litestar) -> set[tuple[str, str]]:
    """(method, path) of every handler in Litestar's route table (OPTIONS is Litestar's own)."""
    found = set()
    for route in app.routes:
        for method in getattr(route, "route_handler_map", {}):
            if method != "OPTIONS":
                found.add((method, route.path))
    return found


def concrete(route: str, world, app) -> str:
    """A route's path filled with records the requester may see (A1's; business A's)."""
    me = world.customer("A1")
    static_name = next(iter(app.state.renderer.static))
    values = {
        "name": static_name,
        "version": "1",
        "checkout_id": me.checkout_ids[0],
        "invoice_id": me.invoice_ids[0],
        "payment_id": me.payment_ids[-1],
        "job_id": me.job_id,
        "membership_id": me.membership_id,
        "update_id": me.card_update_id,
        "request_id": me.booking_id,
        "customer_id": me.id,
        "email_id": me.email_id,
        "staff_id": me.staff_id,
        "alert_id": me.alert_id,
        "passkey_id": me.passkey_id,
        "grant_id": me.grant_id,
        "key": "invoice_email",
        # The office's sync pages (API keys, webhooks): ids of nothing, answered 404.
        "key_id": 0,
        "delivery_id": 0,
        "endpoint_id": 0,
        "switch": "off",
    }
    return re.sub(r"\{(\w+):\w+\}", lambda m: str(values[m.group(1)]), route)


def get_routes(app) -> list[str]:
    return sorted(path for method, path in app_routes(app) if method == "GET")


def requester(world, anonymous, route: str) -> list[httpx.AsyncClient]:
    """Who asks: an office page by staff of the business, a customer page by its customer,
    everything also by a stranger."""
    if route.startswith("/office"):
        return [world.a.admin, world.a.office, anonymous]
    return [world.customer("A1").client, anonymous]

"""Issue 18.3 and 18.4: every customer page reads its data in a fixed, small number of
plain-SQL statements (db/fast.py, none built by Piccolo per request), and the same
statements whether the customer has a few invoices, visits and requests or many more
than a page shows."""

from __future__ import annotations

import json
from datetime import date, timedelta

from portal.db.tables import BookingRequest, Customer, Location, Membership, PortalAccount, Visit
from tests.support.paying import new_invoice
from tests.support.statements import recorded

FRAGMENT = {"HX-Request": "true", "HX-Request-Type": "partial"}

# Statements per page, the one that reads the business and the session included.
PAGES = {
    "invoices": 2,
    "history": 2,
    "location": 2,
    "older": 2,
    "memberships": 2,
    "visits": 4,
    "schedule": 4,
    "invoice": 5,
}


async def _jane(tenant_id: int) -> dict:
    customer = (
        await Customer.select(Customer.id)
        .where((Customer.tenant == tenant_id) & (Customer.external_id == "C-1001"))
        .first()
        .run()
    )
    home = (
        await Location.select(Location.id)
        .where((Location.tenant == tenant_id) & (Location.external_id == "L-JANE-HOME"))
        .first()
        .run()
    )
    membership = (
        await Membership.select(Membership.id)
        .where((Membership.tenant == tenant_id) & (Membership.customer == customer["id"]))
        .where(Membership.status == "active")
        .first()
        .run()
    )
    return {"customer": customer["id"], "home": home["id"], "membership": membership["id"]}


async def _paths(jane_client, ids: dict, invoice_id: int) -> dict[str, str]:
    first_page = (await jane_client.get(f"/history?location={ids['home']}")).text
    older = first_page.split("older=", 1)[1].split('"', 1)[0] if "older=" in first_page else ""
    assert older, "the location should have more than one page of invoices"
    return {
        "invoices": "/invoices",
        "history": "/history",
        "location": f"/history?location={ids['home']}",
        "older": f"/history?location={ids['home']}&older={older}",
        "memberships": "/memberships",
        "visits": f"/memberships/{ids['membership']}",
        "schedule": "/schedule",
        "invoice": f"/invoices/{invoice_id}",
    }


async def _statements(jane_client, monkeypatch, paths: dict[str, str]) -> dict:
    found = {}
    for name, path in paths.items():
        with recorded(monkeypatch) as seen:
            response = await jane_client.get(path, headers=FRAGMENT)
        assert response.status_code == 200, (name, response.text[:300])
        found[name] = seen
    return found


async def _much_more(tenant_id: int, ids: dict) -> None:
    """Far more of everything than any page shows: invoices (open and paid), visits
    past and upcoming, appointment requests."""
    for n in range(40):
        await new_invoice(tenant_id, location="L-JANE-HOME", days_ago=n + 1)
        await new_invoice(tenant_id, location="L-JANE-HOME", balance=0, days_ago=n + 1)
    today = date.today()
    await Visit.insert(
        *[
            Visit(
                tenant=tenant_id,
                membership=ids["membership"],
                visit_date=today + timedelta(days=30 * n),
                status="completed" if n < 0 else "upcoming",
            )
            for n in range(-40, 10)
        ]
    ).run()
    await BookingRequest.insert(
        *[
            BookingRequest(
                tenant=tenant_id,
                customer=ids["customer"],
                location=ids["home"],
                service_type="Drain cleaning",
                preferred_windows=json.dumps([{"date": today.isoformat(), "window": "any"}]),
                status="new",
                idempotency_key=f"statements-test-{n:04d}-key",
            )
            for n in range(30)
        ]
    ).run()


async def test_every_page_reads_in_a_fixed_number_of_plain_statements(jane, demo, monkeypatch):
    ids = await _jane(demo)
    invoice = await new_invoice(demo, location="L-JANE-HOME", balance=0, days_ago=400)
    for n in range(16):  # more than one page of the location's history
        await new_invoice(demo, location="L-JANE-HOME", days_ago=300 + n)
    paths = await _paths(jane, ids, invoice["id"])
    before = await _statements(jane, monkeypatch, paths)
    for name, seen in before.items():
        reads = [sql for sql in seen.all if sql not in seen.piccolo]
        if name != "invoice":  # the invoice page also records that it was viewed (a write)
            assert seen.piccolo == [], (name, seen.piccolo)  # all straight to the driver
        assert 1 < len(reads) <= PAGES[name], (name, reads)

    await _much_more(demo, ids)
    after = await _statements(jane, monkeypatch, paths)
    for name in paths:
        # The same reads, as many (the invoice page's view record aside).
        assert [q for q in after[name].all if q not in after[name].piccolo] == [
            q for q in before[name].all if q not in before[name].piccolo
        ], name
    # Viewed once already: the second view writes nothing (no transaction, no statement
    # beyond the page's reads), where the first recorded the view.
    assert before["invoice"].piccolo, before["invoice"].all
    assert after["invoice"].piccolo == [], after["invoice"].piccolo


async def test_a_grantee_reads_every_page_in_as_many_plain_statements(app, jane, demo, monkeypatch):
    """Issue 16.4: a person Jane shared her record with (every location, full access) reads
    each page in the same number of plain statements as Jane: the grant comes with the
    session read, and each query only gains its locations."""
    from datetime import UTC, datetime

    from portal.auth.passwords import hash_password
    from portal.db import grants as grants_db
    from tests.support.http import make_client, sign_in

    ids = await _jane(demo)
    places = [
        r["id"]
        for r in await Location.select(Location.id)
        .where((Location.tenant == demo) & (Location.customer == ids["customer"]))
        .run()
    ]
    email = "jane-helper@example.net"
    await grants_db.create(demo, ids["customer"], email, "full", places, "jane@example.com")
    await PortalAccount.insert(
        PortalAccount(
            tenant=demo,
            email=email,
            password_hash=await hash_password("helper-pass-2468"),
            confirmed_at=datetime.now(UTC),
        )
    ).run()
    invoice = await new_invoice(demo, location="L-JANE-HOME", balance=0, days_ago=500)
    for n in range(16):  # more than one page of the location's history, run alone too
        await new_invoice(demo, location="L-JANE-HOME", days_ago=600 + n)
    async with make_client(app) as helper:
        await sign_in(helper, email, "helper-pass-2468")
        paths = await _paths(helper, ids, invoice["id"])
        theirs = await _statements(helper, monkeypatch, paths)
    hers = await _statements(jane, monkeypatch, paths)
    for name in paths:
        reads = [q for q in theirs[name].all if q not in theirs[name].piccolo]
        assert len(reads) == len([q for q in hers[name].all if q not in hers[name].piccolo]), name
        assert 1 < len(reads) <= PAGES[name], (name, reads)
        if name != "invoice":
            assert theirs[name].piccolo == [], (name, theirs[name].piccolo)

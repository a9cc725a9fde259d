"""Memberships tab (Contracts for commercial customers) and the Visits view."""

from __future__ import annotations

import html as htmllib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from portal.auth.passwords import hash_password
from portal.db.tables import (
    Customer,
    Location,
    Membership,
    PortalAccount,
    Tenant,
    Visit,
)
from portal.demo import RECURRING_MESSAGE
from tests.support.http import make_client, post_form, sign_in

HX_PARTIAL = {"HX-Request": "true", "HX-Request-Type": "partial"}
ACME_EMAIL = "facilities@acme.example"
ACME_PASSWORD = "acme-test-pass-123"


def business_today() -> date:
    """Today in the demo business's zone (what the portal calls today)."""
    return datetime.now(UTC).astimezone(ZoneInfo("America/Chicago")).date()


def day_text(day: date) -> str:
    """How the portal writes a visit's day: "Tue, Dec 3, 2026" (its one date style, with
    the weekday)."""
    return f"{day:%a}, {long_date(day)}"


def long_date(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


async def set_portal(tenant_id: int, **values) -> None:
    """Change the business's portal settings in the database, as the office would."""
    changes = {}
    for name, value in values.items():
        column = getattr(Tenant, name)
        changes[column] = json.dumps(value) if isinstance(value, list) else value
    await Tenant.update(changes).where(Tenant.id == tenant_id).run()


@pytest.fixture(autouse=True)
async def demo_settings(demo: int) -> AsyncIterator[None]:
    """Every test starts and ends with the demo's portal settings."""
    demo_values = {
        "memberships_enabled": True,
        "membership_statuses": ["canceled", "expired"],
        "recurring_service_message": RECURRING_MESSAGE,
        "scheduler_enabled": True,
    }
    await set_portal(demo, **demo_values)
    yield
    await set_portal(demo, **demo_values)


async def membership_id(external_id: str) -> int:
    row = (
        await Membership.select(Membership.id)
        .where(Membership.external_id == external_id)
        .first()
        .run()
    )
    return row["id"]


def visible_text(html: str) -> str:
    """The words a reader sees (tags, attributes and URLs dropped)."""
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", html))


def card_titles(html: str) -> list[str]:
    """The membership names listed on the tab, in order."""
    return re.findall(r'<h2><a href="/memberships/\d+"[^>]*>([^<]+)</a></h2>', html)


@pytest.fixture(scope="module")
async def acme(app, demo: int) -> AsyncIterator[httpx.AsyncClient]:
    """Acme's facilities contact, signed in (their account made directly in the database)."""
    await PortalAccount.insert(
        PortalAccount(
            tenant=demo,
            email=ACME_EMAIL,
            password_hash=await hash_password(ACME_PASSWORD),
            confirmed_at=datetime.now(UTC),
        )
    ).run()
    async with make_client(app) as c:
        await sign_in(c, ACME_EMAIL, ACME_PASSWORD)
        yield c


# --- which memberships show -------------------------------------------------------------------


async def test_jane_sees_active_canceled_and_expired_but_not_suspended(jane):
    response = await jane.get("/memberships")
    assert response.status_code == 200
    html = response.text
    assert "<h1>Memberships</h1>" in html
    assert card_titles(html) == [
        "Comfort Club Gold",  # active first
        "Plumbing Protection Plan",
        "Comfort Club Silver",
    ]
    assert "Electrical Safety Plan" not in html
    assert ">Active</span>" in html and ">Canceled</span>" in html and ">Expired</span>" in html
    assert "Suspended" not in html


async def test_each_membership_shows_location_term_and_billing_card(jane, demo):
    html = (await jane.get("/memberships")).text
    gold = html[html.index("Comfort Club Gold") : html.index("Plumbing Protection Plan")]
    assert "Home: 12 Oak Street, Springfield, IL" in gold
    assert "Visa ending in 1881" in gold
    start, end = demo.today - timedelta(days=200), demo.today + timedelta(days=165)
    assert f"{long_date(start)} – {long_date(end)}" in gold
    upcoming = demo.today + timedelta(days=18)
    assert f"Next visit: <strong>{day_text(upcoming)}</strong>" in gold
    plumbing = html[html.index("Plumbing Protection Plan") :]
    assert "Lake cabin: 48 Shoreline Road" in plumbing
    assert "Mastercard ending in 5100" in plumbing


@pytest.mark.parametrize(
    "statuses,expected",
    [
        ([], ["Comfort Club Gold"]),
        (["suspended"], ["Comfort Club Gold", "Electrical Safety Plan"]),
        (["expired"], ["Comfort Club Gold", "Comfort Club Silver"]),
        (
            ["canceled", "expired", "suspended"],
            [
                "Comfort Club Gold",  # active first, then the newest start first
                "Electrical Safety Plan",
                "Plumbing Protection Plan",
                "Comfort Club Silver",
            ],
        ),
    ],
)
async def test_statuses_shown_follow_the_office_setting(jane, demo, statuses, expected):
    await set_portal(demo, membership_statuses=statuses)
    html = (await jane.get("/memberships")).text
    assert card_titles(html) == expected
    # The Visits view follows the same rule: a hidden membership is not found.
    for external_id, name in [
        ("M-JANE-PLUMB", "Plumbing Protection Plan"),
        ("M-JANE-SILVER", "Comfort Club Silver"),
        ("M-JANE-ELEC", "Electrical Safety Plan"),
    ]:
        response = await jane.get(f"/memberships/{await membership_id(external_id)}")
        assert response.status_code == (200 if name in expected else 404), name


async def test_active_always_shows_even_if_settings_list_only_active_or_junk(jane, demo):
    await set_portal(demo, membership_statuses=["active", "bogus"])
    assert card_titles((await jane.get("/memberships")).text) == ["Comfort Club Gold"]


# --- the feature switched off -----------------------------------------------------------------


async def test_memberships_off_hides_tab_and_both_urls_are_404(jane, demo):
    gold = await membership_id("M-JANE-GOLD")
    assert 'href="/memberships"' in (await jane.get("/invoices")).text
    await set_portal(demo, memberships_enabled=False)
    assert 'href="/memberships"' not in (await jane.get("/invoices")).text
    for path in ("/memberships", f"/memberships/{gold}"):
        response = await jane.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.text
        assert "Comfort Club Gold" not in response.text


# --- Contracts for commercial customers -------------------------------------------------------


async def test_commercial_customer_sees_contracts_everywhere(acme):
    invoices = (await acme.get("/invoices")).text
    assert 'hx-get="/memberships">Contracts</a>' in invoices
    html = (await acme.get("/memberships")).text
    assert "<title>Contracts · XYZ Services</title>" in html
    assert "<h1>Contracts</h1>" in html
    assert card_titles(html) == ["Commercial HVAC Service Agreement"]
    assert "membership" not in visible_text(html).lower()
    visits = (await acme.get(f"/memberships/{await membership_id('K-ACME-HVAC')}")).text
    assert "All contracts" in visits and "Quarterly rooftop unit service" in visits
    assert "7–11" in visits
    # Our words say "contract"; the office's own recurring message is theirs to word.
    ours = visible_text(visits).replace(RECURRING_MESSAGE, "")
    assert "membership" not in ours.lower()


async def test_commercial_empty_state_says_contracts(acme):
    customers = await Customer.select(Customer.id).where(Customer.external_id == "C-1004").run()
    maple = customers[0]["id"]
    response = await post_form(
        acme,
        "/account/customer",
        {"customer": str(maple), "next": "/memberships"},
        csrf_page="/memberships",
    )
    assert response.status_code == 303
    html = (await acme.get("/memberships")).text
    assert "You have no contracts with XYZ Services." in html
    assert "membership" not in visible_text(html).lower()
    # Back to Acme for the other tests.
    acme_row = (
        await Customer.select(Customer.id).where(Customer.external_id == "C-1003").first().run()
    )
    await post_form(
        acme,
        "/account/customer",
        {"customer": str(acme_row["id"]), "next": "/memberships"},
        csrf_page="/memberships",
    )


# --- the Visits view ------------------------------------------------------------------------


async def test_visits_view_shows_upcoming_visits_message_and_past_visits(jane, demo):
    response = await jane.get(f"/memberships/{await membership_id('M-JANE-GOLD')}")
    assert response.status_code == 200
    html = response.text
    assert "<title>Visits: Comfort Club Gold · XYZ Services</title>" in html
    assert 'aria-current="page">Memberships' in html  # still the Memberships tab
    upcoming = html[html.index("Upcoming visits") : html.index("Past visits")]
    first, second = demo.today + timedelta(days=18), demo.today + timedelta(days=140)
    assert upcoming.index(day_text(first)) < upcoming.index("Fall furnace tune-up")
    assert upcoming.index("Fall furnace tune-up") < upcoming.index(day_text(second))
    assert upcoming.index(day_text(second)) < upcoming.index("Spring AC tune-up")
    assert "8 AM–12 PM" in upcoming and "12–4 PM" in upcoming
    assert RECURRING_MESSAGE in visible_text(html)
    past = html[html.index("Past visits") :]
    done = demo.today - timedelta(days=150)
    assert "Spring AC tune-up" in past and long_date(done) in past
    assert "Completed" in past
    assert "Visa ending in 1881" in html


async def test_recurring_message_only_when_set_and_only_on_active(jane, demo):
    gold = await membership_id("M-JANE-GOLD")
    canceled = await membership_id("M-JANE-PLUMB")
    assert RECURRING_MESSAGE not in visible_text((await jane.get(f"/memberships/{canceled}")).text)
    await set_portal(demo, recurring_service_message="")
    html = (await jane.get(f"/memberships/{gold}")).text
    assert 'class="notice info"' not in html
    assert "Fall furnace tune-up" in html


async def test_membership_without_visits_has_empty_states(jane):
    canceled = await membership_id("M-JANE-PLUMB")
    html = (await jane.get(f"/memberships/{canceled}")).text
    assert "No upcoming visits are scheduled for this membership." in html
    assert "Annual plumbing inspection" in html


async def test_past_visits_are_paged_newest_first(jane, demo):
    silver = await membership_id("M-JANE-SILVER")
    start = demo.today - timedelta(days=690)  # all newer than the demo's visit (-700)
    await Visit.insert(
        *[
            Visit(
                tenant=demo,
                membership=silver,
                visit_date=start + timedelta(days=7 * i),
                description=f"Check-up number {i:02d}",
                status="completed",
            )
            for i in range(25)
        ]
    ).run()
    try:
        first = (await jane.get(f"/memberships/{silver}")).text
        shown = re.findall(r"Check-up number (\d\d)", first)
        assert shown == [f"{i:02d}" for i in range(24, 4, -1)]  # 20, newest first
        more = re.search(r'href="(/memberships/\d+\?earlier=[^"]+)"', first).group(1)
        second = (await jane.get(more.replace("&amp;", "&"))).text
        assert re.findall(r"Check-up number (\d\d)", second) == ["04", "03", "02", "01", "00"]
        assert "Furnace tune-up" in second  # the demo's own (older) visit comes last
        assert "Upcoming visits" not in second
        assert "Earlier visits" not in second
    finally:
        await Visit.delete().where(Visit.description.like("Check-up number%")).run()


async def test_malformed_visits_cursor_shows_the_first_page(jane):
    gold = await membership_id("M-JANE-GOLD")
    for cursor in ("junk", "2026-01-01_99999999999", "2026-13-01_1", "_", "2026-01-01_-1"):
        response = await jane.get(f"/memberships/{gold}", params={"earlier": cursor})
        assert response.status_code == 200, cursor
        assert "Upcoming visits" in response.text and "Fall furnace tune-up" in response.text


async def test_visits_view_is_one_region_for_htmx(jane):
    gold = await membership_id("M-JANE-GOLD")
    html = (await jane.get(f"/memberships/{gold}", headers=HX_PARTIAL)).text
    assert "<html" not in html
    assert "<title>Visits: Comfort Club Gold · XYZ Services</title>" in html
    assert "Fall furnace tune-up" in html
    listing = (await jane.get("/memberships", headers=HX_PARTIAL)).text
    assert "<html" not in listing and f'hx-get="/memberships/{gold}"' in listing


# --- other people's memberships ---------------------------------------------------------------


async def test_foreign_unknown_and_malformed_ids_are_404(jane, demo):
    acme_contract = await membership_id("K-ACME-HVAC")
    other_business = await _other_business_membership()
    for path in (
        f"/memberships/{acme_contract}",  # another customer's
        f"/memberships/{other_business}",  # another business's
        "/memberships/999999",
        "/memberships/abc",
        "/memberships/-1",
        "/memberships/1e3",
        "/memberships/99999999999999999999999",
        "/memberships/2147483648",  # beyond the database's integers
        "/memberships/0",
    ):
        response = await jane.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.text
        assert "Commercial HVAC" not in response.text and "Other Co plan" not in response.text


async def _other_business_membership() -> int:
    tenant = await Tenant.insert(Tenant(host="otherco", name="Other Co")).run()
    tid = tenant[0]["id"]
    customer = await Customer.insert(Customer(tenant=tid, external_id="X-1", name="X")).run()
    location = await Location.insert(
        Location(tenant=tid, customer=customer[0]["id"], external_id="XL-1", street="1 X St")
    ).run()
    rows = await Membership.insert(
        Membership(
            tenant=tid,
            customer=customer[0]["id"],
            location=location[0]["id"],
            external_id="XM-1",
            type_name="Other Co plan",
            start_date=date(2025, 1, 1),
        )
    ).run()
    return rows[0]["id"]


async def test_signed_out_visitor_is_sent_to_sign_in(client, demo):
    response = await client.get("/memberships")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/memberships"

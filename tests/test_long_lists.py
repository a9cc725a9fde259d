"""Lists that grow with a customer show a few at a time (issue 18): the Memberships tab
its first MEMBERSHIPS_SHOWN with "Show all memberships", the Scheduler its next
UPCOMING_SHOWN appointments with "See all upcoming appointments" and REQUESTS_PAGE
requests a page — real links (href plus hx-get), so they work with JavaScript off."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest

from portal.db import bookings, memberships
from portal.db.tables import BusinessUnit, Customer, Job, Location, Membership

EXTRA = 7


def link(html: str, name: str) -> str | None:
    found = re.search(r'<a href="([^"]+)"([^>]*)>' + re.escape(name) + "</a>", html)
    if not found:
        return None
    assert f'hx-get="{found.group(1)}"' in found.group(2)  # htmx swaps the same URL
    return unescape(found.group(1))


@pytest.fixture(scope="module")
async def jane_ids(demo: int) -> dict[str, int]:
    customer = (
        await Customer.select(Customer.id)
        .where((Customer.tenant == demo) & (Customer.external_id == "C-1001"))
        .first()
        .run()
    )
    home = (
        await Location.select(Location.id)
        .where((Location.tenant == demo) & (Location.external_id == "L-JANE-HOME"))
        .first()
        .run()
    )
    unit = (
        await BusinessUnit.select(BusinessUnit.id).where(BusinessUnit.tenant == demo).first().run()
    )
    return {"customer": customer["id"], "home": home["id"], "unit": unit["id"]}


async def test_memberships_tab_shows_the_first_few_and_a_link_to_all(jane, demo, jane_ids):
    before = unescape((await jane.get("/memberships")).text)
    assert link(before, "Show all memberships") is None  # Jane's few fit
    await Membership.insert(
        *[
            Membership(
                tenant=demo,
                customer=jane_ids["customer"],
                location=jane_ids["home"],
                external_id=f"M-LONG-{n}",
                type_name=f"Long list plan {n}",
                status="active",
                start_date=date.today() - timedelta(days=n),
            )
            for n in range(EXTRA)
        ]
    ).run()
    first = unescape((await jane.get("/memberships")).text)
    plans = re.findall(r"Long list plan (\d)</a></h2>", first)
    assert plans == [str(n) for n in range(memberships.MEMBERSHIPS_SHOWN)]  # newest first
    assert f"The first {memberships.MEMBERSHIPS_SHOWN} of your memberships are shown" in first
    every = unescape((await jane.get(link(first, "Show all memberships"))).text)
    assert re.findall(r"Long list plan (\d)</a></h2>", every) == [str(n) for n in range(EXTRA)]
    assert "Canceled" in every  # and Jane's own, active first
    assert link(every, "Show all memberships") is None


async def test_scheduler_shows_the_next_few_appointments_and_a_link_to_all(jane, demo, jane_ids):
    start = datetime.now(UTC) + timedelta(days=40)
    await Job.insert(
        *[
            Job(
                tenant=demo,
                customer=jane_ids["customer"],
                location=jane_ids["home"],
                business_unit=jane_ids["unit"],
                number=f"LONG-{n}",
                summary=f"Long list visit {n}",
                status="scheduled",
                scheduled_start=start + timedelta(days=n),
                scheduled_end=start + timedelta(days=n, hours=2),
            )
            for n in range(EXTRA)
        ]
    ).run()
    first = unescape((await jane.get("/schedule")).text)
    listed = re.findall(r"Long list visit (\d)", first)
    shown = bookings.UPCOMING_SHOWN
    assert f"Your next {shown} appointments are shown" in first
    assert len(listed) < EXTRA and listed == [str(n) for n in range(len(listed))]  # soonest
    every = unescape((await jane.get(link(first, "See all upcoming appointments"))).text)
    assert re.findall(r"Long list visit (\d)", every) == [str(n) for n in range(EXTRA)]
    assert link(every, "See all upcoming appointments") is None

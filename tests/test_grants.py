"""Issue 16.4: sharing a customer record — the rules of inviting, the invitation email and
activity line, revoking by the owner, leaving, revoking by the office (auth/grants.py on
db/grants.py), on the engine DATABASE_URL names."""

from __future__ import annotations

import contextlib
import html
import importlib
import json
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from portal.auth import grants
from portal.auth.account_requests import answer_pending
from portal.db import grants as grants_db
from portal.db import tables as t
from portal.db.queries import tenant_by_host
from portal.importer import import_file
from portal.mail.links import portal_url
from tests.support.http import make_client, post_form, sign_in
from tests.support.paying import submit_pay
from tests.support.statements import recorded
from tests.support.world import diff, snapshot

HOST = "shareplumb"
OWNER = f"olive@{HOST}.example"
NEIGHBOUR = f"ned@{HOST}.example"  # on another customer's record, registered
PASSWORD = "grants-test-pass-2468"


def business(host: str, name: str) -> dict[str, Any]:
    """Olive Owner (two locations, registered) and Ned Neighbour (one, registered)."""
    return {
        "format": "portal-import/1",
        "business": {
            "host": host,
            "name": name,
            "email": f"hello@{host}.example",
            "time_zone": "America/Denver",
            "portal": {
                "enabled": True,
                "legal_accepted_by": f"boss@{host}.example",
                "legal_accepted_at": "2026-01-05T15:00:00Z",
                "scheduler_enabled": True,
                "service_types": ["Repair"],
                "memberships_enabled": True,
                "payment_account": f"sandbox_acct_{host}",
                "payments_enabled": True,
            },
        },
        "business_units": [{"id": "PL", "name": "Plumbing"}],
        "staff": [
            {"email": f"boss@{host}.example", "name": "B", "role": "admin", "password": PASSWORD}
        ],
        "customers": [
            {
                "id": "C1",
                "name": "Olive Owner",
                "emails": [f"olive@{host}.example", f"olive.work@{host}.example"],
                "locations": [
                    {"id": "L1", "name": "Home", "street": "1 Elm Row"},
                    {"id": "L2", "name": "Cabin", "street": "2 Pine Rd"},
                ],
                "portal_account": {"email": f"olive@{host}.example", "password": PASSWORD},
            },
            {
                "id": "C2",
                "name": "Ned Neighbour",
                "emails": [f"ned@{host}.example"],
                "locations": [{"id": "L3", "name": "Next door", "street": "3 Elm Row"}],
                "portal_account": {"email": f"ned@{host}.example", "password": PASSWORD},
            },
        ],
        "jobs": [
            {
                "number": f"J-{n}",
                "customer": "C1",
                "location": loc,
                "business_unit": "PL",
                "summary": f"Work at {place}",
                "status": "completed",
                "completed_at": "2026-10-01T15:00:00Z",
            }
            for n, loc, place in ((1, "L1", "Home"), (2, "L2", "Cabin"))
        ],
        "invoices": [
            {
                "number": f"INV-{place.upper()}",
                "job": f"J-{n}",
                "date": "2026-10-01",
                "due_date": "2026-10-31",
                "lines": [{"description": f"Repair at {place}", "unit_price_cents": 10000 * n}],
            }
            for n, place in ((1, "Home"), (2, "Cabin"))
        ],
        "payments": [
            {
                "reference": f"P-{place.upper()}",
                "customer": "C1",
                "paid_at": "2026-10-05T10:00:00Z",
                "card_brand": "Visa",
                "card_last4": "4242",
                "allocations": [{"invoice": f"INV-{place.upper()}", "amount_cents": 2500}],
            }
            for place in ("Home", "Cabin")
        ],
        "memberships": [
            {
                "id": f"M-{loc}",
                "customer": "C1",
                "location": loc,
                "type": f"{place} Comfort Club",
                "status": "active",
                "start_date": "2026-01-01",
                "card": {"brand": "Visa", "last4": "1111"},
            }
            for loc, place in (("L1", "Home"), ("L2", "Cabin"))
        ],
    }


@pytest.fixture(scope="module")
async def shop(app) -> dict[str, Any]:
    """The business's row and its customers' and locations' ids (and another business's)."""
    await import_file(json.dumps(business(HOST, "Shareplumb Services")))
    await import_file(json.dumps(business("othershare", "Othershare Heating")))
    tenant = await tenant_by_host(HOST)
    other = await tenant_by_host("othershare")
    assert tenant and other
    ids: dict[str, Any] = {"tenant": tenant, "other": other}
    for row in await t.Customer.select(
        t.Customer.id, t.Customer.external_id, t.Customer.tenant
    ).run():
        ids[("customer", row["tenant"], row["external_id"])] = row["id"]
    for row in await t.Location.select(
        t.Location.id, t.Location.external_id, t.Location.tenant
    ).run():
        ids[("location", row["tenant"], row["external_id"])] = row["id"]
    for table, kind, key in (
        (t.Invoice, "invoice", t.Invoice.number),
        (t.Membership, "membership", t.Membership.external_id),
        (t.Payment, "payment", t.Payment.gateway_ref),
    ):
        for row in await table.select(table.id, key.as_alias("key"), table.tenant).run():
            ids[(kind, row["tenant"], row["key"])] = row["id"]
    return ids


def _c(shop: dict[str, Any], key: str, tenant: str = "tenant") -> int:
    return shop[("customer", shop[tenant]["id"], key)]


def _l(shop: dict[str, Any], key: str, tenant: str = "tenant") -> int:
    return shop[("location", shop[tenant]["id"], key)]


async def _check(shop, *, email="sam@elsewhere.example", role="billing", locations=None):
    tenant_id = shop["tenant"]["id"]
    if locations is None:
        locations = [str(_l(shop, "L1"))]
    return await grants.check_invite(
        tenant_id, _c(shop, "C1"), OWNER, email=email, role=role, locations=locations
    )


async def _invite(settings, shop, email, role="billing", keys=("L1",)) -> int:
    checked = await _check(shop, email=email, role=role, locations=[str(_l(shop, k)) for k in keys])
    assert checked.ok, checked.problems
    return await grants.invite(
        settings, shop["tenant"], _c(shop, "C1"), "Olive Owner", OWNER, checked.clean
    )


async def _snapshot() -> list[Any]:
    return [
        await t.AccessGrant.select().order_by(t.AccessGrant.id).run(),
        await t.AccessGrantLocation.select().order_by(t.AccessGrantLocation.id).run(),
        await t.OutboxEmail.count().run(),
        await t.ActivityEvent.count().run(),
    ]


async def test_an_invitation_is_checked_field_by_field(shop):
    """Bad email, the owner's own or one on the record, an unknown role, no location or
    another customer's (or business's) location: each gets its message, and checking
    saves nothing."""
    before = await _snapshot()
    cases = [
        ({"email": "not an email"}, "email", "like name@example.com"),
        ({"email": ""}, "email", "Enter their email address."),
        ({"email": OWNER.upper()}, "email", "already on your account"),
        ({"email": f"olive.work@{HOST}.example"}, "email", "already on your account"),
        ({"role": "admin"}, "role", "Choose what they may do."),
        ({"role": ""}, "role", "Choose what they may do."),
        ({"locations": []}, "locations", "Choose at least one location."),
        ({"locations": ["", "x"]}, "locations", "Choose at least one location."),
        ({"locations": [str(_l(shop, "L3"))]}, "locations", "Choose among your own locations."),
        (
            {"locations": [str(_l(shop, "L1")), str(_l(shop, "L1", "other"))]},
            "locations",
            "Choose among your own locations.",
        ),
        ({"locations": [str(_l(shop, "L1")), "abc"]}, "locations", "your own locations"),
    ]
    for fields, field, message in cases:
        checked = await _check(shop, **fields)
        assert not checked.ok, fields
        assert message in checked.problems[field], (fields, checked.problems)
    good = await _check(shop, email=" Sam@Elsewhere.example ", locations=[str(_l(shop, "L2"))] * 2)
    assert good.ok, good.problems
    assert good.clean == grants.Invitation(
        email="sam@elsewhere.example", role="billing", location_ids=[_l(shop, "L2")]
    )
    assert await _snapshot() == before


async def test_an_invitation_is_saved_with_its_email_and_activity_line(settings, shop):
    """The grant and its locations, an email in words with a link to create an account (or,
    for an email with an account, to sign in), an activity line: all together."""
    tenant_id = shop["tenant"]["id"]
    emails_before = await t.OutboxEmail.count().run()
    grant_id = await _invite(settings, shop, "Pat.Partner@Elsewhere.example", "view", ("L1", "L2"))
    [row] = await grants_db.given(tenant_id, _c(shop, "C1"))
    assert row["id"] == grant_id
    assert row["invitee_email"] == "pat.partner@elsewhere.example"
    assert row["role"] == "view" and row["granted_by"] == OWNER
    assert row["customer_name"] == "Olive Owner" and row["revoked_at"] is None
    assert row["locations"] == [(_l(shop, "L2"), "Cabin"), (_l(shop, "L1"), "Home")]
    assert await grants_db.held(tenant_id, "PAT.PARTNER@elsewhere.example") == [row]
    assert await grants_db.live_grant_exists(tenant_id, "pat.partner@elsewhere.example")
    assert not await grants_db.live_grant_exists(
        shop["other"]["id"], "pat.partner@elsewhere.example"
    )

    [mail] = (
        await t.OutboxEmail.select()
        .where(t.OutboxEmail.to_addr == "pat.partner@elsewhere.example")
        .run()
    )
    assert await t.OutboxEmail.count().run() == emails_before + 1
    text = " ".join(mail["text_body"].split())
    assert (
        "Olive Owner shared their account at Shareplumb Services with you "
        "(view only, Cabin and Home)." in text
    )
    link = portal_url(settings, shop["tenant"], "/invite?email=pat.partner%40elsewhere.example")
    assert link in text, text
    assert "Create your" in mail["html_body"]
    [line] = (
        await t.ActivityEvent.select()
        .where((t.ActivityEvent.tenant == tenant_id) & (t.ActivityEvent.action == "grant.created"))
        .run()
    )
    assert line["actor"] == OWNER and line["actor_kind"] == "customer"
    assert "pat.partner@elsewhere.example" in line["subject"]
    assert line["new_value"] == "View only; Cabin and Home"

    # Ned already has an account here: his invitation links to signing in.
    await _invite(settings, shop, NEIGHBOUR, "full", ("L2",))
    [mail] = await t.OutboxEmail.select().where(t.OutboxEmail.to_addr == NEIGHBOUR).run()
    text = " ".join(mail["text_body"].split())
    assert "(full access, Cabin)" in text
    assert portal_url(settings, shop["tenant"], "/sign-in") in text and "/invite" not in text


async def test_the_same_email_twice_and_too_many_grants_are_refused(settings, shop):
    await _invite(settings, shop, "twice@elsewhere.example")
    before = await _snapshot()
    checked = await _check(shop, email="TWICE@elsewhere.example", role="full")
    assert "already shared your account with that email" in checked.problems["email"]
    assert await _snapshot() == before
    tenant_id = shop["tenant"]["id"]
    live = len(await grants_db.given(tenant_id, _c(shop, "C1")))
    for n in range(grants.MAX_LIVE_GRANTS - live):
        await _invite(settings, shop, f"many{n}@elsewhere.example")
    before = await _snapshot()
    checked = await _check(shop, email="one-more@elsewhere.example")
    assert "the most there can be" in checked.problems["form"]
    assert await _snapshot() == before
    # Revoked grants do not count: room again after one is removed.
    first = (await grants_db.given(tenant_id, _c(shop, "C1")))[-1]
    assert await grants.revoke_by_owner(tenant_id, _c(shop, "C1"), first["id"], OWNER)
    assert (await _check(shop, email="one-more@elsewhere.example")).ok


async def test_revoking_and_leaving_touch_only_their_own_grants(settings, shop):
    """The owner revokes only grants of their record, a grantee leaves only grants to their
    email, the office only its business's; revoked grants stay for the office's view."""
    tenant_id = shop["tenant"]["id"]
    olive, ned = _c(shop, "C1"), _c(shop, "C2")
    for g in await grants_db.given(tenant_id, olive):  # a clean slate from the tests above
        await grants.revoke_by_office(tenant_id, g["id"], "boss@x.example")
    to_kim = await _invite(settings, shop, "kim@elsewhere.example", "full", ("L1",))
    to_lee = await _invite(settings, shop, "lee@elsewhere.example", "view", ("L2",))
    to_max = await _invite(settings, shop, "max@elsewhere.example", "billing", ("L1", "L2"))

    before = await _snapshot()
    refused = [
        grants.revoke_by_owner(tenant_id, ned, to_kim, NEIGHBOUR),  # not Ned's record
        grants.revoke_by_owner(shop["other"]["id"], olive, to_kim, OWNER),  # other business
        grants.revoke_by_owner(tenant_id, olive, 2_000_000_000, OWNER),  # no such grant
        grants.leave(tenant_id, to_kim, "lee@elsewhere.example"),  # not to Lee
        grants.leave(shop["other"]["id"], to_kim, "kim@elsewhere.example"),
        grants.revoke_by_office(shop["other"]["id"], to_kim, "boss@othershare.example"),
    ]
    for attempt in refused:
        assert await attempt is False
    assert await _snapshot() == before

    assert await grants.revoke_by_owner(tenant_id, olive, to_kim, OWNER)
    assert await grants.leave(tenant_id, to_lee, "LEE@elsewhere.example")
    assert await grants.revoke_by_office(tenant_id, to_max, "boss@shareplumb.example")
    # Each only once.
    assert not await grants.revoke_by_owner(tenant_id, olive, to_kim, OWNER)
    assert not await grants.leave(tenant_id, to_lee, "lee@elsewhere.example")
    assert not await grants.revoke_by_office(tenant_id, to_max, "boss@shareplumb.example")

    assert await grants_db.given(tenant_id, olive) == []
    assert await grants_db.held(tenant_id, "kim@elsewhere.example") == []
    assert not await grants_db.live_grant_exists(tenant_id, "lee@elsewhere.example")
    history = {g["id"]: g for g in await grants_db.for_office(tenant_id, olive)}
    assert all(history[g]["revoked_at"] is not None for g in (to_kim, to_lee, to_max))
    by = {
        r["id"]: r["revoked_by"]
        for r in await t.AccessGrant.select()
        .where(t.AccessGrant.id.is_in([to_kim, to_lee, to_max]))
        .run()
    }
    assert by == {
        to_kim: OWNER,
        to_lee: "lee@elsewhere.example",
        to_max: "office: boss@shareplumb.example",
    }
    lines = [
        (r["action"], r["actor"], r["actor_kind"])
        for r in await t.ActivityEvent.select()
        .where(
            (t.ActivityEvent.tenant == tenant_id)
            & t.ActivityEvent.action.is_in(["grant.revoked", "grant.left"])
        )
        .order_by(t.ActivityEvent.id)
        .run()
    ][-3:]
    assert lines == [
        ("grant.revoked", OWNER, "customer"),
        ("grant.left", "lee@elsewhere.example", "customer"),
        ("grant.revoked", "boss@shareplumb.example", "staff"),
    ]
    # Newest first in every list.
    newest = await grants_db.for_office(tenant_id, olive)
    assert [g["id"] for g in newest[:3]] == [to_max, to_lee, to_kim]


# --- the session read: what a signed-in account sees ------------------------------------------


@contextlib.asynccontextmanager
async def registered(app, settings, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """Register `email` through the normal flow (/invite, the worker's email, the
    create-your-password link): its signed-in client."""
    async with make_client(app, f"http://{HOST}.localhost") as c:
        await _register(c, settings, email)
        yield c


async def _register(c: httpx.AsyncClient, settings, email: str) -> None:
    page = await c.get(f"/invite?email={email}")
    assert f'value="{email}"' in page.text  # the sharing email's link fills the field in
    answer = await post_form(c, "/invite", {"email": email})
    assert answer.status_code in (200, 303), answer.text
    await answer_pending(settings)
    [row] = (
        await t.OutboxEmail.select()
        .where((t.OutboxEmail.to_addr == email) & t.OutboxEmail.text_body.like("%/confirm?token=%"))
        .run()
    )
    link = re.search(r"http://\S+/confirm\?token=\S+", row["text_body"]).group(0)
    path = link.split("localhost:8000", 1)[1]
    token = path.split("token=", 1)[1]
    done = await post_form(
        c, "/confirm", {"token": token, "password": "shared-pass-13579"}, csrf_page=path
    )
    assert done.status_code == 303, done.text


def _switcher(page: str) -> list[str]:
    """The records in the "Viewing" switcher, as shown."""
    return [
        html.unescape(o) for o in re.findall(r'<option value="\d+"[^>]*>([^<]*)</option>', page)
    ]


async def test_a_grantee_registers_sees_the_record_and_loses_it_when_revoked(app, settings, shop):
    """An email with a live grant registers like one on a record; its session read adds
    the granted record (with the role) in the same one read; the next request after a
    revoke no longer sees it, with the same session cookie."""
    tenant_id = shop["tenant"]["id"]
    olive = _c(shop, "C1")
    for g in await grants_db.given(tenant_id, olive):
        await grants.revoke_by_office(tenant_id, g["id"], "boss@x.example")
    # Before any grant, the email is on no record: the worker sends it nothing.
    emails = await t.OutboxEmail.count().run()
    async with make_client(app, f"http://{HOST}.localhost") as c:
        await post_form(c, "/invite", {"email": "sam@elsewhere.example"})
    await answer_pending(settings)
    assert await t.OutboxEmail.count().run() == emails

    grant_id = await _invite(settings, shop, "sam@elsewhere.example", "billing", ("L2",))
    async with registered(app, settings, "sam@elsewhere.example") as sam:
        page = await sam.get("/account")
        assert page.status_code == 200
        assert "Olive Owner — billing" in html.unescape(page.text)
        # Ned has his own record and a grant of Olive's: the switcher lists both.
        to_ned = await _invite(settings, shop, NEIGHBOUR, "view", ("L1",))
        async with make_client(app, f"http://{HOST}.localhost") as ned_client:
            await sign_in(ned_client, NEIGHBOUR, PASSWORD)
            page = await ned_client.get("/invoices")
            assert _switcher(page.text) == ["Ned Neighbour", "Olive Owner — view only"]
            assert await grants.revoke_by_owner(tenant_id, olive, to_ned, OWNER)
            page = await ned_client.get("/invoices")
            assert _switcher(page.text) == [] and "Olive Owner" not in page.text
        assert await grants.revoke_by_owner(tenant_id, olive, grant_id, OWNER)
        page = await sam.get("/account")
        assert "Olive Owner" not in page.text
        assert (await sam.get("/invoices")).status_code in (200, 404)
        assert "Olive Owner" not in (await sam.get("/invoices")).text


async def test_the_owner_beats_a_grant_and_the_read_stays_one_statement(
    app, settings, shop, monkeypatch
):
    """An email both on a record and granted it sees it as its owner; the session read is
    still the one statement (its UNION ALL) whatever the grants."""
    tenant_id = shop["tenant"]["id"]
    olive = _c(shop, "C1")
    # A grant first, then the office puts the same email on the record.
    await grants_db.create(
        tenant_id, olive, "kit@elsewhere.example", "view", [_l(shop, "L1")], OWNER
    )
    async with registered(app, settings, "kit@elsewhere.example") as kit:
        assert "Olive Owner — view only" in html.unescape((await kit.get("/invoices")).text)
        await t.CustomerEmail.insert(
            t.CustomerEmail(tenant=tenant_id, customer=olive, email="kit@elsewhere.example")
        ).run()
        with recorded(monkeypatch) as seen:
            page = await kit.get("/invoices")
        text = html.unescape(page.text)
        assert "Olive Owner" in text and "view only" not in text
        assert "INV-CABIN" in text  # every location: the owner's
        session_reads = [sql for sql in seen.all if "token_hash" in sql]
        assert len(session_reads) == 1 and "UNION ALL" in session_reads[0]


# --- what each role sees and may do -------------------------------------------------------------


def _id(shop: dict[str, Any], kind: str, key: str) -> int:
    return shop[(kind, shop["tenant"]["id"], key)]


CABIN_STREET, HOME_STREET = "2 Pine Rd", "1 Elm Row"


async def _day() -> str:
    from datetime import date, timedelta

    return (date.today() + timedelta(days=3)).isoformat()


async def _request_form(client: httpx.AsyncClient, location_id: int) -> httpx.Response:
    return await post_form(
        client,
        "/schedule",
        {
            "location": str(location_id),
            "service_type": "Repair",
            "date_1": await _day(),
            "window_1": "any",
            "notes": "",
            "request_key": secrets.token_urlsafe(16),
        },
        csrf_page="/invoices",
    )


async def test_each_role_sees_only_its_locations_and_does_only_what_it_may(app, settings, shop):
    """Grants to the Cabin only, one per role: each sees the Cabin's invoices, history,
    payments, memberships and scheduler choices and nothing of the Home (404, like another
    customer's); view-only cannot pay, request or manage cards, billing cannot request or
    manage cards (403, nothing changed, the buttons hidden); full access can do all three."""
    tenant_id = shop["tenant"]["id"]
    olive = _c(shop, "C1")
    for g in await grants_db.given(tenant_id, olive):
        await grants.revoke_by_office(tenant_id, g["id"], "boss@x.example")
    home, cabin = _l(shop, "L1"), _l(shop, "L2")
    inv_home, inv_cabin = _id(shop, "invoice", "INV-HOME"), _id(shop, "invoice", "INV-CABIN")
    pay_home, pay_cabin = _id(shop, "payment", "P-HOME"), _id(shop, "payment", "P-CABIN")
    m_home, m_cabin = _id(shop, "membership", "M-L1"), _id(shop, "membership", "M-L2")
    for role in ("view", "billing", "full"):
        await _invite(settings, shop, f"{role}-grantee@elsewhere.example", role, ("L2",))
    for role in ("view", "billing", "full"):
        async with registered(app, settings, f"{role}-grantee@elsewhere.example") as c:
            # What it sees: the Cabin's records, none of the Home's.
            for path in ("/invoices", "/history", "/memberships", "/schedule"):
                page = await c.get(path)
                assert page.status_code == 200, (role, path)
                assert HOME_STREET not in page.text and "INV-HOME" not in page.text, (role, path)
                assert "Home Comfort Club" not in page.text, (role, path)
            assert "INV-CABIN" in (await c.get("/invoices")).text
            assert CABIN_STREET in (await c.get("/history")).text
            assert "Cabin Comfort Club" in (await c.get("/memberships")).text
            for path in (
                f"/history?location={home}",
                f"/invoices/{inv_home}",
                f"/invoices/{inv_home}/pdf",
                f"/payments/{pay_home}",
                f"/memberships/{m_home}",
            ):
                answer = await c.get(path)
                assert answer.status_code == 404, (role, path, answer.status_code)
                assert HOME_STREET not in answer.text, (role, path)
            for path in (
                f"/history?location={cabin}",
                f"/invoices/{inv_cabin}",
                f"/invoices/{inv_cabin}/pdf",
                f"/payments/{pay_cabin}",
                f"/memberships/{m_cabin}",
            ):
                assert (await c.get(path)).status_code == 200, (role, path)

            # What it may do: refused POSTs are 403 and change nothing.
            invoices_page = (await c.get("/invoices")).text
            visits_page = (await c.get(f"/memberships/{m_cabin}")).text
            schedule_page = (await c.get("/schedule")).text
            assert ("Pay in full" in invoices_page) == (role != "view"), role
            assert ("Update payment card" in visits_page) == (role == "full"), role
            assert ("Send request" in schedule_page) == (role == "full"), role
            refused = []
            if role == "view":
                refused.append(("pay invoices", lambda: submit_pay(c, [inv_cabin])))
            if role != "full":
                refused.append(("request appointments", lambda: _request_form(c, cabin)))
                refused.append(
                    (
                        "manage cards on file",
                        lambda: post_form(
                            c,
                            f"/memberships/{m_cabin}/card",
                            {"key": secrets.token_urlsafe(16)},
                            csrf_page="/invoices",
                        ),
                    )
                )
            for wanted, attempt in refused:
                before = await snapshot()
                answer = await attempt()
                assert answer.status_code == 403, (role, wanted, answer.status_code)
                words = grants.ROLE_WORDS[role]
                assert (
                    f"Your access to Olive Owner is {words[0].lower() + words[1:]}: ask {OWNER} "
                    f"if you need to {wanted}. Nothing was changed."
                ) in html.unescape(answer.text), (role, wanted)
                assert not diff(before, await snapshot()), (role, wanted)

            # The Home's invoice cannot be paid, nor an appointment asked for there.
            if role != "view":
                before = await snapshot()
                answer = await submit_pay(c, [inv_home])
                assert answer.status_code == 404, (role, answer.status_code)
                assert not diff(before, await snapshot()), role
            if role == "billing":  # (its payment then holds the invoice for the others)
                answer = await submit_pay(c, [inv_cabin])
                assert answer.status_code == 303, (role, answer.text[:300])
            if role == "full":
                before = await snapshot()
                answer = await _request_form(c, home)
                assert answer.status_code == 422, answer.status_code
                assert not diff(before, await snapshot())
                assert (await _request_form(c, cabin)).status_code == 303
                answer = await post_form(
                    c,
                    f"/memberships/{m_cabin}/card",
                    {"key": secrets.token_urlsafe(16)},
                    csrf_page=f"/memberships/{m_cabin}",
                )
                assert answer.status_code == 303, re.findall(r'role="alert"[^<]*<', answer.text)


# --- a customer leaving: erasure, the sync API's delete, the export ----------------------------


async def test_erasing_a_customer_revokes_their_grants_and_the_export_lists_them(shop):
    """Privacy erasure revokes the grants of the record and those to the person's emails;
    the customer's export lists both kinds of grant (before the erasure)."""
    import io
    import zipfile

    from portal import privacy
    from portal.db import activity
    from portal.db import privacy as privacy_db

    other = shop["other"]
    tenant_id = other["id"]
    olive, ned = _c(shop, "C1", "other"), _c(shop, "C2", "other")
    given = await grants_db.create(
        tenant_id, olive, "helper@elsewhere.example", "view", [_l(shop, "L1", "other")], "o@x"
    )
    held = await grants_db.create(
        tenant_id, ned, "olive@othershare.example", "billing", [_l(shop, "L3", "other")], "n@x"
    )
    untouched = await grants_db.create(
        tenant_id, ned, "someone@elsewhere.example", "full", [_l(shop, "L3", "other")], "n@x"
    )
    _, body = await privacy.export_zip(other, olive)
    document = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("customer.json"))
    assert [g["id"] for g in document["access_grants"]["given"]] == [given]
    assert [g["id"] for g in document["access_grants"]["held"]] == [held]
    assert document["access_grants"]["given"][0]["invitee_email"] == "helper@elsewhere.example"

    await privacy_db.erase(tenant_id, olive, activity.Actor("boss@othershare.example"))
    live = {
        r["id"]
        for r in await t.AccessGrant.select(t.AccessGrant.id)
        .where((t.AccessGrant.tenant == tenant_id) & t.AccessGrant.revoked_at.is_null())
        .run()
    }
    assert given not in live and held not in live and untouched in live
    assert not await grants_db.live_grant_exists(tenant_id, "olive@othershare.example")


async def test_the_sync_api_deleting_a_customer_removes_their_grants(app, settings, shop):
    """DELETE /api/v1/customers/<id>: the grants of that record go with it, and those to
    its emails are revoked."""
    from tests.support.api import api_client, new_key

    tenant_id = shop["tenant"]["id"]
    olive, ned = _c(shop, "C1"), _c(shop, "C2")
    for g in await grants_db.given(tenant_id, olive):
        await grants.revoke_by_office(tenant_id, g["id"], "boss@x.example")
    to_ned = await grants_db.create(tenant_id, olive, NEIGHBOUR, "view", [_l(shop, "L1")], OWNER)
    of_ned = await grants_db.create(
        tenant_id, ned, "ned-helper@elsewhere.example", "view", [_l(shop, "L3")], NEIGHBOUR
    )
    async with api_client(app, HOST, await new_key(tenant_id)) as writer:
        answer = await writer.delete("/customers/C2")
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == "deleted"
    assert not await t.AccessGrant.exists().where(t.AccessGrant.id == of_ned).run()
    row = await t.AccessGrant.select().where(t.AccessGrant.id == to_ned).first().run()
    assert row["revoked_at"] is not None and row["revoked_by"] == "api: customer deleted"
    assert not await grants_db.live_grant_exists(tenant_id, NEIGHBOUR)


async def test_an_invitation_that_lost_a_race_is_refused_and_saves_nothing(settings, shop):
    """Two invitations to one email both pass the form's check (sent at once); the second
    to be saved gets the sequential message and saves nothing, and the database itself
    refuses a second live grant to that email for the record (tests/test_grants_processes.py
    races real requests)."""
    tenant_id, customer_id = shop["tenant"]["id"], _c(shop, "C1")
    for grant in await grants_db.given(tenant_id, customer_id):  # room under the limit
        await grants.revoke_by_owner(tenant_id, customer_id, grant["id"], OWNER)
    first = await _check(shop, email="race@elsewhere.example")
    second = await _check(shop, email="Race@elsewhere.example", role="full")
    assert first.ok and second.ok
    await grants.invite(settings, shop["tenant"], customer_id, "Olive Owner", OWNER, first.clean)
    before = await _snapshot()
    with pytest.raises(grants.InviteRefused) as refused:
        await grants.invite(
            settings, shop["tenant"], customer_id, "Olive Owner", OWNER, second.clean
        )
    assert refused.value.problems == {"email": grants.ALREADY_SHARED}
    assert await _snapshot() == before
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await grants_db.create(
            tenant_id, customer_id, "race@elsewhere.example", "view", [_l(shop, "L1")], OWNER
        )
    assert await _snapshot() == before


async def test_the_upgrade_revokes_a_second_live_grant_then_holds_one_per_email(shop):
    """The migration that adds `access_grant_live_once`, on a database where a race left two
    live grants to one email for one record: the older stays, the newer is revoked saying
    why, and from then on the database refuses a second one."""
    migration = importlib.import_module(
        "portal.db.migrations.portal_2026_12_02t10_00_00_000000_access_grant_live_once"
    )
    tenant_id, customer_id = shop["tenant"]["id"], _c(shop, "C1")
    await t.AccessGrant.raw("DROP INDEX access_grant_live_once").run()
    email = "raced.twice@elsewhere.example"
    first, second = [
        await grants_db.create(tenant_id, customer_id, email, "view", [_l(shop, "L1")], OWNER)
        for _ in range(2)
    ]
    other = await grants_db.create(
        tenant_id, customer_id, "only.once@elsewhere.example", "view", [_l(shop, "L1")], OWNER
    )
    await t.AccessGrant.raw(
        migration.REVOKE_SECONDS, datetime.now(UTC), "upgrade: a second live grant"
    ).run()
    await t.AccessGrant.raw(migration.INDEX).run()
    live = {g["id"] for g in await grants_db.given(tenant_id, customer_id)}
    assert first in live and other in live and second not in live
    [row] = await t.AccessGrant.select(t.AccessGrant.revoked_by).where(t.AccessGrant.id == second)
    assert row["revoked_by"] == "upgrade: a second live grant"
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await grants_db.create(tenant_id, customer_id, email, "full", [_l(shop, "L2")], OWNER)

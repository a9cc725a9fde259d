"""Office › Staff management (issue 17.11): administrators add staff (who choose their
first password from an emailed link), change roles, disable and re-enable staff; office
staff can do none of it; the last active administrator can be neither disabled nor made
office staff, even by two administrators at once; every change is in the activity log.

Emails go through the delivery worker to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from portal.db import tables as t
from portal.mail.backends import SMTPBackend
from portal.mail.worker import deliver_due
from portal.testing import MailSink, first_link
from tests.support.businesses import NEW_ADMIN_PASSWORD, NEW_OFFICE_PASSWORD, import_business
from tests.support.http import make_client, post_form, staff_sign_in

HOST = "staffwise"
BASE = f"http://{HOST}.localhost"
BOSS = f"boss@{HOST}.example"
DESK = f"desk@{HOST}.example"
GOOD = "copper pipes hum at dawn"


@pytest.fixture(scope="module")
async def business(app) -> int:
    return await import_business(HOST, open_portal=True)


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture
async def boss(app, business) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app, BASE) as client:
        await staff_sign_in(client, BOSS, NEW_ADMIN_PASSWORD)
        yield client


async def member(email: str) -> dict:
    row = await t.StaffUser.select().where(t.StaffUser.email == email).first().run()
    assert row is not None
    return row


async def can_sign_in(app, email: str, password: str) -> bool:
    async with make_client(app, BASE) as client:
        r = await post_form(
            client, "/office/sign-in", {"email": email, "password": password},
            csrf_page="/office/sign-in",
        )  # fmt: skip
        return r.status_code == 303


async def act(client: httpx.AsyncClient, path: str, data: dict | None = None, **kw):
    return await post_form(client, path, data or {}, csrf_page="/office/staff", **kw)


async def activity_of(tenant_id: int, action: str) -> list[dict]:
    return (
        await t.ActivityEvent.select()
        .where((t.ActivityEvent.tenant == tenant_id) & (t.ActivityEvent.action == action))
        .order_by(t.ActivityEvent.id)
        .run()
    )


async def test_an_added_staff_member_chooses_a_password_from_the_email_and_signs_in(
    app, business, boss, settings, sink
):
    new = "robin@staffwise.example"
    r = await act(boss, "/office/staff", {"name": "Robin Reed", "email": new, "role": "office"})
    assert r.status_code == 303
    page = html.unescape((await boss.get(r.headers["location"])).text)
    assert "Robin Reed was added. We've emailed robin@staffwise.example a link" in page
    assert "Invited" in page
    assert not await can_sign_in(app, new, GOOD)  # no password yet
    await deliver_due(settings, SMTPBackend(sink.url))
    [message] = sink.to(new)
    assert message["Subject"] == "Your Brightwater Plumbing office account: choose your password"
    link = first_link(message)
    async with make_client(app, BASE) as robin:
        path = link.split(".localhost:8000", 1)[1]
        token = path.split("token=", 1)[1]
        r = await post_form(
            robin, "/office/reset", {"token": token, "password": GOOD}, csrf_page=path
        )
        assert r.status_code == 303
    assert await can_sign_in(app, new, GOOD)
    [added] = await activity_of(business, "staff.added")
    assert (added["actor"], added["subject"]) == (BOSS, "Robin Reed")
    assert added["new_value"] == f"{new} · Office"
    # The same email again: refused, in words, nothing added.
    r = await act(boss, "/office/staff", {"name": "Robin Again", "email": new, "role": "admin"})
    assert r.status_code == 422
    assert f"{new} is already on your staff." in r.text
    assert await t.StaffUser.count().where(t.StaffUser.email == new) == 1


async def test_bad_input_gets_a_message_and_adds_nobody(app, business, boss):
    before = await t.StaffUser.count().where(t.StaffUser.tenant == business)
    for form, message in (
        ({"name": "", "email": "x@y.example", "role": "office"}, "Enter their name."),
        ({"name": "Al", "email": "not an email", "role": "office"}, "Enter an email address"),
        (
            {"name": "Al", "email": "al@y.example", "role": "owner"},
            "Choose Administrator or Office.",
        ),
        ({"name": "N" * 5000, "email": "al@y.example", "role": "office"}, "more than 1,000"),
    ):
        r = await act(boss, "/office/staff", form)
        assert r.status_code == 422, form
        assert message in html.unescape(r.text), form
    assert await t.StaffUser.count().where(t.StaffUser.tenant == business) == before


async def test_disabling_signs_out_and_locks_out_enabling_lets_back_in(app, business, boss):
    desk = await member(DESK)
    async with make_client(app, BASE) as desk_client:
        await staff_sign_in(desk_client, DESK, NEW_OFFICE_PASSWORD)
        r = await act(boss, f"/office/staff/{desk['id']}/disable", headers={"HX-Request": "true"})
        assert r.status_code == 200
        assert "Dan Desk is disabled: signed out everywhere" in r.text
        assert "Disabled" in r.text
        # Signed out at once: the next page asks to sign in.
        assert (await desk_client.get("/office/settings")).status_code in (302, 303)
    assert not await can_sign_in(app, DESK, NEW_OFFICE_PASSWORD)
    # No reset link for a disabled member.
    r = await act(boss, f"/office/staff/{desk['id']}/reset-link")
    assert r.status_code == 409
    assert "Dan Desk is disabled: enable them first." in r.text
    r = await act(boss, f"/office/staff/{desk['id']}/enable")
    assert r.status_code == 303
    assert await can_sign_in(app, DESK, NEW_OFFICE_PASSWORD)
    actions = [e["new_value"] for e in await activity_of(business, "staff.disabled")]
    assert actions == ["Disabled"]
    assert len(await activity_of(business, "staff.enabled")) == 1


async def test_roles_change_and_the_last_active_admin_is_kept(app, business, boss):
    desk, me = await member(DESK), await member(BOSS)
    # The only administrator cannot step down or be disabled.
    r = await act(boss, f"/office/staff/{me['id']}/role", {"role": "office"})
    assert r.status_code == 409
    assert "is the only active administrator" in html.unescape(r.text)
    assert (await member(BOSS))["role"] == "admin"
    r = await act(boss, f"/office/staff/{me['id']}/disable")
    assert r.status_code == 409
    assert (await member(BOSS))["disabled_at"] is None
    # With a second administrator, one may step down.
    r = await act(boss, f"/office/staff/{desk['id']}/role", {"role": "admin"})
    assert r.status_code == 303
    assert (await member(DESK))["role"] == "admin"
    [change] = await activity_of(business, "staff.role_changed")
    assert (change["old_value"], change["new_value"]) == ("Office", "Administrator")
    async with make_client(app, BASE) as dan:
        await staff_sign_in(dan, DESK, NEW_OFFICE_PASSWORD)
        # Both administrators make the other office staff at the same moment: one wins,
        # the business keeps an administrator.
        answers = await asyncio.gather(
            act(boss, f"/office/staff/{desk['id']}/role", {"role": "office"}),
            act(dan, f"/office/staff/{me['id']}/role", {"role": "office"}),
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [303, 409] or codes == [303, 403], codes
    admins = await t.StaffUser.count().where(
        (t.StaffUser.tenant == business) & (t.StaffUser.role == "admin")
    )
    assert admins == 1
    # Put things back for the other tests.
    for email, role in ((BOSS, "admin"), (DESK, "office")):
        await t.StaffUser.update({t.StaffUser.role: role}).where(t.StaffUser.email == email)


async def test_office_staff_cannot_manage_staff_and_other_businesses_are_not_found(
    app, business, boss
):
    desk = await member(DESK)
    async with make_client(app, BASE) as dan:
        await staff_sign_in(dan, DESK, NEW_OFFICE_PASSWORD)
        page = await dan.get("/office/staff")
        assert "Add a staff member" not in page.text and "Change role" not in page.text
        for path, data in (
            ("/office/staff", {"name": "X", "email": "x@x.example", "role": "admin"}),
            (f"/office/staff/{desk['id']}/role", {"role": "admin"}),
            (f"/office/staff/{(await member(BOSS))['id']}/disable", {}),
        ):
            r = await act(dan, path, data)
            assert r.status_code == 403, path
            assert "Only an administrator can add or change staff." in r.text
    assert (await member(DESK))["role"] == "office"
    other = await import_business("otherstaff")
    stranger = await t.StaffUser.select().where(t.StaffUser.tenant == other).first()
    for action in ("role", "disable", "enable"):
        r = await act(boss, f"/office/staff/{stranger['id']}/{action}", {"role": "office"})
        assert r.status_code == 404, action
    assert (await t.StaffUser.select().where(t.StaffUser.id == stranger["id"]).first()) == stranger

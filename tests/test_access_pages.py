"""The pages of household and property access (issue 16.4): Your account › People with
access (invite with inline errors, revoke, "Remove my access"), the register page an
invitation lands on, and the office's "Who has access" with Revoke. The rules themselves
(`auth/grants.py`) and what each role may do on the other tabs have their own tests."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import httpx

from portal.auth.passwords import hash_password
from portal.db import grants as grants_db
from portal.db import tables as t
from portal.demo import JANE_EMAIL, OFFICE_EMAIL
from tests.support.http import make_client, post, sign_in

HTMX = {"HX-Request": "true", "HX-Request-Type": "partial"}
SPOUSE = "sam.doe@example.org"
SPOUSE_PASSWORD = "sam reads the meter"


def words(response: httpx.Response) -> str:
    """The page's words: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


async def jane_record(demo) -> tuple[int, dict[str, int]]:
    """Jane's customer id and her locations' ids by name."""
    row = (
        await t.Customer.select(t.Customer.id)
        .where((t.Customer.tenant == int(demo)) & (t.Customer.external_id == "C-1001"))
        .first()
        .run()
    )
    assert row is not None
    locations = (
        await t.Location.select(t.Location.id, t.Location.name)
        .where((t.Location.tenant == int(demo)) & (t.Location.customer == row["id"]))
        .run()
    )
    return row["id"], {loc["name"]: loc["id"] for loc in locations}


async def grant_count() -> int:
    return await t.AccessGrant.count().run()


async def add_account(tenant_id: int, email: str, password: str) -> None:
    moment = datetime.now(UTC)
    await t.PortalAccount.insert(
        t.PortalAccount(
            tenant=tenant_id,
            email=email,
            password_hash=await hash_password(password),
            confirmed_at=moment,
            created_at=moment,
        )
    ).run()


async def test_the_owner_invites_with_inline_errors_and_revokes(app, demo, jane):
    customer_id, locations = await jane_record(demo)
    page = await jane.get("/account/access")
    assert page.status_code == 200
    text = words(page)
    assert "People with access to Jane Doe" in text and "Nobody else has access yet." in text
    for name in ("Home", "Lake cabin"):
        assert f'value="{locations[name]}"' in page.text, name
    assert "View only" in text and "Billing — invoices, history and paying" in text
    assert "/account/access" in (await jane.get("/account")).text  # linked from Your account

    before = await grant_count()
    # No location, then a bad email: 422 with the problem at the field, nothing saved.
    no_location = await post(
        jane, "/account/access/invite", {"email": SPOUSE, "role": "view"}, headers=HTMX
    )
    assert no_location.status_code == 422
    assert 'id="f-locations-error"' in no_location.text
    assert no_location.text.lstrip().startswith('<div id="access">')  # the region alone
    assert f'value="{SPOUSE}"' in no_location.text  # what was typed comes back
    bad_email = await post(
        jane,
        "/account/access/invite",
        {"email": "sam at home", "role": "view", "locations": str(locations["Lake cabin"])},
    )
    assert bad_email.status_code == 422 and 'id="f-email-error"' in bad_email.text
    own_email = await post(
        jane,
        "/account/access/invite",
        {"email": JANE_EMAIL, "role": "view", "locations": str(locations["Lake cabin"])},
    )
    assert own_email.status_code == 422
    assert await grant_count() == before

    # A good invitation: 303 (JavaScript off), then listed with role, locations and date.
    done = await post(
        jane,
        "/account/access/invite",
        {"email": SPOUSE, "role": "view", "locations": str(locations["Lake cabin"])},
    )
    assert done.status_code == 303 and done.headers["location"] == "/account/access?done=invited"
    listed = words(await jane.get("/account/access?done=invited"))
    assert "The invitation is on its way" in listed
    assert f"{SPOUSE} View only Lake cabin" in listed
    [grant] = await grants_db.given(int(demo), customer_id)
    assert grant["invitee_email"] == SPOUSE and grant["role"] == "view"

    # Revoke with htmx: the region comes back without the grant.
    swapped = await post(jane, f"/account/access/{grant['id']}/revoke", {}, headers=HTMX)
    assert swapped.status_code == 200
    assert "Access was revoked" in swapped.text and SPOUSE not in swapped.text
    assert await grants_db.given(int(demo), customer_id) == []
    again = await post(jane, f"/account/access/{grant['id']}/revoke", {})
    assert again.status_code == 404  # already revoked: like a missing one


async def test_a_grantee_sees_what_is_shared_and_cannot_invite_or_revoke(app, demo, jane):
    customer_id, locations = await jane_record(demo)
    grantee = "pat.grantee@example.org"
    grant_id = await grants_db.create(
        int(demo), customer_id, grantee, "billing", [locations["Home"]], JANE_EMAIL
    )
    await add_account(int(demo), grantee, "pat keeps the books")
    async with make_client(app) as pat:
        await sign_in(pat, grantee, "pat keeps the books")
        page = words(await pat.get("/account/access"))
        assert "Shared with you" in page
        assert f"Jane Doe Billing — invoices, history and paying Home {JANE_EMAIL}" in page
        assert "Send invitation" not in page
        assert "Only the account holder of Jane Doe can invite people" in page

        # Not the owner: 403 with the reason, nothing changed.
        before = await grant_count()
        refused = await post(
            pat,
            "/account/access/invite",
            {"email": "friend@example.org", "role": "view", "locations": str(locations["Home"])},
        )
        assert refused.status_code == 403
        assert "Nothing was changed" in words(refused)
        assert await grant_count() == before
        revoke = await post(pat, f"/account/access/{grant_id}/revoke", {})
        assert revoke.status_code == 403
        assert [g["id"] for g in await grants_db.given(int(demo), customer_id)] == [grant_id]

        # Remove my access: the record is gone from this account's next page.
        left = await post(pat, f"/account/access/{grant_id}/leave", {})
        assert left.status_code == 303 and left.headers["location"] == "/account/access?done=left"
        assert "Your email is no longer on a customer record" in words(await pat.get("/invoices"))
        assert (await post(pat, f"/account/access/{grant_id}/leave", {})).status_code == 404


async def test_the_invitation_link_lands_on_registering_with_the_email(client, demo):
    page = await client.get("/invite", params={"email": "sam.doe@example.org"})
    assert page.status_code == 200
    text = words(page)
    assert (
        "Create your account" in text
        and "Someone shared their XYZ Services account with you" in text
    )
    assert 'value="sam.doe@example.org"' in page.text
    plain = words(await client.get("/invite"))
    assert "Request an invitation" in plain and "Someone shared" not in plain


async def test_the_office_sees_who_has_access_and_revokes(app, demo, office):
    customer_id, locations = await jane_record(demo)
    grant_id = await grants_db.create(
        int(demo), customer_id, "tenant@example.org", "full", [locations["Lake cabin"]], JANE_EMAIL
    )
    page = words(await office.get(f"/office/customers/{customer_id}"))
    assert "Who has access" in page
    assert f"{JANE_EMAIL} On the customer's record" in page
    assert "tenant@example.org Full access — pay, request appointments, manage cards" in page

    # Another customer's URL with this grant: 404, nothing changed.
    other = (
        await t.Customer.select(t.Customer.id)
        .where((t.Customer.tenant == int(demo)) & (t.Customer.external_id == "C-1002"))
        .first()
        .run()
    )
    assert other is not None
    wrong = await post(office, f"/office/customers/{other['id']}/grants/{grant_id}/revoke", {})
    assert wrong.status_code == 404
    assert grant_id in [g["id"] for g in await grants_db.given(int(demo), customer_id)]

    done = await post(office, f"/office/customers/{customer_id}/grants/{grant_id}/revoke", {})
    assert done.status_code == 303
    after = words(await office.get(done.headers["location"]))
    assert "Access was revoked" in after
    assert f"by office: {OFFICE_EMAIL}" in after
    [row] = [g for g in await grants_db.for_office(int(demo), customer_id) if g["id"] == grant_id]
    assert row["revoked_at"] is not None
    activity = await t.ActivityEvent.select().where(t.ActivityEvent.tenant == int(demo)).run()
    assert any("tenant@example.org" in f"{a['subject']} {a['old_value']}" for a in activity)


async def test_odd_invitations_get_clear_messages_and_save_nothing(app, demo, jane):
    """Control characters, very long or stuffed fields: a 422 with the problem at its field
    and nothing saved, never a 500. An email on another customer's record of this business
    (a neighbour, a property manager) or a staff member's is a person like any other: the
    invitation is saved. A NUL byte is dropped from every form field (`web.form_lists`:
    PostgreSQL cannot store one), so "sam\x00@…" invites sam@…, stored without it."""
    _, locations = await jane_record(demo)
    home = str(locations["Home"])
    before = await grant_count()
    bad = [
        ({"email": "sam@example.org\r\nBcc: x@evil.example"}, "email", "like name@example.com"),
        ({"email": "sam\u202e@example.org"}, "email", "like name@example.com"),
        ({"email": "sam\x7f\x1b@example.org"}, "email", "like name@example.com"),
        ({"email": "sam\u200b@example.org"}, "email", "like name@example.com"),
        ({"email": "\t\x0b\x0c "}, "email", "Enter their email address."),
        ({"email": "s" * 250 + "@example.org"}, "email", "like name@example.com"),
        ({"email": "sam@" + "a" * 10_000 + ".org"}, "email", "like name@example.com"),
        ({"role": "v" * 10_000}, "role", "Choose what they may do."),
        ({"locations": "9" * 5_000}, "locations", "Choose at least one location."),
        ({"locations": [home, *["x"] * 2_000]}, "locations", "your own locations"),
    ]
    for fields, field, message in bad:
        data = {"email": "sam.other@example.org", "role": "view", "locations": home, **fields}
        answer = await post(jane, "/account/access/invite", data)
        assert answer.status_code == 422, (fields, answer.status_code)
        assert f'id="f-{field}-error"' in answer.text, fields
        assert message in words(answer), (fields, words(answer)[:300])
    assert await grant_count() == before

    for email in ("facilities@acme.example", OFFICE_EMAIL.upper(), "sam.nul\x00@example.org"):
        answer = await post(
            jane, "/account/access/invite", {"email": email, "role": "view\x00", "locations": home}
        )
        assert answer.status_code == 303, (email, answer.text[:300])
        assert email.lower().replace("\x00", "") in words(await jane.get("/account/access"))
    assert await grant_count() == before + 3
    assert await t.AccessGrant.exists().where(t.AccessGrant.invitee_email == "sam.nul@example.org")

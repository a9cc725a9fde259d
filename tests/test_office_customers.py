"""Office › Customers: find a customer (name, number or email, page by page), see and edit
their contact emails, see whether they have a portal account, and invite them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from portal.auth.passwords import hash_password
from portal.db import accounts
from portal.db.tables import Customer, CustomerEmail, OutboxEmail, PortalAccount, Tenant
from portal.demo import DEMO_HOST
from tests.support.businesses import import_business
from tests.support.http import csrf_from, make_client, sign_in

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}


async def customer_id(external_id: str) -> int:
    tenant = await Tenant.select(Tenant.id).where(Tenant.host == DEMO_HOST).first().run()
    row = (
        await Customer.select(Customer.id)
        .where((Customer.tenant == tenant["id"]) & (Customer.external_id == external_id))
        .first()
        .run()
    )
    return row["id"]


async def emails_of(cid: int) -> list[str]:
    rows = (
        await CustomerEmail.select(CustomerEmail.email).where(CustomerEmail.customer == cid).run()
    )
    return sorted(r["email"] for r in rows)


async def post(client, path: str, data: dict[str, Any], **kw):
    token = await csrf_from(client, "/office/customers")
    return await client.post(path, data={"_csrf_token": token, **data}, **kw)


async def test_find_a_customer_by_name_number_or_email(office):
    by_name = (await office.get("/office/customers?q=jane")).text
    assert "Jane Doe" in by_name and "Bob Stone" not in by_name
    assert "Registered" in by_name
    by_email = (await office.get("/office/customers?q=FACILITIES@acme")).text
    assert "Acme Property Management" in by_email and "Maple Court HOA" in by_email
    by_number = (await office.get("/office/customers?q=C-1002")).text
    assert "Bob Stone" in by_number and "Not registered" in by_number
    nothing = (await office.get("/office/customers?q=%25_")).text  # LIKE wildcards are literal
    assert "No customer matches" in nothing
    fragment = await office.get(
        "/office/customers?q=bob", headers={**HX, "HX-Target": "div#customer-results"}
    )
    assert fragment.text.startswith('<div id="customer-results">')
    assert "Bob Stone" in fragment.text and "<nav" not in fragment.text


async def test_customer_list_pages_by_name_without_losing_anyone(office):
    total = await Customer.count().where(Customer.tenant == (await demo_id())).run()
    ids: list[str] = []
    pages = 0
    path = "/office/customers"
    while True:
        page = (await office.get(path)).text
        pages += 1
        ids += re.findall(r'<a href="/office/customers/(\d+)">', page)
        match = re.search(r'href="(/office/customers\?q=&amp;after=\d+)">Next page', page)
        if not match:
            break
        path = match.group(1).replace("&amp;", "&")
    assert pages == -(-total // 25)  # 25 a page
    assert len(ids) == total and len(set(ids)) == total  # everyone once, no one twice


async def demo_id() -> int:
    return (await Tenant.select(Tenant.id).where(Tenant.host == DEMO_HOST).first().run())["id"]


async def test_customer_page_shows_emails_and_portal_accounts(office):
    jane = (await office.get(f"/office/customers/{await customer_id('C-1001')}")).text
    assert "jane@example.com" in jane and "Portal account</span>" in jane
    assert 'aria-label="Invite jane@example.com"' not in jane  # already registered
    bob = (await office.get(f"/office/customers/{await customer_id('C-1002')}")).text
    assert "No portal account" in bob and 'aria-label="Invite bob@example.com"' in bob
    assert "7 Birch Lane" in bob


async def test_add_an_email_so_the_customer_can_sign_up_with_it(office, demo):
    bob = await customer_id("C-1002")
    bad = await post(office, f"/office/customers/{bob}/emails", {"email": "bob@"}, headers=HX)
    assert bad.status_code == 422 and "Enter an email address like name@example.com." in bad.text
    assert bad.text.startswith('<section class="card" id="emails"')
    added = await post(
        office, f"/office/customers/{bob}/emails", {"email": " Bob.Work@Example.COM "}
    )
    assert added.status_code == 303
    assert await emails_of(bob) == ["bob.work@example.com", "bob@example.com"]
    assert await accounts.email_on_record(demo, "bob.work@example.com")
    again = await post(office, f"/office/customers/{bob}/emails", {"email": "bob.work@example.com"})
    assert again.status_code == 422
    assert "bob.work@example.com is already on this customer&#39;s record." in again.text
    page = (await office.get(added.headers["location"])).text
    assert "The email was added." in page


async def test_removing_an_email_removes_that_accounts_access(app, office, demo):
    acme = await customer_id("C-1003")
    await post(office, f"/office/customers/{acme}/emails", {"email": "ops@acme.example"})
    await PortalAccount.insert(
        PortalAccount(
            tenant=demo,
            email="ops@acme.example",
            password_hash=await hash_password("ops-pass-12345"),
            confirmed_at=datetime.now(UTC),
        )
    ).run()
    async with make_client(app) as ops:
        await sign_in(ops, "ops@acme.example", "ops-pass-12345")
        assert "Acme Property Management" in (await ops.get("/invoices")).text
        row = (
            await CustomerEmail.select(CustomerEmail.id)
            .where((CustomerEmail.customer == acme) & (CustomerEmail.email == "ops@acme.example"))
            .first()
            .run()
        )
        removed = await post(
            office, f"/office/customers/{acme}/emails/{row['id']}/remove", {}, headers=HX
        )
        assert removed.status_code == 200
        assert "Its portal account no longer sees this customer." in removed.text
        assert "ops@acme.example" not in await emails_of(acme)
        after = (await ops.get("/invoices")).text
        assert "no longer on a customer record" in after
        assert "Acme Property Management" not in after
    # An email id of another customer is not found (and nothing is removed).
    bob = await customer_id("C-1002")
    jane_email = (
        await CustomerEmail.select(CustomerEmail.id)
        .where(CustomerEmail.email == "jane@example.com")
        .first()
        .run()
    )
    wrong = await post(office, f"/office/customers/{bob}/emails/{jane_email['id']}/remove", {})
    assert wrong.status_code == 404
    assert "jane@example.com" in await emails_of(await customer_id("C-1001"))


async def test_invite_sends_the_same_confirmation_email(office):
    bob = await customer_id("C-1002")
    response = await post(office, f"/office/customers/{bob}/invite", {"email": "bob@example.com"})
    assert response.status_code == 303
    email = (
        await OutboxEmail.select()
        .where(OutboxEmail.to_addr == "bob@example.com")
        .order_by(OutboxEmail.id, ascending=False)
        .first()
        .run()
    )
    assert email["subject"] == "Create your password for the XYZ Services customer portal"
    assert "http://xyzplumbing.localhost:8000/confirm?token=" in email["text_body"]
    page = (await office.get(f"/office/customers/{bob}")).text
    assert "Invited, not confirmed yet" in page
    jane = await customer_id("C-1001")
    already = await post(
        office, f"/office/customers/{jane}/invite", {"email": "jane@example.com"}, headers=HX
    )
    assert already.status_code == 422 and "already has a portal account" in already.text
    stranger = await post(
        office, f"/office/customers/{bob}/invite", {"email": "jane@example.com"}, headers=HX
    )
    assert (
        stranger.status_code == 422 and "Choose one of the customer&#39;s emails." in stranger.text
    )


async def test_invite_waits_for_an_open_portal(app):
    from tests.support.businesses import NEW_ADMIN_PASSWORD
    from tests.support.http import staff_sign_in

    await import_business("invitebiz")
    tenant = await Tenant.select(Tenant.id).where(Tenant.host == "invitebiz").first().run()
    pat = await Customer.select(Customer.id).where(Customer.tenant == tenant["id"]).first().run()
    async with make_client(app, "http://invitebiz.localhost") as boss:
        await staff_sign_in(boss, "boss@invitebiz.example", NEW_ADMIN_PASSWORD)
        await post(
            boss, f"/office/customers/{pat['id']}/emails", {"email": "pat2@invitebiz.example"}
        )
        before = await OutboxEmail.count().run()
        response = await post(
            boss, f"/office/customers/{pat['id']}/invite", {"email": "pat2@invitebiz.example"}
        )
        assert response.status_code == 422
        assert "Your customer portal is closed" in response.text
        assert await OutboxEmail.count().run() == before

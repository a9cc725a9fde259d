"""Office staff sign in and out under /office/; staff and customer sessions never open
each other's pages; office pages work while the customer portal is closed. (`portal
create-staff`: tests/test_staff_passwords.py.)"""

from __future__ import annotations

from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, JANE_EMAIL, JANE_PASSWORD, OFFICE_EMAIL
from tests.support.businesses import NEW_ADMIN_PASSWORD, import_business
from tests.support.http import make_client, post_form, sign_in, staff_sign_in


async def test_office_pages_need_a_staff_sign_in(client, demo):
    response = await client.get("/office/settings", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/office/sign-in?next=/office/settings"
    htmx = await client.get("/office/bookings", headers={"HX-Request": "true"})
    assert htmx.headers["hx-redirect"] == "/office/sign-in?next=/office/bookings"


async def test_staff_sign_in_opens_the_office_and_sign_out_closes_it(app, demo):
    async with make_client(app) as c:
        page = await c.get("/office/sign-in")
        assert page.status_code == 200
        assert "Office sign in" in page.text
        response = await post_form(
            c,
            "/office/sign-in?next=/office/bookings",
            {"email": ADMIN_EMAIL.upper(), "password": ADMIN_PASSWORD, "next": "/office/bookings"},
            csrf_page="/office/sign-in",
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/office/bookings"
        settings = await c.get("/office/settings")
        assert settings.status_code == 200
        assert "Alex Admin" in settings.text and "(Administrator)" in settings.text
        assert "Sign out" in settings.text
        out = await post_form(c, "/office/sign-out", {}, csrf_page="/office/settings")
        assert out.headers["location"] == "/office/sign-in?done=signed-out"
        again = await c.get("/office/settings", follow_redirects=False)
        assert again.status_code == 303


async def test_wrong_password_is_refused_without_saying_which_part(app, demo):
    async with make_client(app) as c:
        for email in (ADMIN_EMAIL, "nobody@xyzservices.example"):
            response = await post_form(
                c,
                "/office/sign-in",
                {"email": email, "password": "not-the-password"},
                csrf_page="/office/sign-in",
            )
            assert response.status_code == 422
            assert "don&#39;t match our records" in response.text
        assert (await c.get("/office/settings", follow_redirects=False)).status_code == 303


async def test_sign_in_is_throttled_per_email(app, demo):
    async with make_client(app) as c:
        for _ in range(10):
            await post_form(
                c,
                "/office/sign-in",
                {"email": OFFICE_EMAIL, "password": "guess-guess"},
                csrf_page="/office/sign-in",
            )
        response = await post_form(
            c,
            "/office/sign-in",
            {"email": OFFICE_EMAIL, "password": "office-demo-pass"},
            csrf_page="/office/sign-in",
        )
        assert response.status_code == 429
        assert "Too many attempts" in response.text
        assert int(response.headers["retry-after"]) > 0


async def test_next_only_leads_to_office_pages(app, demo):
    for bad in ("//evil.example/", "https://evil.example/", "/invoices"):
        async with make_client(app) as c:
            response = await post_form(
                c,
                "/office/sign-in",
                {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "next": bad},
                csrf_page="/office/sign-in",
            )
            assert response.headers["location"] == "/office/settings", bad


async def test_sign_in_needs_the_csrf_token(app, demo):
    async with make_client(app) as c:
        await c.get("/office/sign-in")
        response = await c.post(
            "/office/sign-in", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert response.status_code == 403
        assert (await c.get("/office/settings", follow_redirects=False)).status_code == 303


async def test_customer_session_never_opens_an_office_page(jane):
    response = await jane.get("/office/settings", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/office/sign-in")
    assert (await jane.get("/invoices")).status_code == 200  # still signed in as a customer


async def test_staff_session_never_opens_a_customer_page(admin):
    response = await admin.get("/invoices", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/invoices"
    assert (await admin.get("/office/settings")).status_code == 200


async def test_customer_password_does_not_open_the_office(app, demo):
    async with make_client(app) as c:
        response = await post_form(
            c,
            "/office/sign-in",
            {"email": JANE_EMAIL, "password": JANE_PASSWORD},
            csrf_page="/office/sign-in",
        )
        assert response.status_code == 422


async def test_a_session_from_one_business_is_nobody_at_another(app, demo):
    await import_business("otherbiz", open_portal=True)
    async with make_client(app) as c:
        await staff_sign_in(c, ADMIN_EMAIL, ADMIN_PASSWORD)
        cookies = dict(c.cookies)
    async with make_client(app, "http://otherbiz.localhost") as other:
        other.cookies.update(cookies)
        response = await other.get("/office/settings", follow_redirects=False)
        assert response.status_code == 303


async def test_office_works_while_the_customer_portal_is_closed(app, demo):
    await import_business("closedbiz")
    async with make_client(app, "http://closedbiz.localhost") as c:
        closed = await c.get("/sign-in")
        assert closed.status_code == 503
        assert "customer portal isn't available" in closed.text
        await staff_sign_in(c, "boss@closedbiz.example", NEW_ADMIN_PASSWORD)
        page = await c.get("/office/settings")
        assert page.status_code == 200
        assert "Settings › Customer Portal" in page.text


async def test_signing_in_as_staff_replaces_a_customer_session(app, demo):
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        await staff_sign_in(c, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert (await c.get("/office/settings")).status_code == 200
        assert (await c.get("/invoices", follow_redirects=False)).status_code == 303


async def test_both_sign_in_forms_name_one_problem_at_a_time_the_emails_first(app, demo):
    """The customers' and the office's sign-in forms share one check: a missing or bad
    email is named (not the password too), then a missing password; the email typed is
    kept."""
    no_email, bad_email = "Enter your email address.", "Enter an email address like name@"
    no_password = "Enter your password."
    cases = (
        ({"email": "", "password": ""}, no_email),
        ({"email": "not an email", "password": ""}, bad_email),
        ({"email": "Sam@Example.com ", "password": ""}, no_password),
    )
    async with make_client(app) as c:
        for path in ("/sign-in", "/office/sign-in"):
            for form, message in cases:
                response = await post_form(c, path, form, csrf_page=path)
                assert response.status_code == 422, (path, form)
                shown = [m for m in (no_email, bad_email, no_password) if m in response.text]
                assert shown == [message], (path, form)
            assert 'value="sam@example.com"' in response.text

"""Customer accounts: invitation → confirmation email → create password → signed in;
sign in/out, reset, change password; and the security rules around them."""

from __future__ import annotations

import html
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from portal.auth import passwords
from portal.auth.account_requests import answer_pending
from portal.auth.sessions import session_cookie
from portal.auth.tokens import token_hash
from portal.config import Settings
from portal.db import tables as t
from portal.demo import JANE_EMAIL, JANE_PASSWORD
from portal.importer import import_file
from tests.support.http import CSRF_FIELD, make_client, post_form, sign_in

BOB = "bob@example.com"
SAME_ANSWER = "If this email is on your account with XYZ Services, we've sent you a link."


WORKER: dict = {}


@pytest.fixture(scope="module", autouse=True)
def worker_settings(settings):
    """The settings the background worker answers invitation and reset requests with."""
    WORKER["settings"] = settings


async def emails_to(address: str) -> list[dict]:
    """The outbox rows for `address`, once the worker has answered the recorded requests."""
    await answer_pending(WORKER["settings"])
    return (
        await t.OutboxEmail.select()
        .where(t.OutboxEmail.to_addr == address)
        .order_by(t.OutboxEmail.id)
        .run()
    )


def text(response) -> str:
    """A page's HTML with entities decoded (so "we&#39;ve" reads "we've")."""
    return html.unescape(response.text)


def link_in(row: dict) -> str:
    match = re.search(r"http://\S+", row["text_body"])
    assert match, row["text_body"]
    return match.group(0)


def path_of(link: str) -> str:
    return link.split("localhost:8000", 1)[1]


@pytest.fixture(scope="module")
async def other_business(app, demo) -> int:
    """A second business whose customer has an email unknown to XYZ Services."""
    data = {
        "format": "portal-import/1",
        "business": {
            "host": "otherbiz",
            "name": "Other Biz",
            "portal": {
                "enabled": True,
                "legal_accepted_by": "a@other.example",
                "legal_accepted_at": "2026-01-01T00:00:00Z",
            },
        },
        "business_units": [{"id": "U", "name": "Plumbing"}],
        "customers": [
            {
                "id": "O1",
                "name": "Olga Other",
                "emails": ["olga@example.org"],
                "locations": [{"id": "OL1", "street": "9 Elm"}],
            },
            {
                "id": "O2",
                "name": "Jane at Other",
                "emails": [JANE_EMAIL],
                "locations": [{"id": "OL2", "street": "10 Elm"}],
                "portal_account": {"email": JANE_EMAIL, "password": "other-biz-password"},
            },
        ],
    }
    return await import_file(json.dumps(data))


async def test_sign_in_page_shows_the_business_and_the_ways_in(client, demo):
    html = (await client.get("/sign-in")).text
    assert "Sign in to XYZ Services" in html
    assert '<img src="data:image/png;base64,' in html  # the logo, inside the page
    assert "(555) 010-4477" in html and "help@xyzservices.example" in html
    assert 'href="/forgot">Forgot password?</a>' in html
    assert ">Request an invitation</a>" in html
    assert 'autocomplete="current-password"' in html  # paste and password managers welcome


async def test_invitation_answer_is_the_same_for_every_email(app, demo, other_business):
    answers = {}
    for address in (BOB, "nobody@example.com", JANE_EMAIL, "olga@example.org"):
        async with make_client(app) as c:
            response = await post_form(c, "/invite", {"email": address})
            assert response.status_code == 200
            assert SAME_ANSWER in text(response)
            assert "Not arriving? Call us at (555) 010-4477" in text(response)
            # CSRF tokens and CSP nonces differ per request; nothing else may.
            answers[address] = re.sub(r"[0-9a-f]{128}|nonce=\"[^\"]+\"", "", response.text)
    assert len(set(answers.values())) == 1  # nothing in the page tells them apart
    # Bob (on a record here, not registered) gets his link; Jane (registered) the email
    # that helps her: sign in, or reset her password.
    assert [e["subject"] for e in await emails_to(BOB)] == [
        "Create your password for the XYZ Services customer portal"
    ]
    [jane] = await emails_to(JANE_EMAIL)
    assert jane["subject"] == "You already have a XYZ Services portal account"
    assert "http://xyzplumbing.localhost:8000/sign-in" in jane["text_body"]
    assert "http://xyzplumbing.localhost:8000/forgot" in jane["text_body"]
    assert "token" not in jane["text_body"]
    assert await emails_to("nobody@example.com") == []
    assert await emails_to("olga@example.org") == []  # another business's customer


async def test_confirmation_link_creates_password_and_signs_in(app, demo, settings):
    async with make_client(app) as c:
        await post_form(c, "/invite", {"email": "customer2001@example.net"})
    row = (await emails_to("customer2001@example.net"))[-1]
    assert row["subject"] == "Create your password for the XYZ Services customer portal"
    assert row["html_body"] and "XYZ Services" in row["html_body"]
    link = link_in(row)
    assert link.startswith("http://xyzplumbing.localhost:8000/confirm?token=")
    token = link.split("token=")[1]
    assert len(token) >= 43  # 256 random bits, URL-safe
    stored = (
        await t.AuthToken.select().where(t.AuthToken.token_hash == token_hash(token)).first().run()
    )
    assert stored is not None and token not in json.dumps(
        stored, default=str
    )  # only the hash is kept

    async with make_client(app) as c:
        # Opening the link (twice: mail scanners open links) does not use it up.
        for _ in range(2):
            page = await c.get(path_of(link))
            assert page.status_code == 200 and "Create your password" in text(page)
        response = await post_form(
            c,
            "/confirm",
            {"token": token, "password": "a garden of tulips"},
            csrf_page=path_of(link),
        )
        assert response.status_code == 303 and response.headers["location"] == "/invoices"
        tab = await c.get("/invoices")
        assert tab.status_code == 200 and "Invoices" in text(tab)
        again = await c.get(path_of(link))
        assert again.status_code == 410 and "This link was already used" in text(again)
        assert 'href="/invite">Send me a new link' in text(again)
    account = (
        await t.PortalAccount.select()
        .where(t.PortalAccount.email == "customer2001@example.net")
        .first()
        .run()
    )
    assert account["confirmed_at"] is not None
    assert account["password_hash"].startswith("$argon2id$")


async def test_expired_and_foreign_links_are_refused_with_a_way_to_ask_again(
    app, demo, other_business
):
    async with make_client(app) as c:
        await post_form(c, "/invite", {"email": "customer2002@example.net"})
    link = link_in((await emails_to("customer2002@example.net"))[-1])
    token = link.split("token=")[1]
    # The same token on another business's host is unknown there.
    async with make_client(app, "http://otherbiz.localhost") as other:
        page = await other.get(f"/confirm?token={token}")
        assert page.status_code == 404 and "This link doesn't work" in text(page)
    # A reset link cannot be used to confirm (bound to purpose) and vice versa.
    async with make_client(app) as c:
        assert (await c.get(f"/reset?token={token}")).status_code == 404
    await (
        t.AuthToken.update({t.AuthToken.expires_at: datetime.now(UTC) - timedelta(minutes=1)})
        .where(t.AuthToken.token_hash == token_hash(token))
        .run()
    )
    async with make_client(app) as c:
        page = await c.get(path_of(link))
        assert page.status_code == 410 and "This link has expired" in text(page)
        assert 'href="/invite">Send me a new link' in text(page)
        response = await post_form(
            c, "/confirm", {"token": token, "password": "a garden of tulips"}, csrf_page="/invite"
        )
        assert response.status_code == 410
        assert (await c.get("/invoices")).status_code == 303  # not signed in
    account = (
        await t.PortalAccount.select()
        .where(t.PortalAccount.email == "customer2002@example.net")
        .first()
        .run()
    )
    assert account["confirmed_at"] is None and account["password_hash"] == ""


@pytest.mark.parametrize(
    "password,message",
    [
        ("short", "Use at least 8 characters (this has 5)."),
        ("x" * 129, "Use at most 128 characters (this has 129)."),
        ("password1", "one of the most common passwords"),
        ("Iloveyou", "one of the most common passwords"),
        ("XYZ Services", "business's name"),
        ("customer2003@example.net", "your email address"),
        ("CUSTOMER2003", "your email address"),
    ],
)
async def test_password_rules_give_a_clear_reason(app, demo, password, message):
    async with make_client(app) as c:
        await post_form(c, "/invite", {"email": "customer2003@example.net"})
        link = link_in((await emails_to("customer2003@example.net"))[-1])
        token = link.split("token=")[1]
        response = await post_form(
            c, "/confirm", {"token": token, "password": password}, csrf_page=path_of(link)
        )
        assert response.status_code == 422
        assert message in text(response)
        assert 'aria-invalid="true"' in text(response)
    account = (
        await t.PortalAccount.select()
        .where(t.PortalAccount.email == "customer2003@example.net")
        .first()
        .run()
    )
    assert account["confirmed_at"] is None


async def test_unicode_passwords_are_welcome(app, demo):
    async with make_client(app) as c:
        await post_form(c, "/invite", {"email": "customer2004@example.net"})
        link = link_in((await emails_to("customer2004@example.net"))[-1])
        token = link.split("token=")[1]
        password = "çafé ☕ Straße 8"
        response = await post_form(
            c, "/confirm", {"token": token, "password": password}, csrf_page=path_of(link)
        )
        assert response.status_code == 303
    async with make_client(app) as c:
        # Typed as decomposed Unicode on another device: still the same password (NFKC).
        import unicodedata

        await sign_in(c, "customer2004@example.net", unicodedata.normalize("NFD", password))


async def test_sign_in_wrong_password_and_unknown_email_get_the_same_answer(app, demo):
    async with make_client(app) as c:
        wrong = await post_form(
            c, "/sign-in", {"email": JANE_EMAIL, "password": "not her password"}
        )
        unknown = await post_form(
            c, "/sign-in", {"email": "ghost@example.com", "password": "not her password"}
        )
    assert wrong.status_code == unknown.status_code == 422
    message = "That email and password don't match our records."
    assert message in text(wrong) and message in text(unknown)


async def test_unknown_email_still_costs_one_verify(app, demo, monkeypatch):
    calls = []
    real = passwords.HASHER

    class CountingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002
            calls.append(hash)
            return real.verify(hash, password)

    monkeypatch.setattr(passwords, "HASHER", CountingHasher())
    async with make_client(app) as c:
        await post_form(c, "/sign-in", {"email": "ghost@example.com", "password": "whatever123"})
    assert len(calls) == 1


async def test_password_hashing_runs_off_the_event_loop(app, demo, monkeypatch):
    import threading

    threads = []
    real = passwords.HASHER

    class RecordingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002
            threads.append(threading.current_thread().name)
            return real.verify(hash, password)

    monkeypatch.setattr(passwords, "HASHER", RecordingHasher())
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
    assert threads and all(name.startswith("argon2") for name in threads)
    assert threading.main_thread().name not in threads


def test_passwords_are_hashed_at_production_cost_unless_a_test_suite_asks(tmp_path):
    """Cheap hashing is a test-suite setting: off by default, refused for a portal served
    over https; without it a hash carries the production parameters."""
    env = {"PORTAL_VAR_DIR": str(tmp_path), "PORTAL_SECRET_KEY": "given"}
    assert not Settings.from_env(env).cheap_password_hashing_for_tests
    test_env = {**env, "PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS": "1"}
    assert Settings.from_env(test_env).cheap_password_hashing_for_tests
    with pytest.raises(ValueError, match="for test suites only"):
        Settings.from_env({**test_env, "PORTAL_PUBLIC_SCHEME": "https"})
    passwords.use_cost(cheap_for_tests=False)
    try:
        stored = passwords.hash_password_sync("a-production-password")
    finally:
        passwords.use_cost(cheap_for_tests=True)
    # Above OWASP's floor (m=19456, t=2, p=1).
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert passwords.hash_password_sync("x").startswith("$argon2id$v=19$m=8,t=1,p=1$")


async def test_weak_hash_is_upgraded_at_sign_in(app, demo, production_hashing):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("bobs-new-password")
    await (
        t.PortalAccount.update({t.PortalAccount.password_hash: weak})
        .where(t.PortalAccount.email == "customer2005@example.net")
        .run()
    )
    # customer2005 has no account yet: make one that is confirmed with the weak hash.
    tenant = await t.Tenant.select(t.Tenant.id).where(t.Tenant.host == "xyzplumbing").first().run()
    await t.PortalAccount.insert(
        t.PortalAccount(
            tenant=tenant["id"],
            email="customer2005@example.net",
            password_hash=weak,
            confirmed_at=datetime.now(UTC),
        )
    ).run()
    async with make_client(app) as c:
        await sign_in(c, "customer2005@example.net", "bobs-new-password")
    stored = (
        await t.PortalAccount.select(t.PortalAccount.password_hash)
        .where(t.PortalAccount.email == "customer2005@example.net")
        .first()
        .run()
    )["password_hash"]
    assert stored != weak
    assert "m=65536,t=3,p=1" in stored  # above OWASP's floor (m=19456, t=2, p=1)
    assert not passwords.needs_rehash(stored)


async def test_a_planted_session_cookie_does_not_survive_sign_in(app, demo, settings):
    # The attacker signs in to their own account and plants that cookie in the victim's browser.
    async with make_client(app) as attacker:
        await sign_in(attacker, JANE_EMAIL, JANE_PASSWORD)
        planted = attacker.cookies["portal_session"]
    async with make_client(app) as victim:
        victim.cookies.set("portal_session", planted, domain="xyzplumbing.localhost")
        r = await post_form(
            victim,
            "/sign-in",
            {"email": JANE_EMAIL, "password": JANE_PASSWORD},
            csrf_page="/invite",
        )
        assert r.status_code == 303
        fresh = victim.cookies["portal_session"]
    assert fresh != planted
    assert not await t.Session.exists().where(t.Session.token_hash == token_hash(planted)).run()
    assert await t.Session.exists().where(t.Session.token_hash == token_hash(fresh)).run()


async def _session_of(client) -> dict:
    token = client.cookies["portal_session"]
    return await t.Session.select().where(t.Session.token_hash == token_hash(token)).first().run()


async def test_idle_and_absolute_timeouts_are_enforced_on_the_server(app, demo):
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        row = await _session_of(c)
        await (
            t.Session.update({t.Session.last_seen_at: datetime.now(UTC) - timedelta(minutes=121)})
            .where(t.Session.id == row["id"])
            .run()
        )
        response = await c.get("/invoices")
        assert response.status_code == 303 and response.headers["location"].startswith("/sign-in")
        assert not await t.Session.exists().where(t.Session.id == row["id"]).run()

        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        row = await _session_of(c)
        await (
            t.Session.update({t.Session.expires_at: datetime.now(UTC) - timedelta(seconds=1)})
            .where(t.Session.id == row["id"])
            .run()
        )
        assert (await c.get("/invoices")).status_code == 303


async def test_sign_out_deletes_the_session_and_the_old_cookie_is_dead(app, demo):
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        old = c.cookies["portal_session"]
        response = await post_form(c, "/sign-out", {}, csrf_page="/invoices")
        assert (
            response.status_code == 303
            and response.headers["location"] == "/sign-in?done=signed-out"
        )
        assert "You're signed out." in text(await c.get("/sign-in?done=signed-out"))
    async with make_client(app) as replay:
        replay.cookies.set("portal_session", old, domain="xyzplumbing.localhost")
        assert (await replay.get("/invoices")).status_code == 303


async def test_a_session_from_one_business_is_anonymous_on_another(app, demo, other_business):
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        token = c.cookies["portal_session"]
    async with make_client(app, "http://otherbiz.localhost") as other:
        other.cookies.set("portal_session", token, domain="otherbiz.localhost")
        response = await other.get("/invoices")
        assert response.status_code == 303 and response.headers["location"].startswith("/sign-in")


def test_session_cookie_attributes(settings):
    plain = session_cookie(settings, "tok").to_header()
    assert "portal_session=tok" in plain
    assert "HttpOnly" in plain and "SameSite=lax" in plain and "Path=/" in plain
    assert "Secure" not in plain
    https = session_cookie(settings.with_(public_scheme="https"), "tok").to_header()
    assert https.startswith("Set-Cookie: __Host-portal_session=tok") and "Secure" in https
    assert "Domain" not in https  # bound to the exact host


async def test_unsafe_requests_without_a_csrf_token_are_refused(app, demo):
    async with make_client(app) as c:
        await c.get("/sign-in")  # has the CSRF cookie, but sends no token
        response = await c.post("/sign-in", data={"email": JANE_EMAIL, "password": JANE_PASSWORD})
        assert response.status_code == 403
        assert "This form had expired or came from another site" in text(response)
        assert "portal_session" not in c.cookies
    async with make_client(app) as cross_site:
        # A cross-site form has the token field from an old page but no cookie (SameSite).
        token = CSRF_FIELD.search((await cross_site.get("/sign-in")).text).group(1)
        cross_site.cookies.clear()
        response = await cross_site.post(
            "/sign-in", data={"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD}
        )
        assert response.status_code == 403
    async with make_client(app) as signed_in:
        await sign_in(signed_in, JANE_EMAIL, JANE_PASSWORD)
        response = await signed_in.post("/sign-out", headers={"x-csrftoken": "forged"})
        assert response.status_code == 403
        assert (await signed_in.get("/invoices")).status_code == 200  # still signed in


async def test_htmx_requests_send_the_token_in_a_header(app, demo):
    async with make_client(app) as c:
        page = (await c.get("/sign-in")).text
        token = re.search(r'"x-csrftoken":"([^"]+)"', page).group(1)
        response = await c.post(
            "/sign-in",
            data={"email": JANE_EMAIL, "password": JANE_PASSWORD},
            headers={"x-csrftoken": token, "HX-Request": "true", "HX-Request-Type": "partial"},
        )
        # One round trip: the Invoices page itself replaces the body, and the URL moves on.
        assert response.status_code == 200
        assert response.headers["hx-retarget"] == "body"
        assert response.headers["hx-reswap"] == "outerHTML"
        assert response.headers["hx-push-url"] == "/invoices"
        assert (
            "<title>Invoices · XYZ Services</title>" in response.text and "<body" in response.text
        )
        assert "portal_session" in response.cookies
        assert (await c.get("/invoices")).status_code == 200
    async with make_client(app) as c:
        page = (await c.get("/sign-in?next=/history")).text
        token = re.search(r'"x-csrftoken":"([^"]+)"', page).group(1)
        response = await c.post(
            "/sign-in",
            data={"email": JANE_EMAIL, "password": JANE_PASSWORD, "next": "/history"},
            headers={"x-csrftoken": token, "HX-Request": "true", "HX-Request-Type": "partial"},
        )
        assert response.status_code == 200 and response.headers["hx-redirect"] == "/history"


async def test_sign_in_is_throttled_per_account_and_never_for_long(app, demo):
    async with make_client(app) as c:
        for _ in range(10):
            r = await post_form(
                c, "/sign-in", {"email": "customer2006@example.net", "password": "wrong-guess"}
            )
            assert r.status_code == 422
        r = await post_form(
            c, "/sign-in", {"email": "customer2006@example.net", "password": "wrong-guess"}
        )
        assert r.status_code == 429
        assert "Too many attempts. Please try again in 15 minutes." in text(r)
        assert 0 < int(r.headers["retry-after"]) <= 900
        # Other accounts are not affected by one account's lock.
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
    # The lock lifts when the window has passed.
    await (
        t.ThrottleCount.update({t.ThrottleCount.resets_at: int(time.time()) - 1})
        .where(t.ThrottleCount.key == "signin:email:customer2006@example.net")
        .run()
    )
    async with make_client(app) as c:
        r = await post_form(
            c, "/sign-in", {"email": "customer2006@example.net", "password": "wrong-guess"}
        )
        assert r.status_code == 422


async def lock_address(tenant_id: int, key: str, hits: int) -> None:
    """As if `hits` wrong attempts had just been counted against `key` at one business."""
    await (
        t.ThrottleCount.delete()
        .where((t.ThrottleCount.tenant == tenant_id) & (t.ThrottleCount.key == key))
        .run()
    )
    await t.ThrottleCount.insert(
        t.ThrottleCount(tenant=tenant_id, key=key, hits=hits, resets_at=int(time.time()) + 900)
    ).run()


async def test_sign_in_is_throttled_per_client_address_within_one_business(
    app, demo, other_business
):
    await lock_address(demo, "signin:client:127.0.0.1", 50)
    try:
        async with make_client(app) as c:
            r = await post_form(
                c, "/sign-in", {"email": "someone@example.com", "password": "wrong-guess"}
            )
            assert r.status_code == 429
            # With no trusted proxy configured, X-Forwarded-For is the client's own words.
            r = await post_form(
                c,
                "/sign-in",
                {"email": JANE_EMAIL, "password": JANE_PASSWORD},
                headers={"X-Forwarded-For": "198.51.100.23"},
            )
            assert r.status_code == 429
        # The same address is welcome at another business (its attackers cannot lock
        # out this one's customers, nor the other way round).
        async with make_client(app, "http://otherbiz.localhost") as c:
            await sign_in(c, JANE_EMAIL, "other-biz-password")
    finally:
        await t.ThrottleCount.delete().where(t.ThrottleCount.tenant == demo).run()


async def test_a_locked_email_is_refused_before_any_hashing(app, demo, monkeypatch):
    calls = []
    real = passwords.HASHER

    class CountingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002
            calls.append(hash)
            return real.verify(hash, password)

    await lock_address(demo, "signin:email:customer2012@example.net", 10)
    monkeypatch.setattr(passwords, "HASHER", CountingHasher())
    async with make_client(app) as c:
        r = await post_form(
            c, "/sign-in", {"email": "customer2012@example.net", "password": "a-guess-123"}
        )
    assert r.status_code == 429 and calls == []


async def test_invitations_are_throttled_per_email(app, demo):
    async with make_client(app) as c:
        for _ in range(5):
            assert (
                await post_form(c, "/invite", {"email": "customer2007@example.net"})
            ).status_code == 200
        r = await post_form(c, "/invite", {"email": "customer2007@example.net"})
        assert r.status_code == 429 and "Please try again in" in text(r)
    assert len(await emails_to("customer2007@example.net")) == 5


@pytest.mark.parametrize(
    "next_value,expected",
    [
        ("/history", "/history"),
        ("/history?location=3", "/history?location=3"),
        ("//evil.example/", "/invoices"),
        ("https://evil.example/", "/invoices"),
        ("/\\evil.example", "/invoices"),
        ("", "/invoices"),
    ],
)
async def test_next_only_returns_to_paths_on_this_host(app, demo, next_value, expected):
    async with make_client(app) as c:
        r = await post_form(
            c, "/sign-in", {"email": JANE_EMAIL, "password": JANE_PASSWORD, "next": next_value}
        )
        assert r.status_code == 303 and r.headers["location"] == expected


async def test_pages_need_sign_in_plain_gets_303_htmx_gets_a_redirect_header(client, demo):
    plain = await client.get("/history?location=2")
    assert plain.status_code == 303
    assert plain.headers["location"] == "/sign-in?next=/history%3Flocation%3D2"
    fragment = await client.get(
        "/history", headers={"HX-Request": "true", "HX-Request-Type": "partial"}
    )
    assert fragment.status_code == 200 and fragment.text == ""
    assert fragment.headers["hx-redirect"] == "/sign-in?next=/history"
    assert (await client.get("/account")).status_code == 303


async def test_forgot_and_reset_password(app, demo):
    async with make_client(app) as c:
        r = await post_form(c, "/forgot", {"email": "nobody@example.com"})
        assert SAME_ANSWER in text(r)
        r = await post_form(c, "/forgot", {"email": "customer2008@example.net"})  # not registered
        assert SAME_ANSWER in text(r)
    assert await emails_to("nobody@example.com") == []
    # On a record but never registered: not a reset link, the email that helps.
    [finish] = await emails_to("customer2008@example.net")
    assert finish["subject"] == "Finish creating your XYZ Services portal account"
    assert "/confirm?token=" in link_in(finish)

    async with make_client(app) as other_device:
        await sign_in(other_device, JANE_EMAIL, JANE_PASSWORD)
        async with make_client(app) as c:
            await post_form(c, "/forgot", {"email": JANE_EMAIL})
            await post_form(c, "/forgot", {"email": JANE_EMAIL})
            first, second = (await emails_to(JANE_EMAIL))[-2:]
            assert first["subject"] == "Reset your XYZ Services portal password"
            link = link_in(second)
            token = link.split("token=")[1]
            r = await post_form(
                c,
                "/reset",
                {"token": token, "password": "new jane password 2"},
                csrf_page=path_of(link),
            )
            assert r.status_code == 303 and (await c.get("/invoices")).status_code == 200
        # The reset signed out her other devices and retired the older link.
        assert (await other_device.get("/invoices")).status_code == 303
    async with make_client(app) as c:
        older = await c.get(path_of(link_in(first)))
        assert older.status_code == 410
        bad = await post_form(c, "/sign-in", {"email": JANE_EMAIL, "password": JANE_PASSWORD})
        assert bad.status_code == 422
        await sign_in(c, JANE_EMAIL, "new jane password 2")
    # Put the demo password back for the other tests of this module.
    await (
        t.PortalAccount.update(
            {t.PortalAccount.password_hash: passwords.hash_password_sync(JANE_PASSWORD)}
        )
        .where(t.PortalAccount.email == JANE_EMAIL)
        .run()
    )


async def test_change_password_needs_the_current_one_and_signs_out_other_sessions(app, demo):
    async with make_client(app) as phone, make_client(app) as laptop:
        await sign_in(phone, "customer2001@example.net", "a garden of tulips")
        await sign_in(laptop, "customer2001@example.net", "a garden of tulips")
        async with make_client(app) as c:  # an outstanding reset link
            await post_form(c, "/forgot", {"email": "customer2001@example.net"})
        reset_link = link_in((await emails_to("customer2001@example.net"))[-1])

        wrong = await post_form(
            laptop,
            "/account/password",
            {"current_password": "not it", "new_password": "tulips and roses"},
            csrf_page="/account",
        )
        assert wrong.status_code == 422 and "That isn't your current password." in text(wrong)
        ok = await post_form(
            laptop,
            "/account/password",
            {"current_password": "a garden of tulips", "new_password": "tulips and roses"},
            csrf_page="/account",
        )
        assert ok.status_code == 303
        assert "Your password was changed." in text(await laptop.get(ok.headers["location"]))
        assert (await phone.get("/invoices")).status_code == 303  # signed out elsewhere
        assert (await laptop.get("/invoices")).status_code == 200  # this one stays
        assert (await laptop.get(path_of(reset_link))).status_code == 410  # links retired


async def test_one_account_can_switch_between_its_customer_records(app, demo):
    async with make_client(app) as c:
        await post_form(c, "/invite", {"email": "facilities@acme.example"})
        link = link_in((await emails_to("facilities@acme.example"))[-1])
        token = link.split("token=")[1]
        r = await post_form(
            c,
            "/confirm",
            {"token": token, "password": "rooftop units 4 all"},
            csrf_page=path_of(link),
        )
        assert r.status_code == 303
        page = (await c.get("/invoices")).text
        assert "Acme Property Management</option>" in page and "Maple Court HOA</option>" in page
        assert ">Contracts</a>" in page  # commercial customers have contracts
        maple = (
            await t.Customer.select(t.Customer.id)
            .where(t.Customer.name == "Maple Court HOA")
            .first()
            .run()
        )
        r = await post_form(
            c,
            "/account/customer",
            {"customer": str(maple["id"]), "next": "/history"},
            csrf_page="/invoices",
        )
        assert r.status_code == 303 and r.headers["location"] == "/history"
        assert '"' + str(maple["id"]) + '" selected>Maple Court HOA' in text(
            await c.get("/history")
        )
        # Someone else's record cannot be chosen.
        jane = (
            await t.Customer.select(t.Customer.id)
            .where(t.Customer.name == "Jane Doe")
            .first()
            .run()
        )
        await post_form(
            c, "/account/customer", {"customer": str(jane["id"])}, csrf_page="/invoices"
        )
        page = (await c.get("/history")).text
        assert "Jane Doe" not in page and '" selected>Maple Court HOA' in page


async def test_links_use_the_stored_host_not_the_request_host_header(app, demo):
    async with make_client(app, "http://XYZPLUMBING.localhost:9999") as c:
        await post_form(c, "/invite", {"email": "customer2009@example.net"})
    link = link_in((await emails_to("customer2009@example.net"))[-1])
    assert link.startswith("http://xyzplumbing.localhost:8000/confirm?token=")

"""The customer's security page (issue 16.5): recent sign-ins and the browsers signed in
now, "sign out everywhere else", and the emails on a sign-in from a new browser and on a
password change."""

from __future__ import annotations

import html
import re

import pytest

from portal.auth.account_requests import answer_pending
from portal.auth.signins import browser_of, network_of
from portal.db import tables as t
from portal.demo import JANE_EMAIL, JANE_PASSWORD
from tests.support.http import make_client, post, post_form, sign_in

ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
WINDOWS_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15"
)
WINDOWS_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)


def words(response) -> str:
    """The page's words: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


async def register(app, client, email: str, password: str) -> None:
    """Register `email` (on a demo record) through the invitation email with `client`."""
    async with make_client(app) as c:
        await post_form(c, "/invite", {"email": email})
    await answer_pending(app.state.settings)
    [row] = await t.OutboxEmail.select().where(t.OutboxEmail.to_addr == email).run()
    path = re.search(r"localhost:8000(/confirm\S+)", row["text_body"]).group(1)
    token = path.split("token=")[1]
    done = await post_form(
        client, "/confirm", {"token": token, "password": password}, csrf_page=path
    )
    assert done.status_code == 303


async def subjects_to(address: str) -> list[str]:
    rows = (
        await t.OutboxEmail.select(t.OutboxEmail.subject)
        .where(t.OutboxEmail.to_addr == address)
        .order_by(t.OutboxEmail.id)
        .run()
    )
    return [r["subject"] for r in rows]


@pytest.mark.parametrize(
    "agent,name",
    [
        (ANDROID_CHROME, "Chrome on Android"),
        (WINDOWS_FIREFOX, "Firefox on Windows"),
        (MAC_SAFARI, "Safari on macOS"),
        (WINDOWS_EDGE, "Edge on Windows"),
        ("curl/8.5.0", "An unknown browser"),
        ("", "An unknown browser"),
    ],
)
def test_browsers_get_the_names_people_know(agent, name):
    assert browser_of(agent) == name


def test_the_network_is_approximate():
    assert network_of("203.0.113.57") == "203.0.113.x"
    assert network_of("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert network_of("not an address") == "unknown"


async def test_security_page_lists_sign_ins_and_signs_out_everywhere_else(app, demo):
    async with (
        make_client(app) as phone,
        make_client(app) as laptop,
    ):
        phone.headers["User-Agent"] = ANDROID_CHROME
        laptop.headers["User-Agent"] = WINDOWS_FIREFOX
        await sign_in(phone, JANE_EMAIL, JANE_PASSWORD)
        await sign_in(laptop, JANE_EMAIL, JANE_PASSWORD)
        page = await laptop.get("/account/security")
        assert page.status_code == 200
        text = words(page)
        assert "Firefox on Windows (this browser)" in text
        assert "Chrome on Android" in text and "127.0.0.x" in text
        assert text.count("Password") >= 2  # both sign-ins, how they happened
        # The Your account page leads here.
        assert 'href="/account/security"' in (await laptop.get("/account")).text

        done = await post(laptop, "/account/security/sign-out-others", {})
        assert done.status_code == 303
        assert done.headers["location"] == "/account/security?done=others"
        after = words(await laptop.get("/account/security?done=others"))
        assert "You're signed out everywhere else." in after
        assert "Chrome on Android" in after  # still in the recent sign-ins
        assert "Only this browser is signed in." in after
        assert (await phone.get("/invoices")).status_code == 303  # signed out
        assert (await laptop.get("/invoices")).status_code == 200


async def test_the_security_page_shows_only_your_own_account(app, demo):
    async with make_client(app) as other:
        other.headers["User-Agent"] = MAC_SAFARI
        await register(app, other, "customer2001@example.net", "a garden of tulips")
        text = words(await other.get("/account/security"))
        assert "Chrome on Android" not in text and "Firefox on Windows" not in text
        assert "Safari on macOS (this browser)" in text
    async with make_client(app) as anonymous:
        assert (await anonymous.get("/account/security")).status_code == 303


async def test_a_new_browser_and_a_password_change_are_emailed(app, demo):
    email = "customer2002@example.net"
    async with make_client(app) as first:
        first.headers["User-Agent"] = ANDROID_CHROME
        await register(app, first, email, "slate roof tiles")
        # The account's first sign-in (registering) is no news; the same browser again isn't.
        await post(first, "/sign-out", {})
        await sign_in(first, email, "slate roof tiles")
        assert await subjects_to(email) == [
            "Create your password for the XYZ Services customer portal"
        ]
    async with make_client(app) as second:
        second.headers["User-Agent"] = WINDOWS_FIREFOX
        await sign_in(second, email, "slate roof tiles")
        assert (await subjects_to(email))[-1] == "New sign-in to your XYZ Services portal account"
        [news] = (
            await t.OutboxEmail.select()
            .where((t.OutboxEmail.to_addr == email) & (t.OutboxEmail.subject.like("New sign-in%")))
            .run()
        )
        assert "Firefox on Windows, network 127.0.0.x" in news["text_body"]
        changed = await post(
            second,
            "/account/password",
            {"current_password": "slate roof tiles", "new_password": "copper gutters shine"},
        )
        assert changed.status_code == 303
        assert (await subjects_to(email))[-1] == "Your XYZ Services portal password was changed"
        await post(second, "/sign-out", {})
        await sign_in(second, email, "copper gutters shine")  # a known browser: no email
        assert len(await subjects_to(email)) == 3

"""Emailed links that survive mail scanners (issue 16.1) and signing in with an emailed
link (16.2): opening a link never uses it, a new link never cancels an older one, and
every email asked for gets the email that helps while the page says the same to all."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx

from portal.auth.account_requests import answer_pending
from portal.db import tables as t
from portal.demo import JANE_EMAIL, JANE_PASSWORD
from tests.support.http import make_client, post_form, sign_in

BOB = "bob@example.com"
SAME_ANSWER = "If this email is on your account with XYZ Services, we've sent you a link."


async def emails_to(settings, address: str) -> list[dict]:
    """The outbox rows for `address`, once the worker answered the recorded requests."""
    await answer_pending(settings)
    return (
        await t.OutboxEmail.select()
        .where(t.OutboxEmail.to_addr == address)
        .order_by(t.OutboxEmail.id)
        .run()
    )


def path_in(row: dict) -> str:
    match = re.search(r"http://xyzplumbing\.localhost:8000(/\S*token=\S+)", row["text_body"])
    assert match, row["text_body"]
    return match.group(1)


def text(response: httpx.Response) -> str:
    """The page's words: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", response.text))


async def ask_for_sign_in_link(app, email: str) -> httpx.Response:
    async with make_client(app) as c:
        return await post_form(c, "/sign-in/link", {"email": email}, csrf_page="/sign-in")


async def scanner_opens(app, path: str, times: int = 5) -> None:
    """What Safe Links and the like do: plain GETs (and a HEAD), no cookies, no forms."""
    for _ in range(times):
        async with make_client(app) as scanner:
            page = await scanner.get(path)
            assert page.status_code == 200, page.text
            assert (await scanner.head(path)).status_code in (200, 405)


async def test_a_sign_in_link_signs_in_once_after_any_number_of_plain_opens(app, demo, settings):
    answer = await ask_for_sign_in_link(app, JANE_EMAIL)
    assert answer.status_code == 200 and SAME_ANSWER in text(answer)
    [row] = await emails_to(settings, JANE_EMAIL)
    assert row["subject"] == "Your sign-in link for the XYZ Services customer portal"
    assert "it works once, for 15 minutes" in row["text_body"]
    path = path_in(row)
    assert path.startswith("/sign-in/email?token=")
    await scanner_opens(app, path)
    async with make_client(app) as c:
        page = await c.get(path)
        assert f"You're signing in as {JANE_EMAIL}." in text(page)
        assert page.headers["referrer-policy"] == "no-referrer"
        used = await post_form(
            c, "/sign-in/email", {"token": path.split("token=")[1]}, csrf_page=path
        )
        assert used.status_code == 303 and used.headers["location"] == "/invoices"
        assert (await c.get("/invoices")).status_code == 200
    async with make_client(app) as c:
        again = await c.get(path)
        assert again.status_code == 410 and "This link was already used" in text(again)
        assert 'href="/sign-in">Send me a new link' in again.text
        assert (await c.get("/invoices")).status_code == 303  # the open did not sign it in


async def test_the_sign_in_link_answer_is_the_same_for_every_email(app, demo, settings):
    pages = {}
    for address in (JANE_EMAIL, BOB, "nobody@example.com"):
        response = await ask_for_sign_in_link(app, address)
        assert response.status_code == 200
        pages[address] = re.sub(
            r"[0-9a-f]{128}|nonce=\"[^\"]+\"|value=\"[^\"]*@[^\"]*\"", "", response.text
        )
    assert len(set(pages.values())) == 1
    # Bob never finished registering: he is sent the way to finish, not a sign-in link.
    bob = (await emails_to(settings, BOB))[-1]
    assert bob["subject"] == "Finish creating your XYZ Services portal account"
    assert path_in(bob).startswith("/confirm?token=")
    assert await emails_to(settings, "nobody@example.com") == []


async def test_a_new_link_does_not_cancel_an_older_one(app, demo, settings):
    for _ in range(2):
        await ask_for_sign_in_link(app, "customer2003@example.net")  # never registered
    for _ in range(2):
        async with make_client(app) as c:
            await post_form(c, "/forgot", {"email": "customer2003@example.net"})
    first, second, third, _fourth = await emails_to(settings, "customer2003@example.net")
    for row in (first, second, third):
        async with make_client(app) as c:
            assert (await c.get(path_in(row))).status_code == 200
    # The oldest link still creates the password; that retires the rest.
    async with make_client(app) as c:
        path = path_in(first)
        done = await post_form(
            c,
            "/confirm",
            {"token": path.split("token=")[1], "password": "tulips in spring"},
            csrf_page=path,
        )
        assert done.status_code == 303
    async with make_client(app) as c:
        assert (await c.get(path_in(second))).status_code == 410
    # Two sign-in links for a registered account: both work, each once.
    await ask_for_sign_in_link(app, "customer2003@example.net")
    await ask_for_sign_in_link(app, "customer2003@example.net")
    older, newer = (await emails_to(settings, "customer2003@example.net"))[-2:]
    for row in (older, newer):
        path = path_in(row)
        async with make_client(app) as c:
            used = await post_form(
                c, "/sign-in/email", {"token": path.split("token=")[1]}, csrf_page=path
            )
            assert used.status_code == 303


async def test_an_expired_or_unknown_sign_in_link_explains_and_changes_nothing(app, demo, settings):
    await ask_for_sign_in_link(app, JANE_EMAIL)
    path = path_in((await emails_to(settings, JANE_EMAIL))[-1])
    token = path.split("token=")[1]
    await (
        t.AuthToken.update({t.AuthToken.expires_at: datetime.now(UTC) - timedelta(seconds=1)})
        .where((t.AuthToken.purpose == "signin") & t.AuthToken.used_at.is_null())
        .run()
    )
    async with make_client(app) as c:
        page = await c.get(path)
        assert page.status_code == 410 and "This link has expired" in text(page)
        refused = await post_form(c, "/sign-in/email", {"token": token}, csrf_page="/sign-in")
        assert refused.status_code == 410
        assert (await c.get("/invoices")).status_code == 303  # not signed in
        unknown = await c.get("/sign-in/email?token=" + "x" * 43)
        assert unknown.status_code == 404 and "This link doesn't work" in text(unknown)
        # A reset link is not a sign-in link.
        await post_form(c, "/forgot", {"email": JANE_EMAIL})
    reset = path_in((await emails_to(settings, JANE_EMAIL))[-1])
    async with make_client(app) as c:
        wrong = await c.get("/sign-in/email?token=" + reset.split("token=")[1])
        assert wrong.status_code == 404


async def test_sign_in_link_requests_are_throttled_per_email(app, demo):
    statuses = [
        (await ask_for_sign_in_link(app, "customer2004@example.net")).status_code for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]


async def test_a_bad_email_gets_a_clear_message(app, demo):
    response = await ask_for_sign_in_link(app, "not an email")
    assert response.status_code == 422
    assert "Enter an email address like name@example.com." in text(response)
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)  # the password way is unchanged

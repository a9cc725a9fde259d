"""Staff passwords follow the customers' policy on every path that sets one: `portal
create-staff` (asked for at a terminal, or read from standard input — never the command
line), "Your password" in the office, and the password-reset link an administrator sends
(single use, expiring, stored hashed; opening it uses nothing up). Issue 11.8.

Emails go through the delivery worker to a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import html
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from portal.auth.tokens import token_hash
from portal.db import tables as t
from portal.mail.backends import SMTPBackend
from portal.mail.worker import deliver_due
from portal.testing import MailSink, first_link, fresh_database, start_servers, stop_server
from tests.support.businesses import NEW_ADMIN_PASSWORD, NEW_OFFICE_PASSWORD, import_business
from tests.support.http import CSRF_FIELD, make_client, post_form, staff_sign_in

HOST = "brightwater"
BASE = f"http://{HOST}.localhost"
BOSS = f"boss@{HOST}.example"
DESK = f"desk@{HOST}.example"
BUSINESS_NAME = "Brightwater Plumbing"
GOOD = "copper pipes hum at dawn"
# Refused by the policy for anyone: common passwords, the business's name, one's email.
WEAK = ["password", "12345678", BUSINESS_NAME, DESK]


@pytest.fixture(scope="module")
async def business(app) -> int:
    return await import_business(HOST, open_portal=True)


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


async def deliver(settings, sink: MailSink) -> None:
    """Run the delivery worker once against the real SMTP server."""
    await deliver_due(settings, SMTPBackend(sink.url))


async def signed_in_staff(app, email: str, password: str) -> httpx.AsyncClient:
    client = make_client(app, BASE)
    await staff_sign_in(client, email, password)
    return client


@pytest.fixture
async def boss(app, business) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app, BASE) as client:
        await staff_sign_in(client, BOSS, NEW_ADMIN_PASSWORD)
        yield client


async def desk_hash() -> str:
    row = await (
        t.StaffUser.select(t.StaffUser.password_hash).where(t.StaffUser.email == DESK).first().run()
    )
    return row["password_hash"]


async def desk_id() -> int:
    row = await t.StaffUser.select(t.StaffUser.id).where(t.StaffUser.email == DESK).first().run()
    return row["id"]


async def set_desk_password(password: str) -> None:
    from portal.auth.passwords import hash_password

    await (
        t.StaffUser.update({t.StaffUser.password_hash: await hash_password(password)})
        .where(t.StaffUser.email == DESK)
        .run()
    )


async def can_sign_in(app, email: str, password: str) -> bool:
    async with make_client(app, BASE) as client:
        r = await post_form(
            client,
            "/office/sign-in",
            {"email": email, "password": password},
            csrf_page="/office/sign-in",
        )
        return r.status_code == 303


def text(response: httpx.Response) -> str:
    return html.unescape(response.text)


# --- Your password ---------------------------------------------------------------------------


async def test_staff_change_their_password_and_other_devices_are_signed_out(app, business):
    await set_desk_password(NEW_OFFICE_PASSWORD)
    here = await signed_in_staff(app, DESK, NEW_OFFICE_PASSWORD)
    elsewhere = await signed_in_staff(app, DESK, NEW_OFFICE_PASSWORD)
    try:
        page = await here.get("/office/password")
        assert page.status_code == 200
        assert "Your password" in page.text and "Change password" in page.text
        before = await desk_hash()

        wrong = await post_form(
            here,
            "/office/password",
            {"current_password": "not it at all", "new_password": GOOD},
            csrf_page="/office/password",
        )
        assert wrong.status_code == 422
        assert "That isn't your current password." in text(wrong)
        for weak in WEAK:
            refused = await post_form(
                here,
                "/office/password",
                {"current_password": NEW_OFFICE_PASSWORD, "new_password": weak},
                csrf_page="/office/password",
            )
            assert refused.status_code == 422, weak
            assert 'id="f-new_password-error"' in refused.text, weak
        assert await desk_hash() == before  # nothing changed

        done = await post_form(
            here,
            "/office/password",
            {"current_password": NEW_OFFICE_PASSWORD, "new_password": GOOD},
            csrf_page="/office/password",
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/office/password?done=changed"
        page = await here.get("/office/password?done=changed")
        assert "Your password was changed. Your other devices were signed out." in text(page)
        # The other device is signed out; this one is not.
        gone = await elsewhere.get("/office/settings")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/office/sign-in")
        assert (await here.get("/office/settings")).status_code == 200
        assert not await can_sign_in(app, DESK, NEW_OFFICE_PASSWORD)
        assert await can_sign_in(app, DESK, GOOD)
    finally:
        await here.aclose()
        await elsewhere.aclose()
        await set_desk_password(NEW_OFFICE_PASSWORD)


async def test_with_htmx_the_password_form_alone_is_swapped(app, business):
    await set_desk_password(NEW_OFFICE_PASSWORD)
    async with make_client(app, BASE) as client:
        await staff_sign_in(client, DESK, NEW_OFFICE_PASSWORD)
        token = CSRF_FIELD.search((await client.get("/office/password")).text).group(1)
        htmx = {"HX-Request": "true", "HX-Request-Type": "partial", "x-csrftoken": token}
        refused = await client.post(
            "/office/password",
            data={"current_password": NEW_OFFICE_PASSWORD, "new_password": "password"},
            headers=htmx,
        )
        assert refused.status_code == 422
        assert refused.text.lstrip().startswith('<form method="post" action="/office/password"')
        done = await client.post(
            "/office/password",
            data={"current_password": NEW_OFFICE_PASSWORD, "new_password": GOOD},
            headers=htmx,
        )
        assert done.status_code == 200
        assert done.text.lstrip().startswith("<form")
        assert "Your password was changed." in text(done)
    await set_desk_password(NEW_OFFICE_PASSWORD)


async def test_guessing_the_current_password_is_throttled(app, business):
    await set_desk_password(NEW_OFFICE_PASSWORD)
    await t.ThrottleCount.delete().where(t.ThrottleCount.id > 0).run()
    async with make_client(app, BASE) as client:
        await staff_sign_in(client, DESK, NEW_OFFICE_PASSWORD)
        statuses = []
        for n in range(11):
            r = await post_form(
                client,
                "/office/password",
                {"current_password": f"guess number {n}", "new_password": GOOD},
                csrf_page="/office/password",
            )
            statuses.append(r.status_code)
        assert statuses[:10] == [422] * 10 and statuses[10] == 429
        assert "Too many attempts" in text(r)
    await t.ThrottleCount.delete().where(t.ThrottleCount.id > 0).run()


# --- reset links -----------------------------------------------------------------------------


async def send_link(client: httpx.AsyncClient, staff_id: int, settings, sink: MailSink) -> str:
    """Send a staff member a reset link from the Staff page; the link from the email."""
    sent = len(sink.to(DESK))
    r = await post_form(
        client, f"/office/staff/{staff_id}/reset-link", {}, csrf_page="/office/staff"
    )
    assert r.status_code == 303, r.text[:300]
    assert r.headers["location"] == f"/office/staff?sent={staff_id}"
    await deliver(settings, sink)
    messages = sink.to(DESK)
    assert len(messages) == sent + 1
    message = messages[-1]
    assert message["Subject"] == f"Choose a new password for the {BUSINESS_NAME} office"
    assert "Bea Boss sent you this link" in message.get_body(("plain",)).get_content()
    return first_link(message)


async def test_admin_sends_a_reset_link_that_works_once(app, business, boss, settings, sink):
    await set_desk_password(NEW_OFFICE_PASSWORD)
    staff_page = await boss.get("/office/staff")
    assert staff_page.status_code == 200
    assert DESK in staff_page.text and "Dan Desk" in staff_page.text
    assert "Send password reset link" in staff_page.text
    desk = await signed_in_staff(app, DESK, NEW_OFFICE_PASSWORD)
    try:
        link = await send_link(boss, await desk_id(), settings, sink)
        assert link.startswith(f"http://{HOST}.localhost:8000/office/reset?token=")
        token = link.split("token=", 1)[1]
        notice = await boss.get(f"/office/staff?sent={await desk_id()}")
        assert f"We've sent a password reset link to {DESK}." in text(notice)
        # Stored hashed: the token itself is nowhere in the table, nor in the outbox once
        # the email is delivered.
        rows = await t.StaffToken.select().run()
        assert token not in repr(rows)
        assert [r["token_hash"] for r in rows].count(token_hash(token)) == 1
        assert token not in repr(await t.OutboxEmail.select().run())

        async with make_client(app, BASE) as stranger:
            # Opening the link (twice, as a mail scanner and then the person) uses nothing.
            for _ in range(2):
                page = await stranger.get(f"/office/reset?token={token}")
                assert page.status_code == 200
                assert "Choose a new password" in page.text and DESK in page.text
            for weak in WEAK:
                refused = await post_form(
                    stranger,
                    "/office/reset",
                    {"token": token, "password": weak},
                    csrf_page=f"/office/reset?token={token}",
                )
                assert refused.status_code == 422, weak
                assert 'id="f-password-error"' in refused.text
            assert await can_sign_in(app, DESK, NEW_OFFICE_PASSWORD)  # nothing changed yet

            done = await post_form(
                stranger,
                "/office/reset",
                {"token": token, "password": GOOD},
                csrf_page=f"/office/reset?token={token}",
            )
            assert done.status_code == 303
            assert done.headers["location"] == "/office/password?done=reset"
            welcome = await stranger.get("/office/password?done=reset")
            assert welcome.status_code == 200 and DESK in welcome.text
            assert "Your new password is saved and you're signed in." in text(welcome)

            again = await post_form(
                stranger,
                "/office/reset",
                {"token": token, "password": "another fine passphrase"},
                csrf_page="/office/password",  # signed in now
            )
            assert again.status_code == 410
            assert "This link was already used" in text(again)
            assert (await stranger.get(f"/office/reset?token={token}")).status_code == 410
        # The reset signed the staff member out everywhere else; the new password works.
        gone = await desk.get("/office/settings")
        assert gone.status_code == 303
        assert not await can_sign_in(app, DESK, NEW_OFFICE_PASSWORD)
        assert await can_sign_in(app, DESK, GOOD)
    finally:
        await desk.aclose()
        await set_desk_password(NEW_OFFICE_PASSWORD)


async def test_reset_links_expire_and_a_new_password_retires_them(
    app, business, boss, settings, sink
):
    await set_desk_password(NEW_OFFICE_PASSWORD)
    expired = (await send_link(boss, await desk_id(), settings, sink)).split("token=")[1]
    await (
        t.StaffToken.update({t.StaffToken.expires_at: datetime.now(UTC) - timedelta(minutes=1)})
        .where(t.StaffToken.token_hash == token_hash(expired))
        .run()
    )
    retired = (await send_link(boss, await desk_id(), settings, sink)).split("token=")[1]
    async with make_client(app, BASE) as stranger:
        page = await stranger.get(f"/office/reset?token={expired}")
        assert page.status_code == 410 and "This link has expired" in text(page)
        r = await post_form(
            stranger,
            "/office/reset",
            {"token": expired, "password": GOOD},
            csrf_page="/office/sign-in",
        )
        assert r.status_code == 410
        assert await can_sign_in(app, DESK, NEW_OFFICE_PASSWORD)

        # Changing the password in the office retires every link sent before.
        desk = await signed_in_staff(app, DESK, NEW_OFFICE_PASSWORD)
        r = await post_form(
            desk,
            "/office/password",
            {"current_password": NEW_OFFICE_PASSWORD, "new_password": GOOD},
            csrf_page="/office/password",
        )
        assert r.status_code == 303
        await desk.aclose()
        page = await stranger.get(f"/office/reset?token={retired}")
        assert page.status_code == 410 and "This link was already used" in text(page)
        for nonsense in ("", "x" * 500, "not-a-token", "%00"):
            page = await stranger.get("/office/reset", params={"token": nonsense})
            assert page.status_code == 404 and "This link doesn't work" in text(page)
    await set_desk_password(NEW_OFFICE_PASSWORD)


async def test_only_administrators_send_reset_links(app, business, settings):
    await set_desk_password(NEW_OFFICE_PASSWORD)
    async with make_client(app, BASE) as desk:
        await staff_sign_in(desk, DESK, NEW_OFFICE_PASSWORD)
        page = await desk.get("/office/staff")
        assert page.status_code == 200 and BOSS in page.text  # the list, without the action
        assert "Send password reset link" not in page.text
        boss_id = (
            await t.StaffUser.select(t.StaffUser.id).where(t.StaffUser.email == BOSS).first().run()
        )["id"]
        tokens = await t.StaffToken.count().run()
        emails = await t.OutboxEmail.count().run()
        r = await post_form(
            desk, f"/office/staff/{boss_id}/reset-link", {}, csrf_page="/office/staff"
        )
        assert r.status_code == 403
        assert "Only an administrator can send password reset links." in r.text
        assert await t.StaffToken.count().run() == tokens
        assert await t.OutboxEmail.count().run() == emails


# --- portal create-staff -----------------------------------------------------------------------


def cli_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "PORTAL_VAR_DIR": str(settings.var_dir),
    }


def create_staff(settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`portal create-staff …` with `stdin` as its standard input (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", "create-staff", *args],
        env=cli_env(settings),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def create_staff_at_a_terminal(settings, *args: str, typed: list[str]) -> tuple[int, str]:
    """`portal create-staff …` on a pseudo-terminal, typing `typed` at its prompts (getpass
    reads the terminal, not echoing). Returns (exit status, everything it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal
        os.environ.update(cli_env(settings))
        os.execv(sys.executable, [sys.executable, "-m", "portal.cli", "create-staff", *args])
    output = since_answer = b""
    answers = list(typed)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal: it has exited
                break
            if not chunk:
                break
            output += chunk
            since_answer += chunk
            # Answer a prompt only once it shows: getpass discards what was typed before.
            if answers and since_answer.rstrip().endswith(b":"):
                os.write(fd, answers.pop(0).encode() + b"\n")
                since_answer = b""
        else:
            os.kill(pid, signal.SIGKILL)  # stuck at a prompt
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


async def test_create_staff_asks_for_the_password_and_applies_the_policy(app, demo, settings):
    # No password on the command line: other users and the shell history would see it.
    flag = create_staff(
        settings, "--host", "xyzplumbing", "--email", "x@xyzservices.example", "--password", GOOD
    )
    assert flag.returncode == 2 and "--password is not accepted" in flag.stderr
    assert GOOD not in flag.stderr

    for weak in ["password", "12345678", "XYZ Services", "weak@xyzservices.example"]:
        refused = await asyncio.to_thread(
            create_staff,
            settings,
            "--host", "xyzplumbing", "--email", "weak@xyzservices.example", "--password-stdin",
            stdin=weak + "\n",
        )  # fmt: skip
        assert refused.returncode == 1, weak
        [line] = refused.stderr.strip().splitlines()  # explained in one line
        assert line.startswith("Not created: that password can't be used."), line
    assert not await t.StaffUser.exists().where(t.StaffUser.email == "weak@xyzservices.example")

    piped = await asyncio.to_thread(
        create_staff,
        settings,
        "--host", "xyzplumbing", "--email", "Newbie@XYZservices.example", "--name", "Nia New",
        "--role", "office",
        stdin=GOOD + "\n",
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert "created office newbie@xyzservices.example" in piped.stdout.lower()
    async with make_client(app) as c:
        await staff_sign_in(c, "newbie@xyzservices.example", GOOD)
        page = await c.get("/office/settings")
        assert "Nia New" in page.text and "(Office)" in page.text
        # An office-role member cannot change the host (only administrators can).
        assert 'id="f-host" name="host" value="xyzplumbing" disabled' in page.text

    again = await asyncio.to_thread(
        create_staff,
        settings,
        "--host", "xyzplumbing", "--email", "newbie@xyzservices.example", stdin=GOOD,
    )  # fmt: skip
    assert again.returncode == 1 and "already a staff member" in again.stderr
    nowhere = await asyncio.to_thread(
        create_staff, settings, "--host", "nosuchbiz", "--email", "a@b.example", stdin=GOOD
    )
    assert nowhere.returncode == 1 and "no business has the host name" in nowhere.stderr
    empty = await asyncio.to_thread(
        create_staff, settings, "--host", "xyzplumbing", "--email", "e@b.example", stdin=""
    )
    assert empty.returncode == 1 and "no password on standard input" in empty.stderr


async def test_create_staff_at_a_terminal_asks_twice(app, demo, settings):
    where = ["--host", "xyzplumbing", "--email", "tty@xyzservices.example", "--role", "admin"]
    status, output = await asyncio.to_thread(
        create_staff_at_a_terminal, settings, *where, typed=[GOOD, "something else entirely"]
    )
    assert status == 1 and "Not created: the two passwords differ" in output
    assert "Password for the new staff member:" in output and GOOD not in output  # not echoed
    status, output = await asyncio.to_thread(
        create_staff_at_a_terminal, settings, *where, typed=["12345678", "12345678"]
    )
    assert status == 1 and "that password can't be used." in output
    status, output = await asyncio.to_thread(
        create_staff_at_a_terminal, settings, *where, typed=[GOOD, GOOD]
    )
    assert status == 0 and "Created admin tty@xyzservices.example" in output, output
    async with make_client(app) as c:
        await staff_sign_in(c, "tty@xyzservices.example", GOOD)


# --- one link, two servers -----------------------------------------------------------------------


async def test_one_reset_link_used_at_once_on_two_servers_works_once(tmp_path):
    """The same link submitted at the same moment to two `portal serve` processes sharing
    the database: one sets the password and signs in, the other is told it was used."""
    from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_HOST, OFFICE_EMAIL

    async with fresh_database(tmp_path) as url:
        sink = MailSink().start()
        servers = await asyncio.to_thread(
            start_servers, tmp_path, 2, url, {"PORTAL_SMTP_URL": sink.url}
        )
        try:
            clients = [
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{s.port}",
                    headers={"Host": f"{DEMO_HOST}.localhost:{s.port}"},
                    timeout=60,
                )
                for s in servers
            ]
            admin = clients[0]
            await staff_sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
            page = (await admin.get("/office/staff")).text
            staff_id = page.split(OFFICE_EMAIL)[1].split("/office/staff/")[1].split("/")[0]
            r = await post_form(
                admin, f"/office/staff/{staff_id}/reset-link", {}, csrf_page="/office/staff"
            )
            assert r.status_code == 303
            [message] = await asyncio.to_thread(sink.wait_for, OFFICE_EMAIL)
            token = first_link(message).split("token=")[1]
            forms: list[dict[str, Any]] = []
            for client in clients:
                csrf = CSRF_FIELD.search((await client.get(f"/office/reset?token={token}")).text)
                forms.append({"_csrf_token": csrf.group(1), "token": token})
            passwords = ["first fine passphrase", "second fine passphrase"]
            answers = await asyncio.gather(
                *(
                    c.post("/office/reset", data={**f, "password": p})
                    for c, f, p in zip(clients, forms, passwords, strict=True)
                )
            )
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [303, 410], statuses
            winner = passwords[[a.status_code for a in answers].index(303)]
            loser = passwords[1 - passwords.index(winner)]
            for client in clients:
                client.cookies.clear()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{servers[1].port}",
                headers={"Host": f"{DEMO_HOST}.localhost:{servers[1].port}"},
            ) as fresh:
                await staff_sign_in(fresh, OFFICE_EMAIL, winner)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{servers[0].port}",
                headers={"Host": f"{DEMO_HOST}.localhost:{servers[0].port}"},
            ) as fresh:
                r = await post_form(
                    fresh,
                    "/office/sign-in",
                    {"email": OFFICE_EMAIL, "password": loser},
                    csrf_page="/office/sign-in",
                )
                assert r.status_code == 422
            for client in clients:
                await client.aclose()
        finally:
            for server in servers:
                stop_server(server)
            sink.stop()

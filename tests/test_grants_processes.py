"""Issue 16.4 with real server processes: invitations that race. Two `portal serve`
processes share PostgreSQL (one process on SQLite, the database is one file) and Jane
sends the same invitation, or more than the last free ones, from both at once.

Whatever the order the requests reach the database in, there is never a second live grant
to one email for one record nor a 21st live grant, and every loser gets the message a
sequential second try gets (422), never a 500."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from portal.auth.grants import MAX_LIVE_GRANTS
from portal.db import tables as t
from portal.demo import DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.testing import Server, start_servers, stop_server

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
LOCATION = re.compile(r'name="locations" value="(\d+)"')
PAGE = "/account/access"


class Browser:
    """Jane's browser on one server process (its own cookies)."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"Host": f"{DEMO_HOST}.localhost:{server.port}"},
            timeout=60,
        )
        self.token = ""
        self.location = ""

    async def sign_in(self) -> None:
        page = await self.client.get("/sign-in")
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        answer = await self.client.post(
            "/sign-in",
            data={"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD},
        )
        assert answer.status_code == 303, answer.text
        access = (await self.client.get(PAGE)).text
        self.token = CSRF.search(access).group(1)  # type: ignore[union-attr]
        self.location = LOCATION.search(access).group(1)  # type: ignore[union-attr]

    async def invite(self, email: str) -> httpx.Response:
        return await self.client.post(
            f"{PAGE}/invite",
            data={
                "_csrf_token": self.token,
                "email": email,
                "role": "view",
                "locations": self.location,
            },
        )


@pytest.fixture(scope="module")
async def browsers(app, database_url: str, tmp_path_factory) -> AsyncIterator[list[Browser]]:
    count = 1 if database_url.startswith("sqlite") else 2
    servers = start_servers(tmp_path_factory.mktemp("grants"), count, database_url)
    # Two browsers per process: four sessions of Jane's sending at once.
    started = [Browser(server) for server in servers for _ in range(2)]
    for browser in started:
        await browser.sign_in()
    yield started
    for browser in started:
        await browser.client.aclose()
    for server in servers:
        stop_server(server)


async def live_grants(email: str | None = None) -> list[dict]:
    where = t.AccessGrant.revoked_at.is_null()
    if email is not None:
        where &= t.AccessGrant.invitee_email == email
    return await t.AccessGrant.select(t.AccessGrant.id, t.AccessGrant.customer).where(where).run()


async def race(browsers: list[Browser], emails: list[str]) -> list[httpx.Response]:
    """Each email sent from every browser at once (rounds of len(browsers) requests)."""
    sends = [b.invite(email) for email in emails for b in browsers]
    return list(await asyncio.gather(*sends))


async def test_the_same_invitation_from_both_processes_makes_one_grant(browsers):
    for round_ in range(3):
        email = f"racer{round_}@elsewhere.example"
        answers = await race(browsers, [email])
        codes = sorted(a.status_code for a in answers)
        assert codes == [303] + [422] * (len(browsers) - 1), codes
        for answer in answers:
            if answer.status_code == 422:
                assert "You have already shared your account with that email" in answer.text
        assert len(await live_grants(email)) == 1


async def test_the_last_free_grants_go_once_however_many_race_for_them(browsers):
    customer = (await live_grants("racer0@elsewhere.example"))[0]["customer"]
    live = len([g for g in await live_grants() if g["customer"] == customer])
    # Leave two free places, then race eight different invitations for them.
    for n in range(MAX_LIVE_GRANTS - live - 2):
        assert (await browsers[0].invite(f"filler{n}@elsewhere.example")).status_code == 303
    sends = [
        browser.invite(f"last{n}-{i}@elsewhere.example")
        for i, browser in enumerate(browsers)
        for n in range(2)
    ]
    answers = await asyncio.gather(*sends)
    codes = sorted(a.status_code for a in answers)
    assert codes == [303, 303] + [422] * (len(answers) - 2), codes
    for answer in answers:
        if answer.status_code == 422:
            assert "the most there can be" in answer.text
    assert len([g for g in await live_grants() if g["customer"] == customer]) == MAX_LIVE_GRANTS

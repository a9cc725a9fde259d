"""Issue 11.3 and 11.4 against real server processes: simultaneous requests cannot slip
under a throttle, and a storm of sign-ins from one client cannot starve another's.

On PostgreSQL two `portal serve` processes share one database and the requests are spread
over both; on SQLite one process. The servers trust 127.0.0.1 as their reverse proxy, so
each request names its client in X-Forwarded-For (as a proxy in front of them would).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from portal.demo import DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.testing import MailSink, Server, engine_kind, fresh_database, start_servers, stop_server
from tests.support.businesses import (
    NEW_ADMIN_PASSWORD,
    NEW_CUSTOMER_PASSWORD,
    NEW_OFFICE_PASSWORD,
    new_business_data,
)

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
OTHER_HOST = "burstother"


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def database(tmp_path_factory) -> AsyncIterator[str]:
    async with fresh_database(tmp_path_factory.mktemp("bursts-db")) as url:
        yield url


@pytest.fixture(scope="module")
async def servers(tmp_path_factory, database, sink) -> AsyncIterator[list[Server]]:
    var = tmp_path_factory.mktemp("bursts")
    env = {
        "PORTAL_SMTP_URL": sink.url,
        "PORTAL_TRUSTED_PROXIES": "127.0.0.1",
        # A long bound on the hashing lane's wait and on a whole sign-in, so that "busy"
        # answers (which do not count as attempts) never hide what the throttles let
        # through, however loaded the machine: 50 hashes of one address run one at a
        # time (the lane keeps the other thread for other clients), and in a full suite
        # on a loaded machine they took longer than 60 s.
        "PORTAL_HASH_MAX_WAIT": "300",
        "PORTAL_SIGN_IN_DEADLINE": "300",
    }
    count = 2 if engine_kind() == "postgres" else 1
    started = await asyncio.to_thread(start_servers, var, count, database, env)
    data = var / "other.json"
    data.write_text(json.dumps(new_business_data(OTHER_HOST, open_portal=True)))
    assert started[0].cli("import", str(data)).returncode == 0
    yield started
    for server in started:
        stop_server(server)


class Portal:
    """Sends forms to the server processes in turn, as browsers behind one proxy would."""

    def __init__(self, servers: list[Server], host: str = DEMO_HOST) -> None:
        self.servers = servers
        self.host = host
        self.client = httpx.AsyncClient(timeout=330, limits=httpx.Limits(max_connections=200))
        self.forms: dict[tuple[int, str], tuple[str, str]] = {}

    async def _form(self, server: Server, path: str) -> tuple[str, str]:
        key = (server.port, path)
        if key not in self.forms:
            self.client.cookies.clear()  # each server sets its own CSRF cookie
            page = await self.client.get(
                f"http://127.0.0.1:{server.port}{path}", headers=self._headers(server)
            )
            assert page.status_code == 200, (page.status_code, page.text[:2000])
            self.forms[key] = (CSRF.search(page.text).group(1), page.cookies["portal_csrf"])
        return self.forms[key]

    def _headers(self, server: Server) -> dict[str, str]:
        return {"Host": f"{self.host}.localhost:{server.port}"}

    async def post(self, n: int, path: str, data: dict, client: str) -> httpx.Response:
        server = self.servers[n % len(self.servers)]
        token, cookie = await self._form(server, path)
        headers = {
            **self._headers(server),
            "Cookie": f"portal_csrf={cookie}",
            "X-Forwarded-For": client,
        }
        response = await self.client.post(
            f"http://127.0.0.1:{server.port}{path}",
            data={"_csrf_token": token, **data},
            headers=headers,
        )
        self.client.cookies.clear()  # every request carries only the cookie given above
        return response

    async def burst(self, path: str, forms: list[dict], client: str) -> Counter:
        for n in range(len(self.servers)):  # CSRF tokens first, so the burst is simultaneous
            await self._form(self.servers[n], path)
        answers = await asyncio.gather(
            *[self.post(n, path, form, client) for n, form in enumerate(forms)]
        )
        return Counter(r.status_code for r in answers)

    async def close(self) -> None:
        await self.client.aclose()


@pytest.fixture
async def portal(servers) -> AsyncIterator[Portal]:
    p = Portal(servers)
    yield p
    await p.close()


@pytest.mark.parametrize(
    "path,email,host",
    [
        ("/sign-in", f"pat@{OTHER_HOST}.example", OTHER_HOST),
        ("/office/sign-in", f"boss@{OTHER_HOST}.example", OTHER_HOST),
    ],
    ids=["customer", "office admin"],
)
async def test_thirty_simultaneous_wrong_passwords_are_checked_at_most_ten_times(
    servers, path, email, host
):
    portal = Portal(servers, host)
    try:
        wrong = [{"email": email, "password": f"wrong guess {n}"} for n in range(30)]
        statuses = await portal.burst(path, wrong, client="203.0.113.10")
        # 422: the password was checked (and was wrong); 429: refused before checking.
        assert statuses[422] <= 10, statuses
        assert statuses == {422: 10, 429: 20}, statuses
        right = NEW_CUSTOMER_PASSWORD if path == "/sign-in" else NEW_ADMIN_PASSWORD
        locked = await portal.post(0, path, {"email": email, "password": right}, "198.51.100.1")
        assert locked.status_code == 429  # the email is locked, from any address
    finally:
        await portal.close()


async def throttle_hits(database: str, key: str) -> int:
    """The count stored for a throttle key at the demo business (read straight from the
    database)."""
    sql = (
        "SELECT hits FROM throttle_count WHERE key = {} AND tenant = "
        "(SELECT id FROM tenant WHERE host = {})"
    )
    if engine_kind() == "postgres":
        conn = await asyncpg.connect(database)
        try:
            return await conn.fetchval(sql.format("$1", "$2"), key, DEMO_HOST) or 0
        finally:
            await conn.close()
    with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
        row = conn.execute(sql.format("?", "?"), (key, DEMO_HOST)).fetchone()
        return row[0] if row else 0


async def test_eighty_simultaneous_attempts_from_one_address_are_checked_at_most_fifty_times(
    portal, servers, database
):
    guesses = [{"email": f"ghost{n}@example.com", "password": "wrong guess"} for n in range(80)]
    statuses = await portal.burst("/sign-in", guesses, client="203.0.113.20")
    assert statuses == {422: 50, 429: 30}, statuses
    # Once over its limit, the address is refused by a read: 30 more attempts write
    # nothing (before, each one counted again: a write on SQLite's one write lock).
    key = "signin:client:203.0.113.20"
    counted = await throttle_hits(database, key)
    more = await portal.burst("/sign-in", guesses[:30], client="203.0.113.20")
    assert more == {429: 30}, more
    assert await throttle_hits(database, key) == counted
    # (In the burst itself, those that came after the 50th count were already refused by
    # the read: between 50 and 80 were counted.)
    assert 50 <= counted <= 80, counted
    # The lock is for that address at this business only: Jane, elsewhere, signs in; the
    # same address signs in at another business.
    jane = {"email": JANE_EMAIL, "password": JANE_PASSWORD}
    assert (await portal.post(0, "/sign-in", jane, "198.51.100.2")).status_code == 303
    assert (await portal.post(1, "/sign-in", jane, "203.0.113.20")).status_code == 429
    other = Portal(servers, OTHER_HOST)
    try:
        pat = {"email": f"desk@{OTHER_HOST}.example", "password": NEW_OFFICE_PASSWORD}
        assert (await other.post(0, "/office/sign-in", pat, "203.0.113.20")).status_code == 303
    finally:
        await other.close()


async def test_a_customer_signs_in_promptly_while_one_client_storms_the_sign_in(portal, servers):
    """80 wrong sign-ins from one client, all to one process, while Jane signs in from
    another address. Before: she waited behind all 80 hashes (16.7 s in the review)."""
    one = Portal(servers[:1])
    hashed: list[float] = []  # when each of the storm's checked (422) answers came

    async def guess(n: int) -> int:
        form = {"email": f"storm{n}@example.com", "password": "wrong"}
        response = await one.post(0, "/sign-in", form, "203.0.113.30")
        if response.status_code == 422:
            hashed.append(time.monotonic())
        return response.status_code

    try:
        jane = {"email": JANE_EMAIL, "password": JANE_PASSWORD}
        assert (await one.post(0, "/sign-in", jane, "198.51.100.3")).status_code == 303
        await one._form(servers[0], "/sign-in")  # the CSRF token first: the storm is at once
        storm = asyncio.gather(*[guess(n) for n in range(80)])
        await asyncio.sleep(0.2)  # the storm's requests are in
        answer = await one.post(0, "/sign-in", jane, "198.51.100.3")
        answered = time.monotonic()
        statuses = Counter(await storm)
    finally:
        await one.close()
    assert answer.status_code == 303
    # Her turn does not come after the storm's: it holds one of the two hashing threads,
    # hers starts on the other. So when she is in, most of the storm's 50 checked guesses
    # (its address's limit) are still to come, however slow this machine is right now
    # (timed against a quiet sign-in, this was flaky on a loaded machine).
    before = sum(1 for at in hashed if at < answered)
    assert before < 25, f"{before} of the storm's {len(hashed)} checked guesses came first"
    assert statuses[200] == 0 and set(statuses) <= {422, 429, 503}, statuses


async def pending_work(database: str) -> int:
    """Requests not yet answered plus emails not yet sent, read straight from the database."""
    sql = [
        "SELECT count(*) FROM outbox_email WHERE status = 'pending'",
        "SELECT count(*) FROM account_request",
    ]
    if engine_kind() == "postgres":
        conn = await asyncpg.connect(database)
        try:
            return sum([await conn.fetchval(q) for q in sql])
        finally:
            await conn.close()
    with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
        return sum(conn.execute(q).fetchone()[0] for q in sql)


async def test_thirty_simultaneous_invitation_requests_send_at_most_five_emails(
    portal, sink, database
):
    address = "customer2015@example.net"  # on a customer record, not registered
    answers = await asyncio.gather(
        *[portal.post(n, "/invite", {"email": address}, f"192.0.2.{n + 1}") for n in range(30)]
    )
    statuses = Counter(r.status_code for r in answers)
    assert statuses[200] <= 5 and statuses[429] >= 25, statuses
    for _ in range(300):  # the worker answers the requests, then sends the emails
        if not await pending_work(database):
            break
        await asyncio.sleep(0.1)  # noqa: ASYNC110 - polling another process's database
    assert await pending_work(database) == 0
    received = sink.to(address)
    assert 1 <= len(received) <= 5, len(received)
    assert len(received) == statuses[200]

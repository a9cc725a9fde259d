"""Every form of "the database is unavailable" answers the friendly 503 page with
`Retry-After`, and the server's log says so once per incident (a warning when it starts,
one when it ends), never a traceback per request (docs/security.md, issue 11.7).

Real `portal serve` processes. On PostgreSQL they reach the database through a TCP proxy
(`portal.testing.PostgresProxy`) that the test turns into each outage — nothing listening
(refused), a server starting up or shutting down (a fake that answers FATAL 57P03 as
PostgreSQL does) — since the PostgreSQL on this machine is shared and must not be
stopped; too many clients is a real role connection limit; an exhausted pool is a real
pool whose connections all wait on a lock the test holds. On SQLite: the file locked by
another writer, and the file's directory gone (a volume unmounted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx
import pytest

from portal.db import outage
from portal.demo import DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.testing import (
    PostgresProxy,
    Server,
    engine_kind,
    fresh_database,
    start_server,
    start_servers,
    stop_server,
)

postgres_only = pytest.mark.skipif(engine_kind() != "postgres", reason="PostgreSQL only")
sqlite_only = pytest.mark.skipif(engine_kind() != "sqlite", reason="SQLite only")

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')
# Small pool, short wait: an exhausted pool shows within a second.
FAST_ENV = {"PORTAL_MAIL_WORKER": "0", "PORTAL_DB_POOL_SIZE": "3", "PORTAL_DB_WAIT_SECONDS": "1"}
PAGES = ["/invoices", "/history", "/memberships", "/schedule", "/sign-in"]


def client_for(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}",
        headers={"Host": f"{DEMO_HOST}.localhost:{server.port}"},
        timeout=60,
    )


@contextlib.asynccontextmanager
async def signed_in(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `server` signed in as the demo's customer Jane."""
    async with client_for(server) as client:
        token = CSRF_FIELD.search((await client.get("/sign-in")).text).group(1)
        r = await client.post(
            "/sign-in",
            data={"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD},
        )
        assert r.status_code == 303, r.text[:300]
        yield client


class Browsing:
    """Concurrent loops opening the customer's tabs until stopped; every answer kept."""

    def __init__(self, client: httpx.AsyncClient, loops: int = 6) -> None:
        self.client = client
        self.answers: list[tuple[float, httpx.Response | None]] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._loop(i)) for i in range(loops)]

    async def _loop(self, n: int) -> None:
        while not self._stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                response = await self.client.get(PAGES[n % len(PAGES)])
            except httpx.TransportError:
                response = None
            self.answers.append((started, response))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> list[int]:
        return [r.status_code if r else 0 for t, r in self.answers if since <= t < until]


def assert_friendly_503(response: httpx.Response) -> None:
    """The 503 page: says nothing was done and when to try again; no internals."""
    assert response.status_code == 503, response.text[:300]
    assert response.headers["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
    assert "try again" in response.text and "nothing was done" in response.text
    for internal in ("Traceback", "asyncpg", "sqlite", "Error"):
        assert internal not in response.text


def log_of(server: Server, index: int | None = 0) -> str:
    name = "server.log" if index is None else f"server{index}.log"
    return (server.var_dir / name).read_text()


async def incident_logged_once(server: Server, index: int | None = 0) -> str:
    """Wait for the incident's end to be logged; then the log must show exactly one
    start and one end, and no traceback at all."""
    deadline = time.monotonic() + 20
    while "database reachable again" not in log_of(server, index):
        assert time.monotonic() < deadline, log_of(server, index)[-3000:]
        await asyncio.sleep(0.2)
    text = log_of(server, index)
    assert "Traceback" not in text, text[-3000:]
    assert text.count("database unavailable") == 1, text[-3000:]
    assert text.count("database reachable again") == 1, text[-3000:]
    return text


async def assert_serves_at_full_pool(client: httpx.AsyncClient) -> None:
    """After the outage every pooled connection is back: rounds of more concurrent
    requests than the pool has connections are all served (none waits past the wait)."""
    for _ in range(3):
        answers = await asyncio.gather(*(client.get(p) for p in PAGES[:4] * 2))
        assert [r.status_code for r in answers] == [200] * len(answers)


@pytest.fixture
async def pg_database(tmp_path: Path):
    async with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture(params=["tcp"])
async def proxied(request: pytest.FixtureRequest, pg_database: str, tmp_path: Path):
    """A demo portal server reaching its own PostgreSQL database through a proxy, on TCP
    or (param "unix") on a Unix socket as a local PostgreSQL is usually reached."""
    with tempfile.TemporaryDirectory(dir="/tmp") as socket_dir:  # short: socket paths are
        unix = Path(socket_dir) if request.param == "unix" else None
        proxy = PostgresProxy(pg_database, socket_dir=unix).start()
        [server] = await asyncio.to_thread(start_servers, tmp_path, 1, proxy.url, FAST_ENV)
        try:
            yield proxy, server
        finally:
            stop_server(server)
            proxy.stop()


# --- PostgreSQL ---------------------------------------------------------------------------


@postgres_only
@pytest.mark.parametrize("proxied", ["tcp", "unix"], indirect=True)
async def test_refused_connections_answer_503_logged_once_and_recover(proxied):
    """Nothing listens where the database was (its host is down, or it restarts; on a
    Unix socket the socket file is gone): every request answers the 503 page — none a
    500, none without an answer, none hanging —, the log has one warning at the start and
    one at the end, and afterwards the whole pool serves again."""
    proxy, server = proxied
    async with signed_in(server) as client:
        browsing = Browsing(client)
        await asyncio.sleep(1)
        down = time.monotonic()
        proxy.set_mode("refuse")
        await asyncio.sleep(3)
        up = time.monotonic()
        proxy.set_mode("forward")
        await asyncio.sleep(3)
        await browsing.stop()
        # Requests begun in the last second of the outage may wait for a connection
        # (PORTAL_DB_WAIT_SECONDS) and be served once the database is back.
        during = browsing.statuses(down + 0.2, up - 1.2)
        assert during and set(during) == {503}, sorted(set(during))
        # (303: the sign-in page sends a signed-in customer on to the Invoices tab.)
        assert set(browsing.statuses()) <= {200, 303, 503}, sorted(set(browsing.statuses()))
        for _, response in browsing.answers:
            if response is not None and response.status_code == 503:
                assert_friendly_503(response)
        assert set(browsing.statuses(up + 1.5)) == {200, 303}
        await incident_logged_once(server)
        await assert_serves_at_full_pool(client)
        print(f"\n{len(during)} requests while refused, all 503; then 200 again")


@postgres_only
@pytest.mark.parametrize("phase", ["starting up", "shutting down"])
async def test_database_starting_up_or_shutting_down_answers_503(proxied, phase):
    """PostgreSQL answers every new connection "the database system is starting up" (or
    "shutting down") while it restarts: 503 pages, logged once, served again after."""
    proxy, server = proxied
    async with signed_in(server) as client:
        proxy.set_mode(phase)  # also cuts the pool's connections, as a restart does
        answers = await asyncio.gather(*(client.get(p) for p in PAGES * 2))
        for response in answers:
            assert_friendly_503(response)
        proxy.set_mode("forward")
        await incident_logged_once(server)
        await assert_serves_at_full_pool(client)


@postgres_only
async def test_a_server_started_before_its_database_is_up_answers_503_until_it_is(
    pg_database, tmp_path
):
    """Started while the database is still starting up (containers started together),
    the server does not exit: it answers 503 until the database answers, then serves."""
    proxy = PostgresProxy(pg_database).start()
    try:
        [first] = await asyncio.to_thread(start_servers, tmp_path, 1, proxy.url, FAST_ENV)
        stop_server(first)  # the database is migrated, with the demo loaded
        proxy.set_mode("starting up")
        server = await asyncio.to_thread(start_server_only, tmp_path, first.env)
        try:
            async with client_for(server) as client:
                assert_friendly_503(await client.get("/sign-in"))
                proxy.set_mode("forward")
                await incident_logged_once(server, None)
                assert (await client.get("/sign-in")).status_code == 200
        finally:
            stop_server(server)
    finally:
        proxy.stop()


def start_server_only(var_dir: Path, env: dict[str, str]) -> Server:
    """`portal serve` on a database already migrated (no migrate, no demo)."""
    import subprocess
    import sys
    import urllib.request

    from portal.testing import free_port

    port = free_port()
    env = {**env, "PORT": str(port)}
    log = open(var_dir / "server.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(port=port, var_dir=var_dir, process=process, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, (var_dir / "server.log").read_text()
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/healthz", headers={"Host": "localhost"}
            )
            urllib.request.urlopen(req, timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not start:\n" + (var_dir / "server.log").read_text())


@postgres_only
async def test_too_many_clients_answers_503(tmp_path):
    """The database refuses connections beyond its limit ("too many connections"): a
    dedicated role allowed 2 connections, the app's pool wanting 3 under load. The
    requests that need a third connection answer 503; the others are served."""
    admin_url = os.environ["DATABASE_URL"]
    role = f"portal_limited_{uuid.uuid4().hex[:8]}"
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 2')
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
        parts = urlparse(admin_url)
        url = urlunparse(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
        url = urlunparse(urlparse(url)._replace(path=f"/{name}"))
        [server] = await asyncio.to_thread(start_servers, tmp_path, 1, url, FAST_ENV)
        try:
            async with signed_in(server) as client:
                browsing = Browsing(client, loops=8)
                await asyncio.sleep(3)
                await browsing.stop()
                statuses = browsing.statuses()
                assert set(statuses) <= {200, 303, 503}, sorted(set(statuses))
                assert statuses.count(503) and statuses.count(200)
                for _, response in browsing.answers:
                    if response.status_code == 503:
                        assert_friendly_503(response)
                text = await incident_logged_once(server)
                assert "TooManyConnectionsError" in text
                print(
                    f"\n{len(statuses)} requests with 2 connections allowed: "
                    f"{statuses.count(200)} served, {statuses.count(503)} answered 503"
                )
        finally:
            stop_server(server)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


@postgres_only
async def test_an_exhausted_pool_answers_503_after_the_wait_not_never(proxied, pg_database):
    """Every pooled connection is busy (their queries wait on a lock held elsewhere): a
    request that finds none free within PORTAL_DB_WAIT_SECONDS (1 s here) answers 503
    instead of waiting without end; the requests holding connections finish when the lock
    goes, and the app serves again."""
    proxy, server = proxied
    async with signed_in(server) as client:
        locker = await asyncpg.connect(pg_database)
        try:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE tenant IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            requests = [asyncio.create_task(client.get("/invoices")) for _ in range(8)]
            done, _ = await asyncio.wait(requests, timeout=4)
            waited = time.monotonic() - started
            refused = [t.result() for t in done]
            assert len(refused) >= 5, f"only {len(refused)} answered within {waited:.1f} s"
            for response in refused:
                assert_friendly_503(response)
            await transaction.rollback()
        finally:
            await locker.close()
        held = await asyncio.gather(*requests)
        assert {r.status_code for r in held} <= {200, 503}
        assert [r.status_code for r in held].count(200) >= 1  # the ones holding connections
        await incident_logged_once(server)
        await assert_serves_at_full_pool(client)


# --- SQLite -------------------------------------------------------------------------------


async def forgot_password(client: httpx.AsyncClient) -> httpx.Response:
    """Ask for a password reset (it writes: the throttle's count, the request)."""
    token = CSRF_FIELD.search((await client.get("/forgot")).text).group(1)
    return await client.post("/forgot", data={"_csrf_token": token, "email": JANE_EMAIL})


@sqlite_only
async def test_sqlite_locked_past_the_wait_answers_503_and_reads_go_on(tmp_path):
    """Another program holds SQLite's write lock (a backup, a long import): a write waits
    PORTAL_DB_WAIT_SECONDS (1 s here) and answers 503; pages that only read are served
    meanwhile (WAL); once the lock goes, writes work again. Logged once."""
    server = await asyncio.to_thread(start_server, tmp_path, FAST_ENV)
    try:
        async with client_for(server) as client:
            path = server.env["DATABASE_URL"].removeprefix("sqlite:///")
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                started = time.monotonic()
                response = await forgot_password(client)
                assert time.monotonic() - started < 5
                assert_friendly_503(response)
                assert (await client.get("/sign-in")).status_code == 200
            finally:
                other.execute("ROLLBACK")
                other.close()
            response = await forgot_password(client)
            assert response.status_code == 200 and "sent you a link" in response.text
        text = await incident_logged_once(server, None)
        assert "database is locked" in text
    finally:
        stop_server(server)


@sqlite_only
async def test_sqlite_file_that_cannot_be_opened_answers_503(tmp_path):
    """The database's directory disappears (a volume unmounted): what needs a new
    connection — every transaction opens one; here an administrator sending a staff
    member a password reset link — answers 503, not a 500, changes nothing, and works
    again once it is back."""
    from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, OFFICE_EMAIL

    (tmp_path / "db").mkdir()
    path = tmp_path / "db" / "portal.sqlite3"
    env = {**FAST_ENV, "DATABASE_URL": f"sqlite:///{path}"}
    server = await asyncio.to_thread(start_server, tmp_path, env)
    try:
        async with client_for(server) as admin:
            token = CSRF_FIELD.search((await admin.get("/office/sign-in")).text).group(1)
            r = await admin.post(
                "/office/sign-in",
                data={"_csrf_token": token, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            )
            assert r.status_code == 303, r.text[:300]
            page = (await admin.get("/office/staff")).text
            staff_id = page.split(OFFICE_EMAIL)[1].split("/office/staff/")[1].split("/")[0]
            token = CSRF_FIELD.search(page).group(1)

            async def send_link() -> httpx.Response:
                return await admin.post(
                    f"/office/staff/{staff_id}/reset-link", data={"_csrf_token": token}
                )

            (tmp_path / "db").rename(tmp_path / "db-away")
            try:
                assert_friendly_503(await send_link())
            finally:
                (tmp_path / "db-away").rename(tmp_path / "db")
            with sqlite3.connect(path) as db:
                assert db.execute("SELECT count(*) FROM staff_token").fetchone() == (0,)
            assert (await send_link()).status_code == 303
        text = await incident_logged_once(server, None)
        assert "unable to open database file" in text
    finally:
        stop_server(server)


# --- what is not an outage ----------------------------------------------------------------


def test_errors_outside_the_database_layer_are_not_outages():
    """An OSError from anything but the database driver (a file, the network) is a bug
    to see: not an outage. The same OSError from the driver is one."""
    assert not outage.unavailable_in(OSError("No space left on device"))
    assert not outage.unavailable_in(ValueError("bad"))
    with pytest.raises(outage.DatabaseUnavailable) as caught, outage.translated():
        raise ConnectionRefusedError(111, "Connection refused")
    assert outage.unavailable_in(RuntimeError("later")) is False
    assert outage.unavailable_in(caught.value)
    with pytest.raises(ValueError), outage.translated():
        raise ValueError("a wrong query is not an outage")
    with pytest.raises(outage.DatabaseUnavailable), outage.translated():
        raise sqlite3.OperationalError("database is locked")
    with pytest.raises(sqlite3.OperationalError), outage.translated():
        raise sqlite3.OperationalError("no such table: tenant")


async def test_a_bug_is_still_a_500_with_its_traceback_logged(app, demo, caplog, monkeypatch):
    """Fault injection: the sign-in page's tenant lookup raises an OSError that is not the
    database's. The customer gets the generic 500 page; the log gets the traceback."""
    from portal.auth import context
    from tests.support.http import make_client

    async def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(context.queries, "tenant_by_host", broken)
    async with make_client(app) as client:
        response = await client.get("/sign-in")
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert any(
        r.levelname == "ERROR" and r.exc_info and "OSError" in repr(r.exc_info[1])
        for r in caplog.records
    )


@postgres_only
async def test_a_connection_dropped_between_two_statements_of_a_request_is_replaced(
    app, demo, database_url
):
    """A request keeps one pooled connection for its statements (issue 18). When the
    server drops it between two of them (a restart, an outage's first second), asyncpg
    takes it back into the pool by itself; the request's next statement used the dead
    handle and failed with "connection has been released back to the pool" — a 500 in
    the outage tests on CI. It now takes a live connection."""
    from portal.db import fast
    from portal.db.engine import one_connection_per_request

    async with one_connection_per_request():
        [row] = await fast.fetch("SELECT pg_backend_pid() AS pid")
        other = await asyncpg.connect(database_url)
        try:
            await other.execute("SELECT pg_terminate_backend($1)", row["pid"])
        finally:
            await other.close()
        await asyncio.sleep(0.3)  # asyncpg sees the socket close and detaches the handle
        [again] = await fast.fetch("SELECT pg_backend_pid() AS pid")
    assert again["pid"] != row["pid"]

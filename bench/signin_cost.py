"""What one sign-in answer costs the server: CPU, statements and bytes per request, for the
answers a sign-in storm gets, beside the Invoices fragment.

    .venv/bin/python -m bench.signin_cost [--database-url sqlite|postgresql://…/name] [--n 200]
    .venv/bin/python -m bench.signin_cost --profile busy   # and cProfile's top functions

The app runs in this process (create_app, the settings a server gets from its
environment, JSON request logs written to a file, metrics on), on a database of its own
(SQLite file, or the PostgreSQL database named, made and dropped here; never `test`),
with the demo and the bench business loaded by the `portal` command. Requests are raw
ASGI calls (no HTTP client, no sockets: the HTTP parsing a server adds is the same for
every kind and left out), one at a time, `--n` of each kind after a warm-up:

- throttled: a wrong password for an email already over its limit (429, refused before
  hashing);
- busy: a sign-in while the hashing lane is full (503 "busy"); the lane is held by two
  jobs that wait on an event (no CPU), so nothing else runs meanwhile;
- wrong: a wrong password for an unknown email, from a new address each time (422, one
  argon2 verify at the production cost: the hash is most of it);
- invoices: the signed-in Invoices fragment (htmx partial).

Each kind JS off (the whole page) and with htmx (the form's block), except invoices.
CPU = this process's CPU clock (every thread, the hashing threads included) plus, on
PostgreSQL, the CPU of the database's backends, divided by the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import (
    BENCH_EMAIL,
    BENCH_HOST,
    BENCH_PASSWORD,
    CpuMeter,
    analyze,
    bench_business,
    drop_postgres_database,
    recreate_postgres_database,
    table,
)

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
FRAGMENT = [(b"hx-request", b"true"), (b"hx-request-type", b"partial")]


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def cookies(self) -> dict[str, str]:
        found = {}
        for key, value in self.headers:
            if key.lower() == b"set-cookie":
                name, _, rest = value.decode().partition("=")
                found[name] = rest.split(";", 1)[0]
        return found


class Caller:
    """Raw ASGI requests to the app on the business's host."""

    def __init__(self, app: Any, host: str) -> None:
        self.app = app
        self.host = host
        self.cookies: dict[str, str] = {}
        self.token = ""

    async def call(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        client: str = "",
    ) -> Answer:
        body = urlencode(form).encode() if form is not None else b""
        all_headers = [(b"host", f"{self.host}.localhost".encode())]
        if form is not None:
            all_headers.append((b"content-type", b"application/x-www-form-urlencoded"))
            all_headers.append((b"content-length", str(len(body)).encode()))
        if self.cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            all_headers.append((b"cookie", cookie.encode()))
        if client:
            all_headers.append((b"x-forwarded-for", client.encode()))
        all_headers += headers or []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": all_headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status, out_headers, chunks = 0, [], []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status, out_headers = message["status"], list(message.get("headers") or [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return Answer(status, out_headers, b"".join(chunks))

    async def csrf(self) -> None:
        page = await self.call("GET", "/sign-in")
        self.cookies.update(page.cookies())
        match = CSRF.search(page.body.decode())
        assert match, page.status
        self.token = match.group(1)

    async def sign_in(self, email: str, password: str, client: str, htmx: bool) -> Answer:
        form = {"_csrf_token": self.token, "email": email, "password": password}
        return await self.call("POST", "/sign-in", form, FRAGMENT if htmx else None, client=client)


class StatementCounter:
    """Statements sent through Piccolo's engine and db/fast.py (if the tree has it)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        from portal.db.engine import current_engine

        engine_type = type(current_engine())
        real_run = engine_type.run_querystring
        counter = self

        async def run_querystring(self: Any, querystring: Any, in_pool: bool = True) -> Any:
            counter.count += 1
            return await real_run(self, querystring, in_pool)

        engine_type.run_querystring = run_querystring  # type: ignore[method-assign]
        try:
            from portal.db import fast
        except ImportError:
            return
        real_fetch = fast.fetch

        async def fetch(sql: str, *args: Any) -> Any:
            counter.count += 1
            return await real_fetch(sql, *args)

        fast.fetch = fetch  # type: ignore[assignment]
        for module in list(sys.modules.values()):  # modules that imported it by name
            if getattr(module, "fetch", None) is real_fetch and module is not fast:
                module.fetch = fetch  # type: ignore[attr-defined]


@dataclass
class Row:
    kind: str
    statuses: dict[int, int]
    cpu_ms: float
    app_ms: float
    db_ms: float
    statements: float
    bytes: float
    wall_ms: float


async def measure(
    name: str,
    n: int,
    one: Callable[[int], Any],
    counter: StatementCounter,
    database_url: str,
    profile: bool,
) -> Row:
    for i in range(5):  # warm-up (templates compiled, connections open)
        await one(-1 - i)
    meter = CpuMeter([], database_url)
    statuses: dict[int, int] = {}
    sizes = 0
    profiler = cProfile.Profile() if profile else None
    counter.count = 0
    await asyncio.to_thread(meter.start)  # (it asks PostgreSQL for its backends' pids)
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for i in range(n):
        answer = await one(i)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        sizes += len(answer.body)
    if profiler:
        profiler.disable()
    app_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
    database = (await asyncio.to_thread(meter.stop)).database
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        print(f"--- cProfile: {name} ({n} requests) ---\n{out.getvalue()}")
    return Row(
        kind=name,
        statuses=statuses,
        cpu_ms=(app_s + database) * 1000 / n,
        app_ms=app_s * 1000 / n,
        db_ms=database * 1000 / n,
        statements=counter.count / n,
        bytes=sizes / n,
        wall_ms=wall_s * 1000 / n,
    )


def portal_command(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "portal.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


class HeldLane:
    """The hashing lane full: one job running and one queued, both waiting on an event
    (no CPU), so that every sign-in meanwhile is answered busy."""

    def __init__(self) -> None:
        from portal.auth.passwords import LANE

        self.lane = LANE
        self.gate = threading.Event()
        self.jobs: list[asyncio.Future[Any]] = []

    async def __aenter__(self) -> HeldLane:
        self.saved = (self.lane.threads, self.lane.max_wait, self.lane.seconds_per_hash)
        self.lane.configure(threads=1, max_wait=0.05)
        self.lane.seconds_per_hash = 1.0  # the expected wait always past the bound
        started = threading.Event()

        def hold() -> None:
            started.set()
            self.gate.wait(600)

        for _ in range(2):
            self.jobs.append(asyncio.ensure_future(self.lane.run("192.0.2.250", hold)))
            await asyncio.sleep(0)
        assert await asyncio.to_thread(started.wait, 30), "the lane never took the job"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.gate.set()
        await asyncio.gather(*self.jobs, return_exceptions=True)
        threads, max_wait, per_hash = self.saved
        self.lane.configure(threads=threads, max_wait=max_wait)
        self.lane.seconds_per_hash = per_hash


def prepare(database_url: str, var: Path) -> dict[str, str]:
    """Migrate, load the demo and the bench business, ANALYZE; the environment a server
    would get."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(var),
        "PORTAL_SECRET_KEY": "bench-secret-key-not-for-production",
        "PORTAL_MAIL_WORKER": "0",
        "PORTAL_TRUSTED_PROXIES": "127.0.0.1",
    }
    portal_command(env, "migrate", "--quiet")
    portal_command(env, "demo")
    data = var / "bench.json"
    data.write_text(json.dumps(bench_business()))
    portal_command(env, "import", str(data))
    analyze(database_url)
    return env


async def run(env: dict[str, str], n: int, profile: set[str], var: Path) -> list[Row]:
    from portal import logs
    from portal.app import create_app
    from portal.config import Settings
    from portal.db import engine as db_engine

    database_url = env["DATABASE_URL"]
    settings = Settings.from_env(env)
    log_file = open(var / "server.log", "w")  # noqa: ASYNC230, SIM115 - the app's log
    real_stderr, sys.stderr = sys.stderr, log_file
    try:
        logs.configure(settings)
    finally:
        sys.stderr = real_stderr
    app = create_app(settings)
    engine = db_engine.current_engine()
    await db_engine.start(engine)
    counter = StatementCounter()
    counter.install()
    rows: list[Row] = []
    try:
        visitor = Caller(app, BENCH_HOST)
        await visitor.csrf()
        pat = Caller(app, BENCH_HOST)
        await pat.csrf()
        signed = await pat.sign_in(BENCH_EMAIL, BENCH_PASSWORD, "198.51.100.7", htmx=False)
        assert signed.status == 303, signed.status
        pat.cookies.update(signed.cookies())

        locked = "locked@bench.example"
        for i in range(11):  # over the per-email limit (10), from addresses of their own
            await visitor.sign_in(locked, "wrong-guess", f"198.18.0.{i + 1}", htmx=False)

        def client_of(i: int) -> str:
            i += 1000
            return f"10.{(i // 40) // 250}.{(i // 40) % 250}.{i % 40 + 1}"  # ≤ 40 per address

        kinds: list[tuple[str, Callable[[int], Any]]] = []
        for htmx in (False, True):
            suffix = " (htmx)" if htmx else " (JS off)"

            def throttled(i: int, htmx: bool = htmx) -> Any:
                return visitor.sign_in(locked, "wrong-guess", client_of(i), htmx)

            def busy(i: int, htmx: bool = htmx) -> Any:
                return visitor.sign_in(BENCH_EMAIL, BENCH_PASSWORD, client_of(i), htmx)

            def wrong(i: int, htmx: bool = htmx, suffix: str = suffix) -> Any:
                tag = "h" if htmx else "p"
                return visitor.sign_in(f"guess{tag}{i}@bench.example", "wrong", client_of(i), htmx)

            kinds += [(f"throttled{suffix}", throttled), (f"busy{suffix}", busy)]
            kinds += [(f"wrong{suffix}", wrong)]

        def invoices(i: int) -> Any:
            return pat.call("GET", "/invoices", headers=FRAGMENT)

        kinds.append(("invoices fragment", invoices))
        for name, one in kinds:
            count = max(10, n // 10) if name.startswith("wrong") else n
            wanted = any(name.startswith(p) for p in profile)
            if name.startswith("busy"):
                async with HeldLane():
                    rows.append(await measure(name, count, one, counter, database_url, wanted))
            else:
                rows.append(await measure(name, count, one, counter, database_url, wanted))
    finally:
        await db_engine.stop(engine)
        log_file.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="sqlite")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--profile", default="", help="kinds to cProfile, comma-separated")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="portal-signin-cost-"))
    url = args.database_url
    if url == "sqlite":
        url = f"sqlite:///{var / 'portal.sqlite3'}"
    else:
        recreate_postgres_database(url)
    try:
        profile = {p for p in args.profile.split(",") if p}
        rows = asyncio.run(run(prepare(url, var), args.n, profile, var))
    finally:
        if not url.startswith("sqlite"):
            drop_postgres_database(url)
    print(f"{url.split(':', 1)[0]}; load average {os.getloadavg()}")
    print(
        table(
            [
                [
                    r.kind,
                    ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items())),
                    f"{r.cpu_ms:.2f}",
                    f"{r.app_ms:.2f}",
                    f"{r.db_ms:.2f}",
                    f"{r.statements:.1f}",
                    f"{r.bytes:.0f}",
                    f"{r.wall_ms:.2f}",
                ]
                for r in rows
            ],
            [
                "request",
                "answers",
                "CPU ms",
                "app ms",
                "db ms",
                "statements",
                "bytes",
                "wall ms",
            ],
        )
    )


if __name__ == "__main__":
    main()

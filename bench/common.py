"""Shared pieces of the benchmarks: a real server with a bench business, and Chromium
driven through Playwright with the DevTools protocol for byte counts and throttling."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from portal.testing import CHROMIUM_ARGS, Server, chromium_path, start_server, stop_server

BENCH_HOST = "benchco"
BENCH_EMAIL = "pat@bench.example"
BENCH_PASSWORD = "bench-portal-pass"
OPEN_INVOICES = 25  # a 25-row Invoices tab
PAID_INVOICES = 40


def bench_business(today: date | None = None) -> dict[str, Any]:
    """An import file: one business (with the demo's 50 px logo) whose customer Pat has
    25 unpaid invoices, 40 paid ones over two locations, a membership with visits, and a
    portal account."""
    today = today or date.today()
    jobs, invoices, payments = [], [], []
    for n in range(OPEN_INVOICES + PAID_INVOICES):
        day = today - timedelta(days=3 + n * 9)
        done = datetime(day.year, day.month, day.day, 17, tzinfo=UTC).isoformat()
        unit = ["PL", "HV", "EL"][n % 3]
        jobs.append(
            {
                "number": f"J{n:03}",
                "customer": "C1",
                "location": ["L1", "L2"][n % 2],
                "business_unit": unit,
                "summary": ["Drain cleared", "AC tune-up", "Outlet replaced"][n % 3],
                "status": "completed",
                "completed_at": done,
            }
        )
        invoices.append(
            {
                "number": f"B-{10000 + n}",
                "job": f"J{n:03}",
                "date": day.isoformat(),
                "due_date": (day + timedelta(days=30)).isoformat(),
                "lines": [
                    {"description": "Service call", "unit_price_cents": 8900},
                    {
                        "description": "Labor (hours)",
                        "quantity": 1.5,
                        "unit_price_cents": 9800 + n * 10,
                    },
                ],
            }
        )
        if n >= OPEN_INVOICES:
            payments.append(
                {
                    "reference": f"P{n}",
                    "customer": "C1",
                    "paid_at": done,
                    "card_brand": "Visa",
                    "card_last4": "4242",
                    "allocations": [
                        {
                            "invoice": f"B-{10000 + n}",
                            "amount_cents": 8900 + int(1.5 * (9800 + n * 10)),
                        }
                    ],
                }
            )
    accepted = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    from portal.demo import _logo_png  # a real business has a logo (it can shift the layout)

    return {
        "format": "portal-import/1",
        "business": {
            "logo_png_base64": _logo_png(),
            "host": BENCH_HOST,
            "name": "Bench Heating & Plumbing",
            "email": "help@bench.example",
            "phone": "(555) 010-9000",
            "portal": {
                "enabled": True,
                "legal_accepted_by": "boss@bench.example",
                "legal_accepted_at": accepted,
                "scheduler_enabled": True,
                "service_types": ["Plumbing repair", "HVAC tune-up"],
                "memberships_enabled": True,
                "recurring_service_message": "Two tune-ups a year are included.",
                "payment_account": "sandbox_acct_bench",
                "payments_enabled": True,
            },
        },
        "business_units": [
            {"id": "PL", "name": "Plumbing"},
            {"id": "HV", "name": "HVAC"},
            {"id": "EL", "name": "Electrical"},
        ],
        "staff": [{"email": "boss@bench.example", "role": "admin", "password": "bench-admin-pass"}],
        "customers": [
            {
                "id": "C1",
                "name": "Pat Bench",
                "emails": [BENCH_EMAIL],
                "locations": [
                    {
                        "id": "L1",
                        "name": "Home",
                        "street": "1 Bench Street",
                        "city": "Springfield",
                        "state": "IL",
                        "zip": "62701",
                    },
                    {
                        "id": "L2",
                        "name": "Rental",
                        "street": "2 Bench Street",
                        "city": "Springfield",
                        "state": "IL",
                        "zip": "62701",
                    },
                ],
                "portal_account": {"email": BENCH_EMAIL, "password": BENCH_PASSWORD},
            }
        ],
        "jobs": jobs,
        "invoices": invoices,
        "payments": payments,
        "memberships": [
            {
                "id": "M1",
                "customer": "C1",
                "location": "L1",
                "type": "Comfort Club",
                "status": "active",
                "start_date": (today - timedelta(days=100)).isoformat(),
                "card": {"brand": "Visa", "last4": "1111"},
                "visits": [
                    {
                        "date": (today + timedelta(days=20 + 90 * k)).isoformat(),
                        "description": "Seasonal tune-up",
                    }
                    for k in range(3)
                ],
            }
        ],
    }


@contextmanager
def bench_server(
    extra_env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> Iterator[Server]:
    """A `portal serve` process (SQLite unless `extra_env` names another database; demo +
    bench business) for one benchmark run. `prefix` wraps the command (e.g. taskset)."""
    var_dir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    server = start_server(var_dir, {"PORTAL_MAIL_WORKER": "0", **(extra_env or {})}, prefix)
    try:
        data = var_dir / "bench.json"
        data.write_text(json.dumps(bench_business()))
        result = server.cli("import", str(data))
        assert result.returncode == 0, result.stderr
        analyze(server.env["DATABASE_URL"])
        yield server
    finally:
        stop_server(server)


def sign_in_cookie(
    server: Server,
    host: str = BENCH_HOST,
    email: str = BENCH_EMAIL,
    password: str = BENCH_PASSWORD,
    path: str = "/sign-in",
) -> str:
    """A signed-in session cookie (`Cookie:` header value): the bench customer by
    default; `path="/office/sign-in"` signs office staff in."""
    import re

    import httpx

    headers = {"Host": f"{host}.localhost:{server.port}"}
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers=headers, timeout=120
    ) as client:  # the first sign-in on a cold 1 M-invoice database takes a while
        page = client.get(path).text
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page).group(1)
        response = client.post(
            path, data={"_csrf_token": token, "email": email, "password": password}
        )
        assert response.status_code == 303, response.text
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


def admin_url(url: str = POSTGRES_SERVER) -> str:
    """The `postgres` admin database of the server `url` names: where bench databases are
    created and dropped (never `test`, which the test suites use)."""
    from urllib.parse import urlparse, urlunparse

    return urlunparse(urlparse(url)._replace(path="/postgres"))


def _admin(url: str, *statements: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_url(url))
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _name(url: str) -> str:
    from urllib.parse import urlparse

    name = urlparse(url).path.lstrip("/")
    assert name and name not in ("test", "postgres"), f"not a bench database: {url}"
    return name


def recreate_postgres_database(url: str) -> None:
    """Drop (if there) and create the bench database `url` names."""
    name = _name(url)
    _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def drop_postgres_database(url: str) -> None:
    _admin(url, f'DROP DATABASE IF EXISTS "{_name(url)}" WITH (FORCE)')


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database of its own name for a benchmark (dropped afterwards)."""
    url = f"{POSTGRES_SERVER}/{name}"
    recreate_postgres_database(url)
    try:
        yield url
    finally:
        drop_postgres_database(url)


def analyze(database_url: str) -> None:
    """ANALYZE the whole database, as a deployment does after an import: benchmarks on
    PostgreSQL without statistics measure plans no production database runs."""
    execute(database_url, "ANALYZE")


def execute(database_url: str, sql: str) -> None:
    """Run one statement on a bench database."""
    if database_url.startswith("sqlite"):
        import sqlite3

        from portal.db.engine import sqlite_path

        conn = sqlite3.connect(sqlite_path(database_url))
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
        return
    _admin_on(database_url, sql)


def _admin_on(database_url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def query(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of a read the bench makes itself (ids to ask for), with `?` placeholders."""
    if database_url.startswith("sqlite"):
        import sqlite3

        from portal.db.engine import sqlite_path

        conn = sqlite3.connect(sqlite_path(database_url))
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()
    import asyncio

    import asyncpg

    from portal.db.fast import driver_sql

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(driver_sql(sql.replace("?", "{}"), "postgres"), *args)
            return [dict(r.items()) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(run())


def bench_url(server: Server, path: str = "/") -> str:
    return f"http://{BENCH_HOST}.localhost:{server.port}{path}"


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Traffic:
    """Requests seen through the DevTools protocol, with the bytes each put on the wire."""

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def attach(self, cdp: Any) -> None:
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.requestServedFromCache", self._cached)
        cdp.on("Network.loadingFinished", self._finished)

    def _sent(self, e: dict[str, Any]) -> None:
        req = e["request"]
        body = req.get("postData") or ""
        self.requests[e["requestId"]] = {
            "url": req["url"],
            "method": req["method"],
            "bytes": 0,
            "cached": False,
            "upload": len(body.encode()),
            "status": None,
            "encoding": "",
        }

    def _response(self, e: dict[str, Any]) -> None:
        r = self.requests.get(e["requestId"])
        if r is not None:
            r["status"] = e["response"]["status"]
            headers = {k.lower(): v for k, v in e["response"].get("headers", {}).items()}
            r["encoding"] = headers.get("content-encoding", "")
            r["cached"] = r["cached"] or bool(e["response"].get("fromDiskCache"))

    def _cached(self, e: dict[str, Any]) -> None:
        r = self.requests.get(e["requestId"])
        if r is not None:
            r["cached"] = True

    def _finished(self, e: dict[str, Any]) -> None:
        r = self.requests.get(e["requestId"])
        if r is not None:
            r["bytes"] = int(e.get("encodedDataLength", 0))

    def reset(self) -> None:
        self.requests.clear()

    @property
    def network(self) -> list[dict[str, Any]]:
        """Requests that went over the network (not answered from the cache)."""
        return [
            r
            for r in self.requests.values()
            if not r["cached"] and not r["url"].startswith("data:")
        ]

    @property
    def total_bytes(self) -> int:
        return sum(r["bytes"] for r in self.network)

    @property
    def upload_bytes(self) -> int:
        return sum(r["upload"] for r in self.network)


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile (0–100) by linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[
        max(0, min(98, int(pct) - 1))
    ]


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A Markdown table (what the scripts print and docs/performance.md records)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)) + " |"
        for r in rows
    ]
    return "\n".join([line, sep, *body])


# --- server CPU from /proc ----------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _sched_cpu(pid: int) -> float:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue  # a thread that just ended
    return total / 1e9


def postgres_backends(database_url: str) -> list[int]:
    """Pids of the PostgreSQL client backends connected to the database `database_url`
    names (asked through the admin database, so the asking connection is not among
    them). The bench databases are the servers' own, so these serve our servers."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        return []
    rows = query(
        admin_url(database_url),
        "SELECT pid FROM pg_stat_activity WHERE datname = ? AND backend_type = 'client backend'",
        _name(database_url),
    )
    return [r["pid"] for r in rows]


@dataclass
class CpuReading:
    app: float  # seconds
    database: float


class CpuMeter:
    """CPU spent by server processes and, on PostgreSQL, by the database backends
    serving them, between `start()` and `stop()` (user + system, every thread).

    `/proc/<pid>/task/*/schedstat` counts nanoseconds but only for live threads;
    `/proc/<pid>/stat` counts every thread the process ever had, in clock ticks (10 ms).
    The first is used unless a thread ended in between (the two then differ by more
    than a tick or two)."""

    def __init__(self, pids: list[int], database_url: str = "") -> None:
        self.pids = pids
        self.database_url = database_url
        self._before: dict[int, tuple[float, float]] = {}

    @staticmethod
    def _read(pid: int) -> tuple[float, float] | None:
        try:
            return _sched_cpu(pid), _stat_cpu(pid)
        except OSError:
            return None  # a backend that ended

    def _all(self) -> tuple[list[int], list[int]]:
        return self.pids, postgres_backends(self.database_url)

    def start(self) -> None:
        apps, backends = self._all()
        self._before = {pid: r for pid in apps + backends if (r := self._read(pid))}

    def stop(self) -> CpuReading:
        apps, backends = self._all()
        spent = {}
        for pid in set(apps + backends) | set(self._before):
            after = self._read(pid)
            if after is None:
                continue
            before = self._before.get(pid, (0.0, 0.0))  # a backend opened during the run
            precise, coarse = after[0] - before[0], after[1] - before[1]
            spent[pid] = precise if abs(precise - coarse) <= 2.5 / CLOCK_TICKS else coarse
        return CpuReading(
            app=sum(v for pid, v in spent.items() if pid in apps),
            database=sum(v for pid, v in spent.items() if pid not in apps),
        )

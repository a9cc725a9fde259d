"""Shared pieces of the benchmarks: a real server with a bench business, and Chromium
driven through Playwright with the DevTools protocol for byte counts and throttling."""

from __future__ import annotations

import json
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
    """An import file: one business whose customer Pat has 25 unpaid invoices, 40 paid
    ones over two locations, a membership with visits, and a portal account."""
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
    return {
        "format": "portal-import/1",
        "business": {
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
        yield server
    finally:
        stop_server(server)


def sign_in_cookie(server: Server) -> str:
    """A signed-in session cookie of the bench customer (`Cookie:` header value)."""
    import re

    import httpx

    headers = {"Host": f"{BENCH_HOST}.localhost:{server.port}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=headers) as client:
        page = client.get("/sign-in").text
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page).group(1)
        response = client.post(
            "/sign-in",
            data={"_csrf_token": token, "email": BENCH_EMAIL, "password": BENCH_PASSWORD},
        )
        assert response.status_code == 303, response.text
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database for a benchmark (dropped afterwards)."""
    import asyncio

    import asyncpg

    admin = "postgresql://postgres@127.0.0.1:5432/test"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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

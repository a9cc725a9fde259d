"""Server CPU per request, from /proc, for every customer tab and the office settings page,
beside requests per second, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.cpu                  # --engines sqlite,postgres --rate 100 --seconds 8

One `portal serve` process (the bench business, ANALYZEd after import; PostgreSQL in a
database of its own, `portal_bench_cpu`) and one bare Litestar hello world
(bench/bare_hello.py: no middleware, served the same way) both pinned to core 0; this
script, the load, on core 1. Each route is requested at a modest fixed rate (open
loop) after a warm-up, in `--rounds` short rounds with the routes in alternation
(forwards, then backwards; each figure the median round, the rounds printed); the CPU
the server process spent meanwhile — and on PostgreSQL the CPU of the database backends
serving it — is read from /proc before and after:

    ms CPU per request = (app CPU + database CPU) ÷ requests answered

"capacity" is what one core would serve at that cost (1000 ÷ ms); "max req/s" is
`wrk` (one thread, 32 connections, on core 1) against the same route, when asked for
(`--max-seconds`, 0 to skip), with the CPU per request at that rate beside it (lower:
a saturated server batches its wake-ups). The targets are judged at the fixed rate. While each route is measured, the bare hello is
requested alongside at 20 a second: its p99 ÷ p50 (the "control") shows how noisy the
machine was during that row, so a reader can judge the route's own p99 ÷ p50.

Targets (issue 18): every customer tab ≤ 1.5 × the Invoices fragment's CPU per request;
the Invoices fragment ≥ 0.3 × the portal's hello world on SQLite and ≥ 0.25 on
PostgreSQL (hello CPU ÷ fragment CPU, app plus database).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common, loadgen
from bench.common import BENCH_HOST, CpuMeter, bench_server, postgres_database, sign_in_cookie
from bench.loadgen import build_request, open_loop
from bench.throughput import wrk
from portal.testing import free_port

CONTROL_RATE = 20
FRAGMENT = {"HX-Request": "true", "HX-Request-Type": "partial"}
HELLO_TARGET = {"SQLite": 0.3, "PostgreSQL": 0.25}
TAB_TARGET = 1.5


@dataclass
class Route:
    name: str
    path: str
    headers: dict[str, str]
    who: str = "customer"  # customer | staff | nobody | bare


@dataclass
class Figures:
    route: Route
    count: int
    rate: float
    app_ms: float
    db_ms: float
    p50: float
    p99: float
    control_p50: float
    control_p99: float
    max_rps: float | None
    max_cpu_ms: float | None

    @property
    def cpu_ms(self) -> float:
        return self.app_ms + self.db_ms


def start_bare_hello(prefix: list[str]) -> tuple[int, subprocess.Popen]:
    """The bare Litestar hello world on a free port (bench/bare_hello.py)."""
    port = free_port()
    log = open(Path(tempfile.mkdtemp(prefix="bare-hello-")) / "server.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "bench.bare_hello", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_hello", timeout=1)
            return port, process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the bare hello world did not start")


def routes(database_url: str) -> list[Route]:
    """Every customer view (as the htmx fragment a tab switch fetches, Invoices also
    whole), the office settings page, the portal's hello and the bare hello."""
    pat = common.query(
        database_url,
        """SELECT c.id, c.tenant FROM customer c JOIN tenant t ON t.id = c.tenant
           WHERE t.host = ? AND c.name = 'Pat Bench'""",
        BENCH_HOST,
    )[0]
    location = common.query(
        database_url, "SELECT min(id) AS id FROM location WHERE customer = ?", pat["id"]
    )[0]["id"]
    membership = common.query(
        database_url, "SELECT min(id) AS id FROM membership WHERE customer = ?", pat["id"]
    )[0]["id"]
    payment = common.query(
        database_url,
        "SELECT max(id) AS id FROM payment WHERE customer = ? AND status = 'succeeded'",
        pat["id"],
    )[0]["id"]
    invoice = common.query(
        database_url,
        "SELECT max(invoice) AS id FROM payment_allocation WHERE payment = ?",
        payment,
    )[0]["id"]
    return [
        Route("Invoices fragment", "/invoices", FRAGMENT),
        Route("Invoices, whole page", "/invoices", {}),
        Route("History", "/history", FRAGMENT),
        Route("A location's history", f"/history?location={location}", FRAGMENT),
        Route("Memberships", "/memberships", FRAGMENT),
        Route("A membership's visits", f"/memberships/{membership}", FRAGMENT),
        Route("Scheduler", "/schedule", FRAGMENT),
        Route("An invoice page", f"/invoices/{invoice}", FRAGMENT),
        Route("The receipt", f"/payments/{payment}", FRAGMENT),
        Route("Office settings page", "/office/settings", {}, who="staff"),
        Route("Portal hello world (/_hello)", "/_hello", {}, who="nobody"),
        Route("Bare Litestar hello world", "/_hello", {}, who="bare"),
    ]


async def measure_one(
    port: int, request: bytes, control: bytes, control_port: int, rate: float, seconds: float
) -> tuple[loadgen.Result, loadgen.Result]:
    """The route at `rate` and, alongside, the bare hello at CONTROL_RATE."""
    return await asyncio.gather(
        open_loop(port, request, rate, seconds, connections=16),
        open_loop(control_port, control, CONTROL_RATE, seconds, connections=2),
    )


def run(engine: str, env: dict[str, str], args: argparse.Namespace) -> list[Figures]:
    pin = ["taskset", "-c", "0"]
    bare_port, bare = start_bare_hello(pin)
    try:
        with bench_server(env, prefix=pin) as server:
            database_url = server.env["DATABASE_URL"]
            host = f"{BENCH_HOST}.localhost:{server.port}"
            cookies = {
                "customer": sign_in_cookie(server),
                "staff": sign_in_cookie(
                    server,
                    email="boss@bench.example",
                    password="bench-admin-pass",
                    path="/office/sign-in",
                ),
                "nobody": "",
            }
            control = build_request("/_hello", {"Host": "localhost", "Connection": "keep-alive"})
            prepared = []
            for route in routes(database_url):
                port = bare_port if route.who == "bare" else server.port
                headers = {
                    "Host": "localhost" if route.who == "bare" else host,
                    "Accept-Encoding": "br, gzip",
                    "Connection": "keep-alive",
                    **route.headers,
                }
                if cookies.get(route.who):
                    headers["Cookie"] = cookies[route.who]
                request = build_request(route.path, headers)
                pids = [bare.pid] if route.who == "bare" else [server.process.pid]
                meter = CpuMeter(pids, "" if route.who == "bare" else database_url)
                prepared.append((route, port, headers, request, meter))
                loadgen.run(open_loop(port, request, args.rate, 1.5, connections=16))  # warm up
            # Every route measured in args.rounds short rounds, in turn forwards and
            # backwards, each figure the median of its rounds: one pass, a route after
            # another, carried the machine's drift (and the new process's warm-up) into
            # the ratios (hello ÷ fragment 0.25 and 0.43 in two runs of the same code).
            rounds: dict[str, list[tuple[loadgen.Result, loadgen.Result, Any]]] = {}
            for n in range(args.rounds):
                for route, port, _, request, meter in prepared[:: 1 if n % 2 == 0 else -1]:
                    meter.start()
                    result, ctl = loadgen.run(
                        measure_one(
                            port, request, control, bare_port, args.rate, args.seconds / args.rounds
                        )
                    )
                    spent = meter.stop()
                    if route.who == "bare":  # the control's own requests ran on this process too
                        spent.app *= result.count / (result.count + ctl.count)
                    assert set(result.statuses) == {200} and not result.errors, (
                        route.path,
                        result.statuses,
                        result.errors,
                    )
                    rounds.setdefault(route.name, []).append((result, ctl, spent))
            out = []
            for route, port, headers, _, meter in prepared:
                measured = rounds[route.name]
                fastest = fastest_cpu = None
                if args.max_seconds:
                    meter.start()
                    found = wrk(port, route.path, headers, args.max_seconds)
                    at_max = meter.stop()
                    fastest = found["rps"]
                    fastest_cpu = (at_max.app + at_max.database) * 1000 / found["requests"]
                app_ms = [spent.app * 1000 / result.count for result, _, spent in measured]
                db_ms = [spent.database * 1000 / result.count for result, _, spent in measured]
                middle = _median_round([a + d for a, d in zip(app_ms, db_ms, strict=True)])
                result, ctl, _ = measured[middle]
                out.append(
                    Figures(
                        route,
                        sum(r.count for r, _, _ in measured),
                        sum(r.rate for r, _, _ in measured) / len(measured),
                        app_ms[middle],
                        db_ms[middle],
                        result.pct(50),
                        result.pct(99),
                        ctl.pct(50),
                        ctl.pct(99),
                        fastest,
                        fastest_cpu,
                    )
                )
                rounds_text = ", ".join(f"{a + d:.2f}" for a, d in zip(app_ms, db_ms, strict=True))
                print(
                    f"  {engine} {route.name}: {out[-1].cpu_ms:.2f} ms CPU/request"
                    f" (rounds: {rounds_text})",
                    flush=True,
                )
            return out
    finally:
        bare.terminate()
        bare.wait(timeout=10)


def _median_round(values: list[float]) -> int:
    """The index of the median of `values` (the lower middle one of an even count)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    return order[(len(values) - 1) // 2]


def report(engine: str, figures: list[Figures]) -> list[list[str]]:
    by_name = {f.route.name: f for f in figures}
    fragment = by_name["Invoices fragment"].cpu_ms
    hello = by_name["Portal hello world (/_hello)"].cpu_ms
    bare = by_name["Bare Litestar hello world"].cpu_ms
    rows = []
    for f in figures:
        name = f.route.name
        if name == "Invoices fragment":
            ratio = hello / fragment
            wanted = HELLO_TARGET[engine]
            target = (
                f"hello ÷ fragment = {ratio:.2f} (≥ {wanted}: {'yes' if ratio >= wanted else 'NO'})"
            )
        elif name.startswith("Portal hello"):
            target = f"bare ÷ portal hello = {bare / hello:.2f}"
        elif name.startswith("Bare"):
            target = "control"
        else:
            ratio = f.cpu_ms / fragment
            target = f"÷ fragment = {ratio:.2f} (≤ {TAB_TARGET}: {'yes' if ratio <= TAB_TARGET else 'NO'})"
        rows.append(
            [
                engine,
                name,
                f"{f.app_ms:.3f}",
                f"{f.db_ms:.3f}" if engine == "PostgreSQL" else "",
                f"{f.cpu_ms:.3f}",
                f"{1000 / f.cpu_ms:.0f}",
                f"{f.max_rps:.0f}" if f.max_rps else "",
                f"{f.max_cpu_ms:.3f}" if f.max_cpu_ms else "",
                f"{f.count} at {f.rate:.0f}/s",
                f"{f.p50:.1f}",
                f"{f.p99:.1f}",
                f"{f.p99 / f.p50:.1f}",
                f"{f.control_p99 / f.control_p50:.1f}",
                target,
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--rate", type=float, default=100, help="requests a second per route")
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per route")
    parser.add_argument(
        "--rounds", type=int, default=4, help="rounds each route is measured in, alternating"
    )
    parser.add_argument("--max-seconds", type=int, default=5, help="wrk seconds (0: skip)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the load on core 1; the servers on core 0
    rows: list[list[str]] = []
    if "sqlite" in args.engines:
        rows += report("SQLite", run("SQLite", {}, args))
    if "postgres" in args.engines:
        with postgres_database("portal_bench_cpu") as url:
            rows += report("PostgreSQL", run("PostgreSQL", {"DATABASE_URL": url}, args))
    print()
    print(
        common.table(
            rows,
            [
                "engine",
                "route",
                "app ms",
                "db ms",
                "CPU ms/req",
                "capacity/core",
                "max req/s",
                "CPU ms/req at max",
                "requests",
                "p50 ms",
                "p99 ms",
                "p99÷p50",
                "control p99÷p50",
                "target",
            ],
        )
    )


if __name__ == "__main__":
    main()

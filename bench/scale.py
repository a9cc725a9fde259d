"""Scale: every customer tab, for random customers across businesses and for the biggest
customer, on a small and a 1 M-invoice database, on SQLite and PostgreSQL.

    # once: the data sets (bench/generate.py makes each database anew and ANALYZEs it)
    .venv/bin/python -m bench.generate --database-url postgresql://postgres@127.0.0.1:5432/portal_bench_small --businesses 10
    .venv/bin/python -m bench.generate --database-url postgresql://postgres@127.0.0.1:5432/portal_bench_large --businesses 1000
    .venv/bin/python -m bench.generate --database-url sqlite:///var/bench-small.sqlite3 --businesses 10
    .venv/bin/python -m bench.generate --database-url sqlite:///var/bench-large.sqlite3 --businesses 1000
    # then
    .venv/bin/python -m bench.scale                # --engines SQLite,PostgreSQL --customers 20

Both databases of an engine are served at once, one `portal serve` process each. Signed in over HTTP:
`--customers` ordinary customers drawn at random across all its businesses (10 invoices,
a membership with four visits), and the biggest customer of five businesses (bench0–4:
5,000 invoices at one location, 1,700 unpaid, 20 contracts of 24 visits, 300
appointment requests). Every view a customer has — Invoices, History, a location's
history (first page, and for the biggest customer its 16th page through the keyset
cursor), Memberships, a membership's visits, Scheduler, an invoice, a receipt — is
requested as the htmx fragment a tab switch fetches, 20 a second for 4 s (open loop;
`--rate`, `--seconds`), the requests going round the group's customers. The four groups
of a view (random and biggest, small and 1 M database) are measured in alternation, in
five short rounds each (forwards, then backwards), and each figure is the median of its
rounds: a group measured minutes after another carried the machine's drift into their
ratio (cells moved by up to 0.4 between runs). Measured: server CPU per request from
/proc (app process plus, on PostgreSQL, its database backends; see bench/cpu.py) and
latency p50/p95. CPU is what the ratios use: on a shared two-core machine it moves far
less than latency does.

Targets (issue 18): the biggest customer ≤ 1.2 × a small customer on every tab; the
1 M-invoice database ≤ 1.2 × the small one, on both engines. Printed too: deep ÷ first
History page for the biggest customer.

Then the statements behind each view, for the biggest customer on the 1 M database,
caught in flight (the app runs in this process for that: asyncpg's and sqlite3's
statements recorded as they go) and EXPLAINed: PostgreSQL `EXPLAIN (ANALYZE)`, SQLite
`EXPLAIN QUERY PLAN`. `--explain-only` prints only those.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from bench.common import CpuMeter, sign_in_cookie, table
from bench.generate import BENCH_EMAIL, BENCH_PASSWORD
from bench.loadgen import build_request, open_loop, run
from portal.testing import Server, start_servers, stop_server

DATABASES = {
    "PostgreSQL": (
        "postgresql://postgres@127.0.0.1:5432/portal_bench_small",
        "postgresql://postgres@127.0.0.1:5432/portal_bench_large",
    ),
    "SQLite": ("sqlite:///var/bench-small.sqlite3", "sqlite:///var/bench-large.sqlite3"),
}
BIG_HOSTS = [f"bench{n}" for n in range(5)]
# Modest by default; --rate/--seconds for more requests a sample: /proc counts CPU in
# 10 ms ticks (app and each database backend), so 80 requests of ~3 ms wander ±10-15 %.
RATE, SECONDS = 20, 4
FRAGMENT = {"HX-Request": "true", "HX-Request-Type": "partial"}
TARGET = 1.2
HISTORY_DEEP_OFFSET = 15 * 15 - 1  # the last invoice of page 15: the 16th page starts after it
VIEWS = [
    "Invoices",
    "History",
    "A location's history, first page",
    "A location's history, 16th page",
    "Memberships",
    "A membership's visits",
    "Scheduler",
    "An invoice page",
    "The receipt",
]


@dataclass
class Customer:
    host: str
    email: str
    password: str
    tenant: int
    id: int
    cookie: str = ""
    paths: dict[str, str] = field(default_factory=dict)


def absolute(url: str) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url[len("sqlite:///") :]).resolve())
    return url


def one(database_url: str, sql: str, *args: Any) -> Any:
    rows = common.query(database_url, sql, *args)
    return next(iter(rows[0].values())) if rows else None


def customers(database_url: str, count: int, seed: int) -> tuple[list[Customer], list[Customer]]:
    """`count` random signed-up customers with a membership across every business, and
    the biggest customers of BIG_HOSTS; each with the paths of its views."""
    found = common.query(
        database_url,
        """SELECT t.host, pa.email, c.tenant, c.id FROM portal_account pa
           JOIN tenant t ON t.id = pa.tenant
           JOIN customer_email ce ON ce.tenant = pa.tenant AND ce.email = pa.email
           JOIN customer c ON c.id = ce.customer
           WHERE c.name <> 'Big Customer'
             AND EXISTS (SELECT 1 FROM membership m WHERE m.customer = c.id)
           ORDER BY c.id""",
    )
    picked = random.Random(seed).sample(found, count)
    small = [Customer(r["host"], r["email"], BENCH_PASSWORD, r["tenant"], r["id"]) for r in picked]
    big = []
    for host in BIG_HOSTS:
        r = common.query(
            database_url,
            """SELECT c.tenant, c.id FROM customer c JOIN tenant t ON t.id = c.tenant
               WHERE t.host = ? AND c.name = 'Big Customer'""",
            host,
        )[0]
        big.append(Customer(host, BENCH_EMAIL, BENCH_PASSWORD, r["tenant"], r["id"]))
    for c in small + big:
        c.paths = views(database_url, c)
    return small, big


def views(database_url: str, c: Customer) -> dict[str, str]:
    """The path of each view for customer `c` (its first location, membership, newest
    invoice and payment)."""
    location = one(database_url, "SELECT min(id) FROM location WHERE customer = ?", c.id)
    membership = one(database_url, "SELECT min(id) FROM membership WHERE customer = ?", c.id)
    invoice = one(
        database_url, "SELECT max(id) FROM invoice WHERE customer = ? AND total_cents > 0", c.id
    )
    payment = one(
        database_url,
        "SELECT max(id) FROM payment WHERE customer = ? AND status = 'succeeded'",
        c.id,
    )
    paths = {
        "Invoices": "/invoices",
        "History": "/history",
        "A location's history, first page": f"/history?location={location}",
        "Memberships": "/memberships",
        "A membership's visits": f"/memberships/{membership}",
        "Scheduler": "/schedule",
        "An invoice page": f"/invoices/{invoice}",
        "The receipt": f"/payments/{payment}",
    }
    deep = common.query(
        database_url,
        """SELECT invoice_date, id FROM invoice WHERE location = ? AND total_cents > 0
           ORDER BY invoice_date DESC, id DESC LIMIT 1 OFFSET ?""",
        location,
        HISTORY_DEEP_OFFSET,
    )
    if deep:  # only the biggest customer has 16 pages at one location
        day = str(deep[0]["invoice_date"])[:10]
        paths["A location's history, 16th page"] = (
            f"/history?location={location}&older={day}.{deep[0]['id']}"
        )
    return paths


@dataclass
class Measured:
    cpu_ms: float
    p50: float
    p95: float


def serve(database_url: str) -> Server:
    """A `portal serve` process on the data set (migrated, no demo loaded). The sign-in
    throttle's hits of earlier runs are cleared first: every run signs ~25 customers in
    from 127.0.0.1, and a second run within 15 minutes would be refused."""
    common.execute(database_url, "DELETE FROM throttle_count")
    var_dir = Path(tempfile.mkdtemp(prefix="portal-scale-"))
    return start_servers(var_dir, 1, database_url, {"PORTAL_MAIL_WORKER": "0"}, load_demo=False)[0]


ROUNDS = 5  # each group measured in this many short rounds, in alternation; the median counts


def measure(
    database_urls: list[str], count: int, seed: int
) -> list[dict[tuple[str, str], Measured]]:
    """[{(view, "random" | "biggest"): figures} for each database], all served at once.

    The groups (each database's random and biggest customers) are measured in
    alternation, ROUNDS short rounds each, in turn forwards and backwards, and each
    figure is the median of its rounds: the machine drifts over minutes, and a group
    measured minutes after another would carry the drift into their ratio."""
    servers: list[Server] = []
    try:
        people: list[tuple[Server, str, list[Any], list[Any]]] = []
        for url in database_urls:
            small, big = customers(url, count, seed)
            server = serve(url)
            servers.append(server)
            for c in small + big:
                c.cookie = sign_in_cookie(server, c.host, c.email, c.password)
            people.append((server, url, small, big))
        outs: list[dict[tuple[str, str], Measured]] = [{} for _ in database_urls]
        seconds = max(SECONDS / ROUNDS, 1.0)
        for view in VIEWS:
            arms = []
            for index, (server, url, small, big) in enumerate(people):
                for group, who in (("random", small), ("biggest", big)):
                    requests = [
                        build_request(
                            c.paths[view],
                            {
                                "Host": f"{c.host}.localhost:{server.port}",
                                "Cookie": c.cookie,
                                "Accept-Encoding": "br",
                                "Connection": "keep-alive",
                                **FRAGMENT,
                            },
                        )
                        for c in who
                        if view in c.paths
                    ]
                    if requests:
                        arms.append((index, group, server, url, requests))
            rounds: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
            for _, _, server, _, requests in arms:
                run(open_loop(server.port, requests, RATE, 1, connections=4))  # warm up
            for n in range(ROUNDS):
                for index, group, server, url, requests in arms if n % 2 == 0 else arms[::-1]:
                    meter = CpuMeter([server.process.pid], url)
                    meter.start()
                    result = run(open_loop(server.port, requests, RATE, seconds, connections=4))
                    spent = meter.stop()
                    assert set(result.statuses) == {200} and not result.errors, (
                        view,
                        group,
                        result.statuses,
                    )
                    rounds.setdefault((index, group), []).append(
                        (
                            (spent.app + spent.database) * 1000 / result.count,
                            result.pct(50),
                            result.pct(95),
                        )
                    )
            for (index, group), figures in rounds.items():
                outs[index][view, group] = Measured(
                    statistics.median(f[0] for f in figures),
                    statistics.median(f[1] for f in figures),
                    statistics.median(f[2] for f in figures),
                )
                print(
                    f"  {view} ({group}, database {index + 1}): "
                    f"{outs[index][view, group].cpu_ms:.2f} ms CPU "
                    f"(rounds {', '.join(f'{f[0]:.2f}' for f in figures)})",
                    flush=True,
                )
        return outs
    finally:
        for server in servers:
            stop_server(server)


def verdict(ratio: float) -> str:
    return f"{ratio:.2f} ({'yes' if ratio <= TARGET else 'NO'})"


def report(engine: str, small: dict, large: dict) -> tuple[list[list[str]], list[list[str]]]:
    cpu_rows, latency_rows = [], []
    for view in VIEWS:
        r_s, b_s = small.get((view, "random")), small.get((view, "biggest"))
        r_l, b_l = large.get((view, "random")), large.get((view, "biggest"))
        cpu_rows.append(
            [
                engine,
                view,
                f"{r_s.cpu_ms:.2f}" if r_s else "",
                f"{b_s.cpu_ms:.2f}",
                verdict(b_s.cpu_ms / r_s.cpu_ms) if r_s else "",
                f"{r_l.cpu_ms:.2f}" if r_l else "",
                f"{b_l.cpu_ms:.2f}" if b_l else "",
                verdict(b_l.cpu_ms / r_l.cpu_ms) if r_l and b_l else "",
                verdict(r_l.cpu_ms / r_s.cpu_ms) if r_s and r_l else "",
                verdict(b_l.cpu_ms / b_s.cpu_ms) if b_l else "",
            ]
        )
        latency_rows.append(
            [
                engine,
                view,
                *(f"{m.p50:.1f} / {m.p95:.1f}" if m else "" for m in (r_s, b_s, r_l, b_l)),
            ]
        )
    first, deep = "A location's history, first page", "A location's history, 16th page"
    for label, data in (("small", small), ("1 M", large)):
        if (deep, "biggest") not in data:  # --small-only: no 1 M database measured
            continue
        ratio = data[deep, "biggest"].cpu_ms / data[first, "biggest"].cpu_ms
        cpu_rows.append(
            [
                engine,
                f"deep ÷ first page, biggest customer, {label} database",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                f"{ratio:.2f}",
            ]
        )
    return cpu_rows, latency_rows


# --- the statements behind each view, EXPLAINed --------------------------------------------------


class Recorder:
    """Every statement the app in this process sends (asyncpg and sqlite3) while `on`.
    Installed before the app opens its first connection (SQLite's trace callback is set
    per connection)."""

    def __init__(self) -> None:
        self.on = False
        self.statements: list[tuple[str, tuple]] = []

    def add(self, sql: str, args: tuple = ()) -> None:
        if self.on and not sql.lstrip().upper().startswith("EXPLAIN"):
            self.statements.append((sql, args))

    @contextmanager
    def installed(self) -> Any:
        import asyncpg.connection

        originals = {}
        for name in ("fetch", "fetchrow", "fetchval", "execute"):
            original = originals[name] = getattr(asyncpg.connection.Connection, name)

            def wrapper(
                conn: Any, sql: str, *args: Any, __original: Any = original, **kw: Any
            ) -> Any:
                self.add(sql, args)
                return __original(conn, sql, *args, **kw)

            setattr(asyncpg.connection.Connection, name, wrapper)
        connect = sqlite3.connect

        def traced(*args: Any, **kw: Any) -> sqlite3.Connection:
            conn = connect(*args, **kw)
            conn.set_trace_callback(self.add)
            return conn

        sqlite3.connect = traced
        try:
            yield self
        finally:
            sqlite3.connect = connect
            for name, original in originals.items():
                setattr(asyncpg.connection.Connection, name, original)


def is_read(sql: str) -> bool:
    return sql.lstrip().upper().startswith(("SELECT", "WITH"))


async def explain(database_url: str, host: str, cookie: str, paths: dict[str, str]) -> list[str]:
    """Each view's statements, in order, each read with its plan."""

    from portal.config import Settings

    var_dir = Path(tempfile.mkdtemp(prefix="portal-explain-"))
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "PORTAL_VAR_DIR": str(var_dir),
            "PORTAL_SECRET_KEY": "bench-explain",
            "PORTAL_MAIL_WORKER": "0",
        }
    )
    lines: list[str] = []
    recorder = Recorder()
    with recorder.installed():
        lines += await _explain_views(database_url, settings, host, cookie, paths, recorder)
    return lines


async def _explain_views(
    database_url: str,
    settings: Any,
    host: str,
    cookie: str,
    paths: dict[str, str],
    recorder: Recorder,
) -> list[str]:
    import asyncpg
    from litestar.testing import AsyncTestClient

    from portal.app import create_app

    postgres = not database_url.startswith("sqlite")
    lines: list[str] = []
    async with AsyncTestClient(create_app(settings), base_url=f"http://{host}.localhost") as client:
        for view in VIEWS:
            if view not in paths:
                continue
            headers = {"Cookie": cookie, **FRAGMENT}
            await client.get(paths[view], headers=headers)  # warm (first-use statements)
            recorder.statements.clear()
            recorder.on = True
            response = await client.get(paths[view], headers=headers)
            recorder.on = False
            statements = list(recorder.statements)
            assert response.status_code == 200, (view, response.status_code)
            reads = [s for s in statements if is_read(s[0])]
            lines.append(
                f"-- {view} ({paths[view]}): {len(statements)} statements, {len(reads)} reads"
            )
            for sql, args in statements:
                lines.append("   " + " ".join(sql.split())[:160])
                if not is_read(sql):
                    continue
                if postgres:
                    conn = await asyncpg.connect(database_url)
                    try:
                        plan = await conn.fetch(
                            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql, *args
                        )
                        lines.extend("      " + r[0] for r in plan)
                    except asyncpg.PostgresError as exc:  # e.g. two statements in one string
                        lines.append(f"      (not EXPLAINed: {exc})")
                    finally:
                        await conn.close()
                else:
                    from portal.db.engine import sqlite_path

                    conn = sqlite3.connect(sqlite_path(database_url))
                    try:
                        plan = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
                    finally:
                        conn.close()
                    lines.extend("      " + r[3] for r in plan)
    return lines


def explain_big(database_url: str) -> list[str]:
    """The EXPLAIN lines of every view of the biggest customer of bench0."""
    _, big = customers(database_url, 0, 0)
    server = serve(database_url)
    try:
        cookie = sign_in_cookie(server, big[0].host, big[0].email, big[0].password)
    finally:
        stop_server(server)
    return asyncio.run(explain(database_url, big[0].host, cookie, big[0].paths))


def main() -> None:
    global RATE, SECONDS
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="SQLite,PostgreSQL")
    parser.add_argument("--customers", type=int, default=20, help="random small customers")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--explain-only", action="store_true")
    parser.add_argument(
        "--small-only",
        action="store_true",
        help="only the small databases (biggest ÷ random; no 1 M figures, plans of the small)",
    )
    parser.add_argument(
        "--postgres-prefix",
        default="portal_bench",
        help="PostgreSQL bench databases <prefix>_small and <prefix>_large",
    )
    parser.add_argument("--rate", type=float, default=RATE, help="requests a second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="measured seconds a view")
    args = parser.parse_args()
    RATE, SECONDS = args.rate, args.seconds
    small_pg, large_pg = (
        f"postgresql://postgres@127.0.0.1:5432/{args.postgres_prefix}_{size}"
        for size in ("small", "large")
    )
    DATABASES["PostgreSQL"] = (small_pg, large_pg)
    cpu_rows, latency_rows, plans = [], [], []
    for engine, (small_url, large_url) in DATABASES.items():
        if engine not in args.engines:
            continue
        small_url, large_url = absolute(small_url), absolute(large_url)
        if not args.explain_only:
            print(f"{engine}: the small and the 1 M database, served at once", flush=True)
            urls = [small_url] if args.small_only else [small_url, large_url]
            measured = measure(urls, args.customers, args.seed)
            small, large = measured[0], (measured[1] if len(measured) > 1 else {})
            c, lat = report(engine, small, large)
            cpu_rows += c
            latency_rows += lat
        explained, label = (small_url, "small") if args.small_only else (large_url, "1 M")
        plans += [f"== {engine}, biggest customer, {label} database", *explain_big(explained)]
    if cpu_rows:
        print()
        print("Server CPU per request, ms (app + database); ratios ≤ 1.2")
        print(
            table(
                cpu_rows,
                [
                    "engine",
                    "view",
                    "small db: random",
                    "small db: biggest",
                    "biggest ÷ random",
                    "1 M db: random",
                    "1 M db: biggest",
                    "biggest ÷ random",
                    "1 M ÷ small: random",
                    "1 M ÷ small: biggest",
                ],
            )
        )
        print()
        print(f"Latency p50 / p95, ms ({RATE} requests a second, open loop)")
        print(
            table(
                latency_rows,
                [
                    "engine",
                    "view",
                    "small db: random",
                    "small db: biggest",
                    "1 M db: random",
                    "1 M db: biggest",
                ],
            )
        )
    print()
    print("\n".join(plans))


if __name__ == "__main__":
    main()

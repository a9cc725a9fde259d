"""Scale: the Invoices and History fragments on a small and a large database.

    # once: make the data sets (see bench/generate.py)
    .venv/bin/python -m bench.generate --database-url postgresql://postgres@127.0.0.1:5432/portal_small --businesses 10
    .venv/bin/python -m bench.generate --database-url postgresql://postgres@127.0.0.1:5432/portal_large --businesses 1000
    .venv/bin/python -m bench.generate --database-url sqlite:///var/bench-small.sqlite3 --businesses 10
    .venv/bin/python -m bench.generate --database-url sqlite:///var/bench-large.sqlite3 --businesses 100
    # then
    .venv/bin/python -m bench.scale

For each database a `portal serve` process serves it; the generated "Big Customer"
of business bench0 (5,000 invoices over 20 locations) signs in, and each fragment is
requested 300 times at 50 requests a second (open loop): the Invoices tab, one
location's History first page, and a deep History page (the 16th page, keyset
cursor). Then EXPLAIN shows the plans of the tabs' queries on the large database.
Targets: large ÷ small ≤ 1.5 and deep ÷ first ≤ 1.5 (p95); plans use indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import table
from bench.generate import BENCH_EMAIL, BENCH_PASSWORD
from bench.loadgen import build_request, open_loop, run
from portal.testing import Server, start_server, stop_server

HOST = "bench0"
DATABASES = {
    "PostgreSQL": (
        "postgresql://postgres@127.0.0.1:5432/portal_small",
        "postgresql://postgres@127.0.0.1:5432/portal_large",
    ),
    "SQLite": ("sqlite:///var/bench-small.sqlite3", "sqlite:///var/bench-large.sqlite3"),
}


def absolute(url: str) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url[len("sqlite:///") :]).resolve())
    return url


def sign_in(server: Server) -> str:
    headers = {"Host": f"{HOST}.localhost:{server.port}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=headers) as client:
        token = re.search(r'name="_csrf_token" value="([^"]+)"', client.get("/sign-in").text).group(
            1
        )
        r = client.post(
            "/sign-in",
            data={"_csrf_token": token, "email": BENCH_EMAIL, "password": BENCH_PASSWORD},
        )
        assert r.status_code == 303, r.text
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def deep_cursor(database_url: str) -> tuple[int, str]:
    """A location of the big customer and the keyset cursor of its 16th History page."""
    sql_location = """SELECT l.id FROM location l JOIN customer c ON c.id = l.customer
        JOIN tenant t ON t.id = c.tenant WHERE t.host = 'bench0' AND c.name = 'Big Customer'
        ORDER BY l.id LIMIT 1"""
    sql_cursor = """SELECT invoice_date, id FROM invoice WHERE location = {loc} AND total_cents > 0
        ORDER BY invoice_date DESC, id DESC LIMIT 1 OFFSET 224"""
    if database_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(database_url[len("sqlite:///") :])
        loc = conn.execute(sql_location).fetchone()[0]
        day, iid = conn.execute(sql_cursor.format(loc=loc)).fetchone()
        conn.close()
        return loc, f"{str(day)[:10]}.{iid}"
    conn = await asyncpg.connect(database_url)
    try:
        loc = await conn.fetchval(sql_location)
        row = await conn.fetchrow(sql_cursor.format(loc=loc))
        return loc, f"{row['invoice_date'].isoformat()}.{row['id']}"
    finally:
        await conn.close()


def measure(database_url: str) -> dict[str, float]:
    var_dir = Path(tempfile.mkdtemp(prefix="portal-scale-"))
    server = start_server(var_dir, {"DATABASE_URL": database_url, "PORTAL_MAIL_WORKER": "0"})
    try:
        cookie = sign_in(server)
        loc, cursor = asyncio.run(deep_cursor(database_url))
        headers = {
            "Host": f"{HOST}.localhost:{server.port}",
            "Cookie": cookie,
            "HX-Request": "true",
            "HX-Request-Type": "partial",
            "Accept-Encoding": "br",
            "Connection": "keep-alive",
        }
        paths = {
            "Invoices tab": "/invoices",
            "History, first page": f"/history?location={loc}",
            "History, 16th page (keyset)": f"/history?location={loc}&older={cursor}",
        }
        out = {}
        for name, path in paths.items():
            request = build_request(path, headers)
            run(open_loop(server.port, request, 50, 1, connections=4))  # warm up
            result = run(open_loop(server.port, request, 50, 6, connections=4))
            assert set(result.statuses) == {200}, (path, result.statuses)
            out[name] = result.pct(95)
        return out
    finally:
        stop_server(server)


async def explain(database_url: str) -> list[str]:
    """Plans of the queries behind the Invoices and History tabs for the big customer
    (PostgreSQL): the business and session read every signed-in page makes, the
    Invoices tab's list and a deep History page."""
    conn = await asyncpg.connect(database_url)
    try:
        ids = await conn.fetchrow("""SELECT c.tenant, c.id FROM customer c JOIN tenant t ON t.id = c.tenant
            WHERE t.host = 'bench0' AND c.name = 'Big Customer'""")
        loc, cursor = await deep_cursor(database_url)
        day, iid = cursor.split(".")
        from portal.auth.sessions import TENANT_AND_SESSION_SQL
        from portal.db.fast import driver_sql
        from portal.db.invoices import _INVOICE_COLUMNS, _INVOICE_JOINS, OPEN_INVOICES_SQL

        token_hash = await conn.fetchval(
            "SELECT token_hash FROM session WHERE tenant = $1 ORDER BY id DESC LIMIT 1",
            ids["tenant"],
        )
        queries = {
            "Business and session (every signed-in page)": (
                driver_sql(TENANT_AND_SESSION_SQL, "postgres"),
                [token_hash or "no-session", "bench0"],
            ),
            "Invoices tab": (
                driver_sql(OPEN_INVOICES_SQL, "postgres"),
                [ids["tenant"], ids["id"]],
            ),
            "History page (keyset)": (
                f"""SELECT {_INVOICE_COLUMNS}, COUNT(*) OVER () AS location_count
                {_INVOICE_JOINS}
                WHERE i.tenant = $1 AND i.customer = $2 AND i.location = $3 AND i.total_cents > 0
                  AND (i.invoice_date, i.id) < ($4, $5)
                ORDER BY i.invoice_date DESC, i.id DESC LIMIT 16""",
                [ids["tenant"], ids["id"], loc, date.fromisoformat(day), int(iid)],
            ),
        }
        lines = []
        for name, (sql, args) in queries.items():
            plan = await conn.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql, *args
            )
            lines.append(f"-- {name}")
            lines.extend("   " + r[0] for r in plan)
        return lines
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", default="PostgreSQL,SQLite")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    for engine, (small_url, large_url) in DATABASES.items():
        if engine not in args.engines:
            continue
        small = measure(absolute(small_url))
        large = measure(absolute(large_url))
        first = "History, first page"
        for name in small:
            ratio = large[name] / small[name]
            rows.append(
                [
                    engine,
                    name,
                    f"{small[name]:.1f}",
                    f"{large[name]:.1f}",
                    f"{ratio:.2f}",
                    "yes" if ratio <= 1.5 else "NO",
                    "",
                ]
            )
        for label, data in (("small", small), ("large", large)):
            deep = data["History, 16th page (keyset)"] / data[first]
            rows.append(
                [
                    engine,
                    f"deep ÷ first page ({label} database)",
                    "",
                    "",
                    "",
                    "",
                    f"{deep:.2f} ({'yes' if deep <= 1.5 else 'NO'})",
                ]
            )
    print(
        table(
            rows,
            [
                "engine",
                "fragment",
                "p95 small (ms)",
                "p95 large (ms)",
                "large ÷ small",
                "≤ 1.5",
                "deep ÷ first ≤ 1.5",
            ],
        )
    )
    if "PostgreSQL" in args.engines:
        print()
        print("\n".join(asyncio.run(explain(DATABASES["PostgreSQL"][1]))))


if __name__ == "__main__":
    main()

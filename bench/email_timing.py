"""Does the answer's timing tell which emails a business knows? Request an invitation and
a password reset for known and unknown emails, alternately, and compare the medians.
Target: the same work whatever the email (medians within noise, about half of the known
requests slower than the unknown median).

    .venv/bin/python -m bench.email_timing [--requests 300]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.email_timing

One `portal serve` process on a new database (SQLite, or a new PostgreSQL database when
DATABASE_URL names a server). Known: for invitations, emails on a customer record with
no account yet (before issue 11.5 the request made the account, the link and the email);
for resets, registered customers. Unknown: emails on no record. Every request comes from
its own address (the server trusts 127.0.0.1 as its proxy) and names its own email, so no
throttle is reached; the worker is off, so only the request itself is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import time

import httpx

from bench.common import bench_server, postgres_database, table
from portal.auth.passwords import hash_password_sync
from portal.testing import engine_kind

HOST = "timingco"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def business(customers: int) -> dict:
    """Customers c0…: the even ones registered, the odd ones on record without an account."""
    one_hash = hash_password_sync("timing-bench-pass")
    people = []
    for n in range(customers):
        person = {
            "id": f"C{n}",
            "name": f"Customer {n}",
            "emails": [f"c{n}@timing.example"],
            "locations": [{"id": f"L{n}", "street": f"{n} Main St"}],
        }
        if n % 2 == 0:
            person["portal_account"] = {"email": f"c{n}@timing.example", "password_hash": one_hash}
        people.append(person)
    return {
        "format": "portal-import/1",
        "business": {
            "host": HOST,
            "name": "Timing Plumbing",
            "portal": {
                "enabled": True,
                "legal_accepted_by": "a@timing.example",
                "legal_accepted_at": "2026-01-01T00:00:00Z",
            },
        },
        "business_units": [{"id": "PL", "name": "Plumbing"}],
        "customers": people,
    }


def measure(port: int, requests: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    headers = {"Host": f"{HOST}.localhost:{port}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        tokens = {
            path: CSRF.search(client.get(path).text).group(1) for path in ("/invite", "/forgot")
        }
        for n in range(requests):
            for path in ("/invite", "/forgot"):
                known_n = 2 * n + (1 if path == "/invite" else 0)  # odd: no account; even: one
                for known in (True, False):
                    email = f"c{known_n}@timing.example" if known else f"x{n}@nowhere.example"
                    address = f"10.{n // 250}.{n % 250}.{2 if known else 3}{path == '/invite':d}"
                    started = time.perf_counter()
                    r = client.post(
                        path,
                        data={"_csrf_token": tokens[path], "email": email},
                        headers={"X-Forwarded-For": address},
                    )
                    took = time.perf_counter() - started
                    assert r.status_code == 200, (r.status_code, r.text[:300])
                    if n >= 10:  # the first ones warm the server up
                        times.setdefault(f"{path} {'known' if known else 'unknown'}", []).append(
                            took
                        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="per path and kind")
    args = parser.parse_args()
    postgres = engine_kind() == "postgres"
    database = (
        postgres_database(f"portal_bench_timing_{int(time.time())}")
        if postgres
        else contextlib.nullcontext(None)
    )
    with database as url:
        env = {"PORTAL_TRUSTED_PROXIES": "127.0.0.1", **({"DATABASE_URL": url} if url else {})}
        with bench_server(env) as server:
            data = server.var_dir / "timing.json"
            data.write_text(json.dumps(business(2 * args.requests + 2)))
            result = server.cli("import", str(data))
            assert result.returncode == 0, result.stderr
            times = measure(server.port, args.requests)
    rows = []
    for path in ("/invite", "/forgot"):
        known, unknown = times[f"{path} known"], times[f"{path} unknown"]
        unknown_median = statistics.median(unknown)
        slower = sum(t > unknown_median for t in known) / len(known)
        rows.append(
            [
                path,
                f"{statistics.median(known) * 1000:.2f}",
                f"{unknown_median * 1000:.2f}",
                f"{slower:.0%}",
                len(known),
            ]
        )
    engine = "PostgreSQL" if postgres else "SQLite"
    print(f"{engine}, one server process, requests alternate known and unknown emails")
    print(
        table(
            rows,
            [
                "request",
                "known median ms",
                "unknown median ms",
                "known slower than unknown median",
                "n",
            ],
        )
    )


if __name__ == "__main__":
    main()

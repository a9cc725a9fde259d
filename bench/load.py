"""Load run: customers browsing their tabs and paying invoices, against PostgreSQL, with
two app processes, then a check that no money was lost or counted twice.

    .venv/bin/python -m bench.load                       # 200 browsing + 20 paying, 5 minutes
    .venv/bin/python -m bench.load --seconds 20 --customers 20 --payers 4   # a quick smoke

It makes a new PostgreSQL database of its own (`portal_load_…`, created and dropped
through the server's `postgres` admin database, never `test`; the server is DATABASE_URL's,
default the local one),
imports one business with the import format (docs/import-format.md), starts two
`portal serve` processes on two ports, signs every customer in, and for `--seconds`:

- browsers open the Invoices, History, Memberships, Scheduler and Account tabs, an
  invoice page and one location's history, as whole pages or htmx fragments, with a
  short pause between pages;
- payers choose invoices on the Invoices tab, pay in full or part, and on the sandbox
  card page enter a good card (most), a declined card, or cancel, then come back to the
  receipt.

Then it checks, straight from the database: no 5xx and no request without an answer;
every payment the payers saw succeed is recorded once (one succeeded payment per
succeeded checkout, same amounts, nothing charged twice); every declined or canceled
one is failed and moved no money; and every invoice's balance equals its total minus
its succeeded allocations. It prints the figures and exits 1 if any check failed.

Traffic goes only to 127.0.0.1 (the two app processes on this machine). The database
is dropped afterwards unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx

from bench import common
from portal.auth.passwords import hash_password_sync
from portal.testing import free_port

HOST = "loadtest"
PASSWORD = "load-test-pass-1357"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
KEY = re.compile(r'name="key" value="([^"]+)"')
INVOICE_BOX = re.compile(r'name="invoice" value="(\d+)"')
GOOD_CARD, DECLINED_CARD = "4242 4242 4242 4242", "4000 0000 0000 0002"


# --- the business --------------------------------------------------------------------------------


def business(customers: int, payers: int) -> dict:
    """One business: `customers` browsers (a few invoices each) and `payers` with many
    invoices to pay; every customer registered (one password hash shared: it is slow)."""
    today = date.today()
    digest = hash_password_sync(PASSWORD)
    people, jobs, invoices, memberships = [], [], [], []
    for n in range(customers + payers):
        cid = f"C{n}"
        payer = n >= customers
        people.append(
            {
                "id": cid,
                "name": f"{'Payer' if payer else 'Browser'} {n}",
                "emails": [f"c{n}@load.example"],
                "locations": [
                    {"id": f"L{n}a", "street": f"{n} Main St", "city": "Springfield"},
                    {"id": f"L{n}b", "street": f"{n} Side Rd", "city": "Springfield"},
                ],
                "portal_account": {"email": f"c{n}@load.example", "password_hash": digest},
            }
        )
        for j in range(40 if payer else 12):
            number = f"J{n}-{j}"
            jobs.append(
                {
                    "number": number,
                    "customer": cid,
                    "location": f"L{n}{'ab'[j % 2]}",
                    "business_unit": "PL",
                    "summary": f"Job {j}",
                    "status": "completed",
                    "completed_at": f"{today - timedelta(days=j + 1)}T15:00:00Z",
                }
            )
            invoices.append(
                {
                    "number": f"I{n}-{j}",
                    "job": number,
                    "date": str(today - timedelta(days=j + 1)),
                    "lines": [{"description": "Work", "unit_price_cents": 5000 + 137 * j}],
                }
            )
        memberships.append(
            {
                "id": f"M{n}",
                "customer": cid,
                "location": f"L{n}a",
                "type": "Comfort Club",
                "status": "active",
                "start_date": str(today - timedelta(days=200)),
                "visits": [
                    {"date": str(today + timedelta(days=d)), "description": "Tune-up"}
                    for d in (20, 120)
                ],
            }
        )
    return {
        "format": "portal-import/1",
        "business": {
            "host": HOST,
            "name": "Load Test Plumbing",
            "email": "help@load.example",
            "phone": "(555) 010-9999",
            "portal": {
                "enabled": True,
                "legal_accepted_by": "boss@load.example",
                "legal_accepted_at": "2026-01-05T15:00:00Z",
                "scheduler_enabled": True,
                "service_types": ["Repair"],
                "memberships_enabled": True,
                "payment_account": "sandbox_acct_loadtest",
                "payments_enabled": True,
            },
        },
        "business_units": [{"id": "PL", "name": "Plumbing"}],
        "staff": [{"email": "boss@load.example", "role": "admin", "password_hash": digest}],
        "customers": people,
        "jobs": jobs,
        "invoices": invoices,
        "memberships": memberships,
    }


# --- processes -----------------------------------------------------------------------------------


def portal(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "portal.cli", *args], env=env, check=True, capture_output=True
    )


def start_servers(env: dict[str, str], count: int, var: Path) -> list[tuple[int, subprocess.Popen]]:
    servers = []
    for i in range(count):
        port = free_port()
        log = (var / f"server{i}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
            env={**env, "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        servers.append((port, process))
    deadline = time.monotonic() + 60
    for port, process in servers:
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_hello", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server on {port} did not start (see {var})") from None
                time.sleep(0.2)
    return servers


# --- simulated people ----------------------------------------------------------------------------


@dataclass
class Figures:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    paid: list[tuple[int, str]] = field(default_factory=list)  # payment id, expected status

    def record(self, kind: str, started: float, response: httpx.Response | None, note: str = ""):
        self.latencies[kind].append(time.monotonic() - started)
        if response is None:
            self.statuses["no answer"] += 1
            self.errors.append(f"{kind}: no answer {note}")
            return
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.errors.append(f"{kind}: {response.status_code} {note}")


class Person:
    def __init__(self, n: int, port: int, figures: Figures) -> None:
        self.n = n
        self.port = port
        self.figures = figures
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={
                "Host": f"{HOST}.localhost:{port}",
                "X-Forwarded-For": f"10.{n // 250}.{n % 250}.1",
            },
            timeout=60,
            # Drop an idle connection before the server does (uvicorn closes them after
            # 5 s): otherwise a request can cross the server's close on the wire, which a
            # browser answers by retrying and this script would count as a failure.
            limits=httpx.Limits(keepalive_expiry=2.5),
        )
        self.token = ""

    async def request(self, kind: str, method: str, path: str, **kw) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.figures.record(kind, started, None, repr(exc))
            return None
        self.figures.record(kind, started, response, path)
        return response

    async def sign_in(self) -> bool:
        page = await self.request("sign-in page", "GET", "/sign-in")
        if page is None or page.status_code != 200:
            return False
        self.token = CSRF.search(page.text).group(1)
        form = {"_csrf_token": self.token, "email": f"c{self.n}@load.example", "password": PASSWORD}
        for _ in range(20):
            r = await self.request("sign in", "POST", "/sign-in", data=form)
            if r is None or r.status_code != 503:
                return r is not None and r.status_code == 303
            # "Busy, try again in a moment": 220 people signing in at the same second.
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        return False

    def local(self, url: str) -> str:
        """A URL of the portal (or its sandbox page) as a path on this person's server."""
        parts = urlparse(url)
        return urlunparse(("", "", parts.path, "", parts.query, ""))


TABS = ["/invoices", "/history", "/memberships", "/schedule", "/account"]


async def browse(person: Person, until: float, rng: random.Random) -> None:
    invoice_ids: list[str] = []
    while time.monotonic() < until:
        choice = rng.random()
        headers = {"HX-Request": "true", "HX-Request-Type": "partial"} if rng.random() < 0.5 else {}
        if choice < 0.7 or not invoice_ids:
            tab = rng.choice(TABS)
            r = await person.request(f"tab {tab}", "GET", tab, headers=headers)
            if r is not None and tab == "/history" and not headers:
                invoice_ids = re.findall(r'href="/invoices/(\d+)"', r.text) or invoice_ids
        elif choice < 0.9:
            await person.request("invoice page", "GET", f"/invoices/{rng.choice(invoice_ids)}")
        else:
            r = await person.request("history page", "GET", "/history")
            found = re.findall(r'href="/history\?location=(\d+)"', r.text if r else "")
            if found:
                await person.request(
                    "location history", "GET", f"/history?location={rng.choice(found)}"
                )
        await asyncio.sleep(rng.uniform(0.2, 2.0))


async def pay(person: Person, until: float, rng: random.Random) -> None:
    while time.monotonic() < until:
        page = await person.request("tab /invoices", "GET", "/invoices")
        if page is None or page.status_code != 200:
            await asyncio.sleep(1)
            continue
        ids = INVOICE_BOX.findall(page.text)
        key = KEY.search(page.text)
        if not ids or key is None:
            return  # everything paid
        chosen = rng.sample(ids, k=min(len(ids), rng.choice([1, 1, 2])))
        partial = len(chosen) == 1 and rng.random() < 0.6
        form = {
            "_csrf_token": person.token,
            "key": key.group(1),
            "invoice": chosen,
            "action": "partial" if partial else "full",
            "amount": f"{rng.randint(1, 20)}.{rng.randint(0, 99):02d}" if partial else "",
        }
        started = await person.request("pay", "POST", "/invoices/pay", data=form)
        if started is None or started.status_code != 303:
            continue  # e.g. 422: that amount is over the balance now
        card_page = person.local(started.headers["location"])
        checkout = await person.request("card page", "GET", card_page)
        if checkout is None or checkout.status_code != 200:
            continue
        token = CSRF.search(checkout.text).group(1)
        roll = rng.random()
        if roll < 0.05:
            done = await person.request(
                "card cancel", "POST", card_page + "/cancel", data={"_csrf_token": token}
            )
            expected = "failed"
        else:
            card = DECLINED_CARD if roll < 0.15 else GOOD_CARD
            expected = "failed" if card == DECLINED_CARD else "succeeded"
            done = await person.request(
                "card submit",
                "POST",
                card_page,
                data={
                    "_csrf_token": token,
                    "number": card,
                    "expiry": f"12 / {(date.today().year + 2) % 100:02d}",
                    "cvc": "123",
                    "name": f"Payer {person.n}",
                },
            )
        if done is None or done.status_code != 303:
            continue
        back = person.local(done.headers["location"])
        match = re.match(r"^/payments/(\d+)", back)
        receipt = await person.request("receipt", "GET", back)
        if match and receipt is not None and receipt.status_code in (200, 303):
            person.figures.paid.append((int(match.group(1)), expected))
        await asyncio.sleep(rng.uniform(0.2, 1.0))


# --- checks --------------------------------------------------------------------------------------


async def check(db_url: str, figures: Figures) -> tuple[list[str], dict]:
    problems: list[str] = []
    conn = await asyncpg.connect(db_url)
    try:
        payments = {
            r["id"]: r for r in await conn.fetch("SELECT * FROM payment WHERE source = 'portal'")
        }
        checkouts = {
            r["public_id"]: r
            for r in await conn.fetch("SELECT * FROM sandbox_checkout WHERE mode = 'payment'")
        }
        # What the payers saw, against what was recorded.
        for payment_id, expected in figures.paid:
            row = payments.get(payment_id)
            if row is None:
                problems.append(f"payment {payment_id}: seen by the payer, not recorded")
            elif row["status"] != expected:
                problems.append(f"payment {payment_id}: {row['status']}, the payer saw {expected}")
        # One succeeded payment per succeeded checkout, for the same amount; nothing else.
        succeeded = [p for p in payments.values() if p["status"] == "succeeded"]
        refs = Counter(p["gateway_ref"] for p in succeeded)
        for ref, count in refs.items():
            if count > 1:
                problems.append(f"checkout {ref}: {count} succeeded payments (double payment)")
            checkout = checkouts.get(ref)
            if checkout is None or checkout["status"] != "succeeded":
                problems.append(f"payment with checkout {ref}: succeeded without a charge")
        for ref, checkout in checkouts.items():
            if checkout["status"] != "succeeded":
                continue
            number = int(checkout["merchant_reference"].removeprefix("pay_"))
            payment = payments.get(number)
            if payment is None or payment["status"] != "succeeded":
                state = payment["status"] if payment else "missing"
                problems.append(f"checkout {ref} charged but payment {number} is {state} (lost)")
            elif payment["amount_cents"] != checkout["amount_cents"]:
                problems.append(f"payment {number}: amount differs from the charge")
        charged = sum(c["amount_cents"] for c in checkouts.values() if c["status"] == "succeeded")
        recorded = sum(p["amount_cents"] for p in succeeded)
        allocated = await conn.fetchval(
            """SELECT COALESCE(SUM(a.amount_cents), 0) FROM payment_allocation a
               JOIN payment p ON p.id = a.payment
               WHERE p.status = 'succeeded' AND p.source = 'portal'"""
        )
        mismatched = await conn.fetch(
            """SELECT i.number, i.total_cents, i.balance_cents, COALESCE(SUM(a.amount_cents)
                 FILTER (WHERE p.status = 'succeeded'), 0) AS paid
               FROM invoice i
               LEFT JOIN payment_allocation a ON a.invoice = i.id
               LEFT JOIN payment p ON p.id = a.payment
               GROUP BY i.id
               HAVING i.balance_cents <> i.total_cents - COALESCE(SUM(a.amount_cents)
                 FILTER (WHERE p.status = 'succeeded'), 0)"""
        )
        for row in mismatched:
            problems.append(
                f"invoice {row['number']}: balance {row['balance_cents']} but total "
                f"{row['total_cents']} - paid {row['paid']}"
            )
        invoices = await conn.fetchval("SELECT count(*) FROM invoice")
        if charged != recorded or recorded != allocated:
            problems.append(f"charged {charged}, recorded {recorded}, allocated {allocated}")
        emails = await conn.fetchrow(
            "SELECT count(*) AS queued, count(*) FILTER (WHERE status = 'sent') AS sent FROM outbox_email"
        )
        money = {
            "payments": len(payments),
            "succeeded": len(succeeded),
            "failed": sum(p["status"] == "failed" for p in payments.values()),
            "pending": sum(p["status"] == "pending" for p in payments.values()),
            "charged": charged,
            "recorded": recorded,
            "allocated": allocated,
            "invoices": invoices,
            "invoices_off": len(mismatched),
            "emails_queued": emails["queued"],
            "emails_sent": emails["sent"],
        }
    finally:
        await conn.close()
    return problems, money


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    admin_url = common.admin_url(args.database_url)
    name = f"portal_load_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    db_url = urlunparse(urlparse(admin_url)._replace(path=f"/{name}"))
    var = Path(tempfile.mkdtemp(prefix="portal-load-"))
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PORTAL_VAR_DIR": str(var),
        "PORTAL_SECRET_KEY": "load-test-secret-key",
        # Each customer signs in from an address of their own (named in X-Forwarded-For,
        # as a reverse proxy would): 220 people, not one client (per-address throttles
        # and the fair hashing lane would rightly treat them as one).
        "PORTAL_TRUSTED_PROXIES": "127.0.0.1",
    }
    servers: list[tuple[int, subprocess.Popen]] = []
    try:
        print(f"database {name}; logs and mail in {var}", flush=True)
        portal(env, "migrate", "--quiet")
        data_file = var / "business.json"
        data_file.write_text(json.dumps(business(args.customers, args.payers)))
        portal(env, "import", str(data_file))
        conn = await asyncpg.connect(db_url)  # statistics, as a deployment has after an import
        await conn.execute("ANALYZE")
        await conn.close()
        servers = start_servers(env, args.processes, var)
        ports = [port for port, _ in servers]
        figures = Figures()
        people = [
            Person(n, ports[n % len(ports)], figures) for n in range(args.customers + args.payers)
        ]
        print(
            f"{args.processes} app processes on ports {ports}; signing in {len(people)} customers",
            flush=True,
        )
        signed = await asyncio.gather(*(p.sign_in() for p in people))
        if not all(signed):
            print(f"{signed.count(False)} customers could not sign in", file=sys.stderr)
        figures.latencies.clear()
        figures.statuses.clear()
        started = time.monotonic()
        until = started + args.seconds
        rng = random.Random(args.seed)
        tasks = [
            browse(p, until, random.Random(rng.random())) for p in people[: args.customers]
        ] + [pay(p, until, random.Random(rng.random())) for p in people[args.customers :]]
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        for p in people:
            await p.client.aclose()
        # Let the mail workers finish the receipts before counting.
        await asyncio.sleep(3)
        problems, money = await check(db_url, figures)
        for port, process in servers:
            if process.poll() is not None:
                problems.append(f"app process on port {port} died")
    finally:
        for _, process in servers:
            process.terminate()
        for _, process in servers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if not args.keep:
            conn = await asyncpg.connect(admin_url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

    every = [x for values in figures.latencies.values() for x in values]
    total = sum(figures.statuses.values())
    failures = sum(c for s, c in figures.statuses.items() if s == "no answer" or s >= 500)
    print()
    print(
        f"{args.customers} customers browsing, {args.payers} paying, {args.processes} app "
        f"processes, {elapsed:.0f} s"
    )
    print(
        f"requests: {total} ({total / elapsed:.1f}/s); failures (5xx or no answer): {failures}; "
        f"statuses: {dict(sorted(figures.statuses.items(), key=str))}"
    )
    print(
        f"latency: p50 {percentile(every, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(every, 0.95) * 1000:.0f} ms, max {max(every, default=0) * 1000:.0f} ms"
    )
    for kind in sorted(figures.latencies):
        values = figures.latencies[kind]
        print(
            f"  {kind:18} {len(values):6}  p50 {statistics.median(values) * 1000:6.0f} ms"
            f"  p95 {percentile(values, 0.95) * 1000:6.0f} ms"
        )
    print(
        f"payments: {money['payments']} started, {money['succeeded']} succeeded, "
        f"{money['failed']} failed (declined or canceled), {money['pending']} left on the card "
        f"page when the run stopped; {len(figures.paid)} receipts seen by payers"
    )
    print(
        f"money: charged {dollars(money['charged'])}, recorded {dollars(money['recorded'])}, "
        f"allocated to invoices {dollars(money['allocated'])}; invoices whose balance is not "
        f"total minus succeeded allocations: {money['invoices_off']} of {money['invoices']}"
    )
    print(f"emails: {money['emails_queued']} queued, {money['emails_sent']} sent")
    if failures:
        problems.append(f"{failures} requests failed: {figures.errors[:5]}")
    if problems:
        print("\nPROBLEMS:")
        for problem in problems[:30]:
            print(" -", problem)
        return 1
    print("\nOK: no 5xx, no lost or double payment, every balance reconciles.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--customers", type=int, default=200, help="customers browsing")
    parser.add_argument("--payers", type=int, default=20, help="customers paying invoices")
    parser.add_argument("--processes", type=int, default=2, help="app processes")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", common.POSTGRES_SERVER),
        help="a PostgreSQL server where a new database may be made",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("the load run needs PostgreSQL (DATABASE_URL or --database-url)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

"""Load run: customers browsing their tabs and paying invoices, with two app processes,
two mail workers and a real SMTP server, then a check that no money and no email was
lost or counted twice.

    nice .venv/bin/python -m bench.load                  # PostgreSQL, 200 + 20, 5 minutes
    nice .venv/bin/python -m bench.load --database-url sqlite       # the same on SQLite
    nice .venv/bin/python -m bench.load --seconds 20 --customers 20 --payers 4   # a smoke
    nice .venv/bin/python -m bench.load --kill-at 150    # SIGKILL app process 2 at 150 s

It makes a new database of its own (PostgreSQL: `portal_load_…`, created and dropped
through the server's `postgres` admin database, never `test`; the server is DATABASE_URL's,
default the local one; SQLite: a file in the run's folder), imports the load business and
two small ones with the import format (docs/import-format.md), starts two `portal serve`
processes on two ports (without their own mail workers), two `portal worker` processes
and an SMTP server (aiosmtpd, in this process), and signs every customer in: all at
once, each retrying a "busy" answer after its Retry-After and a short pause, as a person
would, for up to `--patience` seconds (a customer who could not sign in fails the run).
Then, for `--seconds`:

- browsers open the Invoices, History, Memberships, Scheduler and Account tabs, an
  invoice page and one location's history, as whole pages or htmx fragments, with a
  short pause between pages;
- payers choose invoices on the Invoices tab, pay in full or part, and on the sandbox
  card page enter a good card (most), a declined card, or cancel, then come back to the
  receipt;
- the poisoned-email fault: as the run starts, one email that can never be built (a
  recipient with a line separator smuggling a Bcc, as a row from before issue 11.2's fix)
  is queued first, then 100 good ones of the three businesses behind it;
- with `--kill-at`, app process 2 is killed (SIGKILL) that many seconds in, whatever it
  is doing (payments in flight), and started again on its port 2 s later; its
  customers' requests in between get no answer (counted apart, not as failures).

Then it checks, straight from the database: no 5xx and no request without an answer
(but those to the killed process while it was down); no customer browsed signed out;
every payment the payers saw succeed is recorded once (one succeeded payment per
succeeded checkout, same amounts, nothing charged twice); every declined or canceled
one is failed and moved no money; every invoice's balance equals its total minus its
succeeded allocations, and the money charged = recorded = allocated = the drop in open
balances, to the cent; every email sent was received by the SMTP server exactly once
(by Message-ID), none is left waiting, the 100 good ones among them; the poisoned one
failed with its reason, and that reason is on the business's Office › Emails page. It
prints the figures and exits 1 if any check failed.

Traffic goes only to 127.0.0.1 (the processes on this machine). The database is
dropped afterwards unless `--keep`.
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
from datetime import UTC, date, datetime, timedelta
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


def small_business(host: str, name: str, digest: str) -> dict:
    """A business with an administrator and one customer: the poisoned-email fault's
    other two senders."""
    return {
        "format": "portal-import/1",
        "business": {"host": host, "name": name, "email": f"help@{host}.example"},
        "business_units": [{"id": "PL", "name": "Plumbing"}],
        "staff": [{"email": f"boss@{host}.example", "role": "admin", "password_hash": digest}],
        "customers": [
            {
                "id": "C1",
                "name": f"{name} Customer",
                "emails": [f"c1@{host}.example"],
                "locations": [{"id": "L1", "street": "1 Main St", "city": "Springfield"}],
            }
        ],
    }


MAIL_HOSTS = [
    (HOST, "Load Test Plumbing"),
    ("loadmailb", "Second Mail Co"),
    ("loadmailc", "Third Mail Co"),
]
POISONED_TO = "pat@loadmailb.example\u2028Bcc: everyone@example.com"


# --- processes -----------------------------------------------------------------------------------


def portal(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "portal.cli", *args], env=env, check=True, capture_output=True
    )


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env={**env, "PORT": str(port)},
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )


def wait_until_serving(port: int, process: subprocess.Popen, var: Path, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_hello", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on {port} did not start (see {var})") from None
            time.sleep(0.2)


def start_servers(env: dict[str, str], count: int, var: Path) -> list[tuple[int, subprocess.Popen]]:
    servers = []
    for i in range(count):
        port = free_port()
        servers.append((port, start_server(env, port, var / f"server{i}.log")))
    for port, process in servers:
        wait_until_serving(port, process, var)
    return servers


def start_workers(env: dict[str, str], count: int, var: Path) -> list[subprocess.Popen]:
    """Real `portal worker` processes delivering the outbox (the servers run none)."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "worker"],
            env=env,
            stdout=(var / f"worker{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(count)
    ]


# --- simulated people ----------------------------------------------------------------------------


@dataclass
class Figures:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    paid: list[tuple[int, str]] = field(default_factory=list)  # payment id, expected status
    signed_out: list[str] = field(default_factory=list)  # pages answered with the sign-in
    # The killed app process: its port and the time it was down (monotonic, start to end).
    down: tuple[int, float, float] | None = None
    while_down: Counter = field(default_factory=Counter)
    resent: int = 0  # requests sent again after the server closed without answering
    settle_wait: float = 0.0  # after the run, until no charged payment was still pending

    def record(
        self,
        kind: str,
        started: float,
        response: httpx.Response | None,
        note: str = "",
        port: int = 0,
    ):
        self.latencies[kind].append(time.monotonic() - started)
        status = "no answer" if response is None else response.status_code
        down = self.down
        if (
            down
            and port == down[0]
            and down[1] <= time.monotonic()
            and started <= down[2]
            and (response is None or response.status_code >= 500)
        ):
            self.while_down[status] += 1  # asked the killed process: no answer is right
            return
        self.statuses[status] += 1
        if response is None:
            self.errors.append(f"{kind}: no answer {note}")
        elif response.status_code >= 500:
            self.errors.append(f"{kind}: {response.status_code} {note}")
        elif response.status_code == 303 and "/sign-in" in response.headers.get("location", ""):
            self.signed_out.append(f"{kind} {note}")


@dataclass
class SignIns:
    """What the customers met signing in (before the measured run)."""

    attempts: int = 0
    succeeded: int = 0
    busy: int = 0  # 503 "Lots of people are signing in right now"
    unavailable: int = 0  # 503 of another kind (e.g. no database connection free in time)
    refused: Counter = field(default_factory=Counter)  # any other answer: a real failure
    took: list[float] = field(default_factory=list)  # each successful sign-in's answer
    waited: list[float] = field(default_factory=list)  # first try to signed in, per customer


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
            # Drop an idle connection before the server might (uvicorn closed them after
            # 5 s until PORTAL_KEEPALIVE_SECONDS, 75): otherwise a request can cross the
            # server's close on the wire (a browser sends it again; so does `request`).
            limits=httpx.Limits(keepalive_expiry=2.5),
        )
        self.token = ""
        self.last_error = ""

    async def request(self, kind: str, method: str, path: str, **kw) -> httpx.Response | None:
        started = time.monotonic()
        try:
            try:
                response = await self.client.request(method, path, **kw)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                # The server closed the connection without a byte of answer: the keep-alive
                # race (the server closes an idle connection as a request, sent late by
                # this loaded client, crosses it), or the killed process. A browser sends
                # such a request again on a new connection; so does this script, once
                # (counted).
                self.figures.resent += 1
                response = await self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.figures.record(kind, started, None, repr(exc), self.port)
            self.last_error = (
                f"no answer ({type(exc).__name__} after {time.monotonic() - started:.0f} s)"
            )
            return None
        self.figures.record(kind, started, response, path, self.port)
        return response

    async def sign_in(self, tally: SignIns, patience: float, rng: random.Random) -> bool:
        """Sign in as a person would: a "busy, try again in a moment" (503) is tried again
        after its Retry-After and a short pause of one's own, until `patience` runs out;
        any other refusal is final."""
        began = time.monotonic()
        page = await self.request("sign-in page", "GET", "/sign-in")
        if page is None or page.status_code != 200:
            tally.refused[f"sign-in page {page.status_code if page else 'no answer'}"] += 1
            return False
        self.token = CSRF.search(page.text).group(1)
        form = {"_csrf_token": self.token, "email": f"c{self.n}@load.example", "password": PASSWORD}
        while True:
            tally.attempts += 1
            started = time.monotonic()
            r = await self.request("sign in", "POST", "/sign-in", data=form)
            if r is not None and r.status_code == 303:
                tally.succeeded += 1
                tally.took.append(time.monotonic() - started)
                tally.waited.append(time.monotonic() - began)
                return True
            if r is None or r.status_code != 503:
                tally.refused[r.status_code if r is not None else self.last_error] += 1
                return False
            if "Lots of people are signing in" in r.text:
                tally.busy += 1
            else:
                tally.unavailable += 1
            pause = float(r.headers.get("retry-after", "1")) + rng.uniform(0, 2)
            if time.monotonic() + pause - began > patience:
                tally.refused["gave up after a busy answer"] += 1
                return False
            await asyncio.sleep(pause)

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
            await asyncio.sleep(rng.uniform(0.2, 1.0))
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


async def settle_payments(seconds: float = 240) -> float:
    """Wait until no payment is pending whose card was charged (a callback lost with the
    killed process is recorded by a worker once the payment is 2 minutes old). Returns
    the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        rows = await fetch(
            """SELECT count(*) AS n FROM payment p JOIN sandbox_checkout c
               ON c.public_id = p.gateway_ref
               WHERE p.status = 'pending' AND c.status = 'succeeded'"""
        )
        if not rows[0]["n"]:
            break
        await asyncio.sleep(2)
    return time.monotonic() - began


# --- checks --------------------------------------------------------------------------------------
# --- the poisoned-email fault --------------------------------------------------------------------


async def queue_poisoned_and_good() -> tuple[int, list[int]]:
    """One email that can never be built, first in line (written raw, as a row from before
    issue 11.2's fix), then 100 good ones of the three businesses behind it."""
    from portal.config import Settings
    from portal.db import queries
    from portal.db import tables as t
    from portal.mail.outbox import message_id, queue_raw

    settings = Settings.from_env()
    tenants = [await queries.tenant_by_host(host) for host, _ in MAIL_HOSTS]
    early = datetime.now(UTC) - timedelta(minutes=5)
    [row] = await t.OutboxEmail.insert(
        t.OutboxEmail(
            tenant=tenants[1]["id"],
            message_id=message_id(settings),
            to_addr=POISONED_TO,
            from_name=tenants[1]["name"],
            subject="Your invoice",
            text_body="Hello",
            next_attempt_at=early,
        )
    ).run()
    good = []
    for n in range(100):  # 34 + 33 + 33
        tenant = tenants[n % 3]
        to = f"good{n}@{tenant['host']}.example"
        good.append(await queue_raw(settings, tenant, to, f"Note {n} from {tenant['name']}", "Hi"))
    return row["id"], good


async def office_emails_page(port: int, host: str, email: str) -> str:
    """Office › Emails as the business's administrator sees it."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Host": f"{host}.localhost:{port}", "X-Forwarded-For": "10.250.0.1"},
        timeout=60,
    ) as client:
        page = await client.get("/office/sign-in")
        form = {
            "_csrf_token": CSRF.search(page.text).group(1),
            "email": email,
            "password": PASSWORD,
        }
        for _ in range(30):
            r = await client.post("/office/sign-in", data=form)
            if r.status_code != 503:
                break
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        if r.status_code != 303:
            return f"(office sign-in answered {r.status_code})"
        return (await client.get("/office/emails")).text


async def settle_mail(seconds: float = 120) -> None:
    """Wait until no email is waiting or being sent (a retry scheduled later aside)."""
    from portal.db import tables as t

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = await t.OutboxEmail.raw(
            "SELECT count(*) AS n FROM outbox_email WHERE status = 'pending'"
        ).run()
        if not rows[0]["n"]:
            return
        await asyncio.sleep(1)


# --- checks --------------------------------------------------------------------------------------


async def fetch(sql: str) -> list[dict]:
    from portal.db import tables as t

    return await t.Payment.raw(sql).run()


async def open_balance() -> int:
    rows = await fetch("SELECT COALESCE(SUM(balance_cents), 0) AS open FROM invoice")
    return int(rows[0]["open"])


async def check(figures: Figures, sink, mail: dict, open_before: int) -> tuple[list[str], dict]:
    problems: list[str] = []
    payments = {r["id"]: r for r in await fetch("SELECT * FROM payment WHERE source = 'portal'")}
    checkouts = {
        r["public_id"]: r
        for r in await fetch("SELECT * FROM sandbox_checkout WHERE mode = 'payment'")
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
    [row] = await fetch(
        """SELECT COALESCE(SUM(a.amount_cents), 0) AS allocated FROM payment_allocation a
           JOIN payment p ON p.id = a.payment
           WHERE p.status = 'succeeded' AND p.source = 'portal'"""
    )
    allocated = int(row["allocated"])
    mismatched = await fetch(
        """SELECT i.number, i.total_cents, i.balance_cents, COALESCE(SUM(CASE
             WHEN p.status = 'succeeded' THEN a.amount_cents ELSE 0 END), 0) AS paid
           FROM invoice i
           LEFT JOIN payment_allocation a ON a.invoice = i.id
           LEFT JOIN payment p ON p.id = a.payment
           GROUP BY i.id, i.number, i.total_cents, i.balance_cents
           HAVING i.balance_cents <> i.total_cents - COALESCE(SUM(CASE
             WHEN p.status = 'succeeded' THEN a.amount_cents ELSE 0 END), 0)"""
    )
    for row in mismatched:
        problems.append(
            f"invoice {row['number']}: balance {row['balance_cents']} but total "
            f"{row['total_cents']} - paid {row['paid']}"
        )
    [row] = await fetch("SELECT count(*) AS n FROM invoice")
    invoices = row["n"]
    balance_drop = open_before - await open_balance()
    if not charged == recorded == allocated == balance_drop:
        problems.append(
            f"charged {charged}, recorded {recorded}, allocated {allocated}, "
            f"open balances dropped by {balance_drop}"
        )

    # Email: what the SMTP server received against the outbox.
    outbox = {r["id"]: r for r in await fetch("SELECT * FROM outbox_email")}
    received = Counter(str(m["Message-ID"]) for m in sink.messages)
    sent = {r["message_id"]: r for r in outbox.values() if r["status"] == "sent"}
    twice = [mid for mid, n in received.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} emails received more than once, e.g. {twice[:3]}")
    unknown = set(received) - set(sent)
    if unknown:
        problems.append(
            f"{len(unknown)} emails received but not marked sent: {sorted(unknown)[:3]}"
        )
    missing = set(sent) - set(received)
    if missing:
        problems.append(f"{len(missing)} emails marked sent, never received: {sorted(missing)[:3]}")
    waiting = [r for r in outbox.values() if r["status"] == "pending"]
    if waiting:
        problems.append(f"{len(waiting)} emails still waiting, e.g. {waiting[0]['last_error']!r}")
    good = [outbox[i] for i in mail["good"]]
    good_once = sum(received[r["message_id"]] == 1 for r in good)
    for r in good:
        if r["status"] != "sent" or received[r["message_id"]] != 1:
            problems.append(
                f"good email {r['to_addr']}: {r['status']}, received {received[r['message_id']]}"
            )
            break
    recipients = {str(m["To"]) for m in sink.messages}
    for r in good:
        if r["to_addr"] not in recipients:
            problems.append(f"no message reached {r['to_addr']}")
            break
    poisoned = outbox[mail["poisoned"]]
    if poisoned["status"] != "failed" or "could not be built" not in poisoned["last_error"]:
        problems.append(f"the poisoned email is {poisoned['status']}: {poisoned['last_error']!r}")
    if received[poisoned["message_id"]]:
        problems.append("the poisoned email reached the SMTP server")
    failed_other = [
        r for r in outbox.values() if r["status"] == "failed" and r["id"] != mail["poisoned"]
    ]
    if failed_other:
        problems.append(f"{len(failed_other)} other emails failed: {failed_other[0]['last_error']}")
    if "could not be built" not in mail["office_page"]:
        problems.append("the poisoned email's reason is not on Office › Emails")
    money = {
        "payments": len(payments),
        "succeeded": len(succeeded),
        "failed": sum(p["status"] == "failed" for p in payments.values()),
        "pending": sum(p["status"] == "pending" for p in payments.values()),
        "charged": charged,
        "recorded": recorded,
        "allocated": allocated,
        "balance_drop": balance_drop,
        "invoices": invoices,
        "invoices_off": len(mismatched),
        "emails_queued": len(outbox),
        "emails_sent": len(sent),
        "emails_received": sum(received.values()),
        "emails_distinct": len(received),
        "good_once": good_once,
        "poisoned": f"{poisoned['status']} after {poisoned['attempts']} attempt(s): "
        f"{poisoned['last_error']!r}",
    }
    return problems, money


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- main ----------------------------------------------------------------------------------------


async def kill_and_restart(
    servers: list[tuple[int, subprocess.Popen]], at: float, env: dict, var: Path, figures: Figures
) -> None:
    """SIGKILL the second app process `at` seconds in, start it again on its port 2 s later."""
    await asyncio.sleep(at)
    port, process = servers[-1]
    figures.down = (port, time.monotonic(), float("inf"))
    process.kill()
    await asyncio.to_thread(process.wait)
    print(f"killed the app process on port {port} at {at:.0f} s", flush=True)
    await asyncio.sleep(2)
    again = start_server(env, port, var / "server-restarted.log")
    servers[-1] = (port, again)
    await asyncio.to_thread(wait_until_serving, port, again, var)
    figures.down = (port, figures.down[1], time.monotonic())
    print(f"started again after {figures.down[2] - figures.down[1]:.1f} s", flush=True)


async def run(args: argparse.Namespace) -> int:
    from portal.db import engine
    from portal.testing import MailSink

    var = Path(tempfile.mkdtemp(prefix="portal-load-"))
    sqlite = args.database_url.startswith("sqlite")
    if sqlite:
        name = "portal-load.sqlite3"
        db_url = f"sqlite:///{var / name}"
    else:
        admin_url = common.admin_url(args.database_url)
        name = f"portal_load_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        db_url = urlunparse(urlparse(admin_url)._replace(path=f"/{name}"))
    sink = MailSink().start()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PORTAL_VAR_DIR": str(var),
        "PORTAL_SECRET_KEY": "load-test-secret-key",
        # Each customer signs in from an address of their own (named in X-Forwarded-For,
        # as a reverse proxy would): 220 people, not one client (per-address throttles
        # and the fair hashing lane would rightly treat them as one).
        "PORTAL_TRUSTED_PROXIES": "127.0.0.1",
        "PORTAL_SMTP_URL": sink.url,
        "PORTAL_MAIL_WORKER": "0",  # delivery is the two `portal worker` processes' job
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "PORTAL_SECRET_KEY", "PORTAL_VAR_DIR")})
    servers: list[tuple[int, subprocess.Popen]] = []
    workers: list[subprocess.Popen] = []
    db = None
    figures = Figures()
    tally = SignIns()
    try:
        print(f"database {name}; logs in {var}; SMTP server {sink.url}", flush=True)
        portal(env, "migrate", "--quiet")
        data_file = var / "business.json"
        data = business(args.customers, args.payers)
        data_file.write_text(json.dumps(data))
        portal(env, "import", str(data_file))
        digest = data["staff"][0]["password_hash"]
        for host, title in MAIL_HOSTS[1:]:
            (var / f"{host}.json").write_text(json.dumps(small_business(host, title, digest)))
            portal(env, "import", str(var / f"{host}.json"))
        await asyncio.to_thread(common.analyze, db_url)  # statistics, as after an import
        db = engine.use_database(db_url, pool_size=2)
        await engine.start(db)
        open_before = await open_balance()
        servers = start_servers(env, args.processes, var)
        workers = start_workers(env, 2, var)
        ports = [port for port, _ in servers]
        people = [
            Person(n, ports[n % len(ports)], figures) for n in range(args.customers + args.payers)
        ]
        print(
            f"{args.processes} app processes on ports {ports}, 2 mail workers; signing in "
            f"{len(people)} customers at once",
            flush=True,
        )
        rng = random.Random(args.seed)
        signing = time.monotonic()
        signed = await asyncio.gather(
            *(p.sign_in(tally, args.patience, random.Random(rng.random())) for p in people)
        )
        signing = time.monotonic() - signing
        print(f"signed in {signed.count(True)} of {len(people)} in {signing:.0f} s", flush=True)
        figures.latencies.clear()
        figures.statuses.clear()
        figures.errors.clear()
        poisoned, good = await queue_poisoned_and_good()
        started = time.monotonic()
        until = started + args.seconds
        # Only the customers who signed in take part (the others already fail the run).
        tasks = [
            (browse if p.n < args.customers else pay)(p, until, random.Random(rng.random()))
            for p, ok in zip(people, signed, strict=True)
            if ok
        ]
        if args.kill_at is not None:
            tasks.append(kill_and_restart(servers, args.kill_at, env, var, figures))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        for p in people:
            await p.client.aclose()
        figures.settle_wait = await settle_payments()
        # Let the mail workers finish the receipts before counting.
        await settle_mail()
        office_page = await office_emails_page(
            ports[0], MAIL_HOSTS[1][0], f"boss@{MAIL_HOSTS[1][0]}.example"
        )
        mail = {"poisoned": poisoned, "good": good, "office_page": office_page}
        problems, money = await check(figures, sink, mail, open_before)
        for port, process in servers:
            if process.poll() is not None:
                problems.append(f"app process on port {port} died")
        for worker in workers:
            if worker.poll() is not None:
                problems.append(f"mail worker {worker.pid} died")
    finally:
        for process in [p for _, p in servers] + workers:
            process.terminate()
        for process in [p for _, p in servers] + workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        sink.stop()
        if db is not None:
            await engine.stop(db)
        if not sqlite and not args.keep:
            conn = await asyncpg.connect(admin_url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

    every = [x for values in figures.latencies.values() for x in values]
    total = sum(figures.statuses.values())
    failures = sum(c for s, c in figures.statuses.items() if s == "no answer" or s >= 500)
    print()
    print(
        f"{args.customers} customers browsing, {args.payers} paying, {args.processes} app "
        f"processes, {'SQLite' if sqlite else 'PostgreSQL'}, {elapsed:.0f} s"
    )
    print(
        f"sign-ins: {len(people)} customers, {tally.succeeded} signed in, "
        f"{len(people) - tally.succeeded} could not; {tally.attempts} attempts, "
        f"{tally.busy} answered busy (503, tried again), {tally.unavailable} other 503, "
        f"refused: {dict(tally.refused)}; all signed in {signing:.0f} s after they began; "
        f"a successful sign-in's answer p50 {percentile(tally.took, 0.5):.2f} s, "
        f"max {max(tally.took, default=0):.2f} s; first try to signed in p50 "
        f"{percentile(tally.waited, 0.5):.1f} s, max {max(tally.waited, default=0):.1f} s"
    )
    print(
        f"requests: {total} ({total / elapsed:.1f}/s); sent again after a close without an "
        f"answer (keep-alive race, or the killed process): {figures.resent}; "
        f"failures (5xx or no answer): {failures}; "
        f"statuses: {dict(sorted(figures.statuses.items(), key=str))}"
    )
    if figures.down:
        print(
            f"killed process: down {figures.down[2] - figures.down[1]:.1f} s; requests to it "
            f"meanwhile: {dict(figures.while_down)}; after the run, {figures.settle_wait:.0f} s "
            "until no charged payment was pending"
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
        f"allocated to invoices {dollars(money['allocated'])}, open balances dropped by "
        f"{dollars(money['balance_drop'])}; invoices whose balance is not total minus "
        f"succeeded allocations: {money['invoices_off']} of {money['invoices']}"
    )
    print(
        f"emails: {money['emails_queued']} queued, {money['emails_sent']} sent; the SMTP server "
        f"received {money['emails_received']} ({money['emails_distinct']} distinct Message-IDs); "
        f"the 100 good ones of 3 businesses: {money['good_once']} received exactly once; "
        f"the poisoned one: {money['poisoned']}"
    )
    if failures:
        problems.append(f"{failures} requests failed: {figures.errors[:5]}")
    if tally.succeeded != len(people):
        problems.append(
            f"{len(people) - tally.succeeded} customers could not sign in: {dict(tally.refused)}"
        )
    if figures.signed_out:
        problems.append(
            f"{len(figures.signed_out)} pages answered signed out: {figures.signed_out[:3]}"
        )
    if problems:
        print("\nPROBLEMS:")
        for problem in problems[:30]:
            print(" -", problem)
        return 1
    print(
        "\nOK: every customer signed in; no 5xx; no lost or double payment, every balance "
        "reconciles to the cent; every email delivered exactly once, the poisoned one failed "
        "with its reason."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--customers", type=int, default=200, help="customers browsing")
    parser.add_argument("--payers", type=int, default=20, help="customers paying invoices")
    parser.add_argument("--processes", type=int, default=2, help="app processes")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--patience",
        type=float,
        default=300,
        help="seconds a customer keeps trying to sign in through 'busy' answers",
    )
    parser.add_argument(
        "--kill-at", type=float, default=None, help="SIGKILL app process 2 this many seconds in"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", common.POSTGRES_SERVER),
        help="a PostgreSQL server where a new database may be made, or 'sqlite'",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://", "sqlite")):
        parser.error("--database-url: a PostgreSQL server or 'sqlite'")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

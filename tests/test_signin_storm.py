"""Issue 11 item 4, again: a sign-in storm's refused answers are cheap, and a sign-in's whole
answer is bounded.

- A busy answer (the hashing lane full) reads nothing but the business: no account, no
  throttle count, no write (before: the account was read first, on SQLite a thread and a
  new connection per read, and the storm's 80 clients made 80 of them at once).
- A throttled answer (an email or client already over its limit) is one read of the
  counts and writes nothing (before: the account read, then an INSERT … ON CONFLICT that
  changed nothing but took SQLite's one write lock).
- A sign-in slower than `PORTAL_SIGN_IN_DEADLINE` in all (the hash, its wait, the
  database) answers "busy, try again in a moment" (503, Retry-After) in the form, and the
  attempt is not counted (before: it took as long as the slowest part took).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
from argon2 import PasswordHasher

from portal.auth import passwords
from portal.db import accounts
from portal.db import tables as t
from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, JANE_EMAIL, JANE_PASSWORD
from tests.support.http import csrf_from, make_client, sign_in
from tests.support.statements import recorded

BUSY = "Lots of people are signing in right now. Please try again in a moment."
FRAGMENT = {"HX-Request": "true", "HX-Request-Type": "partial"}
WRITES = ("INSERT", "UPDATE", "DELETE")


@asynccontextmanager
async def full_lane(hog: str = "192.0.2.250") -> AsyncIterator[None]:
    """The process's hashing lane full: one thread, held by one job of client `hog`, one
    more queued (both wait on an event), and hashes said to take a second, so any sign-in
    now is refused."""
    lane = passwords.LANE
    saved = (lane.threads, lane.max_wait, lane.seconds_per_hash)
    gate, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(30)

    lane.configure(threads=1, max_wait=0.05)
    lane.seconds_per_hash = 1.0
    jobs = [asyncio.ensure_future(lane.run(hog, hold))]
    try:
        assert await asyncio.to_thread(started.wait, 10)
        jobs.append(asyncio.ensure_future(lane.run(hog, hold)))
        await asyncio.sleep(0)
        yield
    finally:
        gate.set()
        await asyncio.gather(*jobs, return_exceptions=True)
        lane.configure(threads=saved[0], max_wait=saved[1])
        lane.seconds_per_hash = saved[2]


async def hits(tenant_id: int, key: str) -> int:
    row = (
        await t.ThrottleCount.select(t.ThrottleCount.hits)
        .where((t.ThrottleCount.tenant == tenant_id) & (t.ThrottleCount.key == key))
        .first()
        .run()
    )
    return row["hits"] if row else 0


async def test_a_busy_sign_in_reads_nothing_but_the_business(app, demo, monkeypatch):
    async with make_client(app) as c:
        token = await csrf_from(c, "/sign-in")
        form = {"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD}
        async with full_lane():
            with recorded(monkeypatch) as plain_sql:
                plain = await c.post("/sign-in", data=form)
            with recorded(monkeypatch) as swapped_sql:
                swapped = await c.post("/sign-in", data=form, headers=FRAGMENT)
    for response in (plain, swapped):
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert BUSY in response.text
    # One statement each: the business, from the host (the page needs its name). No
    # account, no throttle count, nothing written.
    for seen in (plain_sql, swapped_sql):
        assert len(seen.all) == 1, seen.all
        assert "portal_account" not in seen.all[0] and "throttle_count" not in seen.all[0]
    # With htmx, the form's block alone: a small answer.
    assert swapped.text.lstrip().startswith("<form") and len(swapped.content) < 3000


async def test_the_storming_clients_refusals_are_paced_and_others_answered_at_once(app, demo):
    """A client whose own hashes fill its share is answered "busy" no sooner than a hash
    would take (a storm that resends at once flooded the event loop with 220 refusals a
    second); a client with nothing waiting — the real customer — is answered at once."""
    async with make_client(app) as c:  # the in-process client is 127.0.0.1
        token = await csrf_from(c, "/sign-in")
        form = {"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD}
        async with full_lane(hog="127.0.0.1"):
            started = time.monotonic()
            storm = await c.post("/sign-in", data=form, headers=FRAGMENT)
            storm_seconds = time.monotonic() - started
        async with full_lane():  # the lane is full of another client's hashes
            started = time.monotonic()
            other = await c.post("/sign-in", data=form, headers=FRAGMENT)
            other_seconds = time.monotonic() - started
    assert storm.status_code == other.status_code == 503
    assert BUSY in storm.text and BUSY in other.text
    assert storm_seconds >= 0.9, storm_seconds  # held back (PACE_SECONDS)
    assert other_seconds < 0.9, other_seconds  # not held back


async def test_a_throttled_sign_in_is_one_read_and_writes_nothing(app, demo, monkeypatch):
    email = "customer2014@example.net"
    key = f"signin:email:{email}"
    await t.ThrottleCount.delete().where(t.ThrottleCount.key == key).run()
    await t.ThrottleCount.insert(
        t.ThrottleCount(tenant=demo, key=key, hits=10, resets_at=int(time.time()) + 900)
    ).run()
    verified = []
    real = passwords.HASHER

    class CountingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002
            verified.append(hash)
            return real.verify(hash, password)

    monkeypatch.setattr(passwords, "HASHER", CountingHasher())
    async with make_client(app) as c:
        token = await csrf_from(c, "/sign-in")
        form = {"_csrf_token": token, "email": email, "password": "a-wrong-guess-9"}
        answers, seen = [], []
        for _ in range(3):
            with recorded(monkeypatch) as sql:
                answers.append(await c.post("/sign-in", data=form, headers=FRAGMENT))
            seen.append(sql.all)
    assert [r.status_code for r in answers] == [429, 429, 429]
    assert "Too many attempts" in answers[0].text and verified == []
    for statements in seen:  # the business, then the counts: nothing written, no account
        assert len(statements) == 2, statements
        assert "throttle_count" in statements[1]
        assert not any(s.lstrip().upper().startswith(WRITES) for s in statements), statements
        assert not any("portal_account" in s for s in statements)
    assert await hits(demo, key) == 10  # the lock's count did not move


@contextmanager
def slow_hashes(seconds: float) -> Iterator[threading.Event]:
    """Every hash takes `seconds` (or until the event is set): as on a starved machine."""
    release = threading.Event()
    real = passwords.HASHER

    class SlowHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002
            release.wait(seconds)
            return real.verify(hash, password)

    saved = passwords.LANE.seconds_per_hash
    passwords.HASHER = SlowHasher()
    try:
        yield release
    finally:
        release.set()
        passwords.HASHER = real
        passwords.LANE.seconds_per_hash = saved


@pytest.fixture
def deadline(app, monkeypatch) -> float:
    """A sign-in deadline of half a second for this test."""
    seconds = 0.5
    changed = dataclasses.replace(app.state.settings, sign_in_deadline_seconds=seconds)
    monkeypatch.setattr(app.state, "settings", changed)
    return seconds


async def until_true(condition, seconds: float = 10) -> None:
    for _ in range(int(seconds * 20)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


@pytest.mark.parametrize(
    "path,email,password",
    [("/sign-in", JANE_EMAIL, JANE_PASSWORD), ("/office/sign-in", ADMIN_EMAIL, ADMIN_PASSWORD)],
    ids=["customer", "office"],
)
async def test_a_sign_in_whose_hash_runs_past_the_deadline_answers_busy_and_does_not_count(
    app, demo, deadline, path, email, password
):
    area = "signin" if path == "/sign-in" else "staff-signin"
    async with make_client(app) as c:
        token = await csrf_from(c, path)
        form = {"_csrf_token": token, "email": email, "password": password}
        with slow_hashes(20) as release:
            started = time.monotonic()
            plain = await c.post(path, data=form)
            took = time.monotonic() - started
            swapped = await c.post(path, data=form, headers=FRAGMENT)
            release.set()
    # Answered at the deadline, not after the 20 s hash: busy, try again, in the form.
    assert took < 10, took
    for response in (plain, swapped):
        assert response.status_code == 503, response.text[:500]
        assert int(response.headers["retry-after"]) >= 1
        assert BUSY in response.text and email in response.text  # the form, email kept
    assert "<html" in plain.text and swapped.text.lstrip().startswith("<form")
    # Never evaluated, so never counted (taken back once the cut-short count had landed).
    keys = [f"{area}:email:{email}", f"{area}:client:127.0.0.1"]

    async def all_taken_back() -> bool:
        return all([await hits(demo, key) == 0 for key in keys])

    await until_true(all_taken_back)
    if path == "/sign-in":  # and the next sign-in, in time, opens the account
        async with make_client(app) as c:
            await sign_in(c, email, password)


async def test_a_sign_in_whose_database_is_slow_answers_busy_at_the_deadline(
    app, demo, deadline, monkeypatch
):
    real = accounts.sign_in_account

    async def slow_account(tenant_id: int, email: str):
        await asyncio.sleep(20)
        return await real(tenant_id, email)

    monkeypatch.setattr(accounts, "sign_in_account", slow_account)
    async with make_client(app) as c:
        token = await csrf_from(c, "/sign-in")
        form = {"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD}
        started = time.monotonic()
        answer = await c.post("/sign-in", data=form)
        took = time.monotonic() - started
    assert answer.status_code == 503 and BUSY in answer.text, answer.text[:500]
    assert took < 10, took

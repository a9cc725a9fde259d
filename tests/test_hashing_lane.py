"""Issue 11.4: password hashing cannot be starved. The lane in front of the argon2
threads is fair between clients, bounded (a long wait is answered "busy" at once, never a
hang) and runs at a mildly lowered priority, not SCHED_IDLE."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from argon2 import PasswordHasher

from portal.auth import passwords
from portal.auth.passwords import HashingLane, LaneBusy
from portal.demo import JANE_EMAIL, JANE_PASSWORD
from tests.support.http import csrf_from, make_client, sign_in


def blocker(gate: threading.Event, ran: list[str], name: str):
    """A job that notes its turn and holds its thread until `gate` opens."""

    def work() -> str:
        ran.append(name)
        assert gate.wait(10)
        return name

    return work


async def until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def test_one_client_cannot_fill_the_lane():
    lane = HashingLane(threads=1, max_wait=60)
    gate, ran = threading.Event(), []
    hostile = [
        asyncio.ensure_future(lane.run("203.0.113.9", blocker(gate, ran, f"hostile {n}")))
        for n in range(20)
    ]
    await until(lambda: ran == ["hostile 0"])  # the first holds the only thread
    customer = asyncio.ensure_future(lane.run("198.51.100.4", blocker(gate, ran, "customer")))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(customer, *hostile)
    # The customer's turn comes after the hash already running and at most one more of the
    # hostile client's 20, not after all of them.
    assert ran.index("customer") <= 2, ran


async def test_a_thread_is_always_left_for_the_next_client():
    lane = HashingLane(threads=2, max_wait=60)
    gate, ran = threading.Event(), []
    hostile = [
        asyncio.ensure_future(lane.run("203.0.113.9", blocker(gate, ran, f"hostile {n}")))
        for n in range(20)
    ]
    await until(lambda: ran == ["hostile 0"])
    # The storm holds one of the two threads, never both: the customer starts at once.
    customer = asyncio.ensure_future(lane.run("198.51.100.4", blocker(gate, ran, "customer")))
    await until(lambda: ran == ["hostile 0", "customer"])
    gate.set()
    await asyncio.gather(customer, *hostile)
    assert len(ran) == 21


async def test_a_wait_beyond_the_bound_is_refused_at_once_and_a_queued_one_in_time():
    lane = HashingLane(threads=1, max_wait=0.3)
    lane.seconds_per_hash = 0.2
    gate, ran = threading.Event(), []
    first = asyncio.ensure_future(lane.run("a", blocker(gate, ran, "first")))
    await until(lambda: ran == ["first"])
    # One running and one waiting: a third would wait about two hashes (0.4 s > 0.3 s).
    second = asyncio.ensure_future(lane.run("a", blocker(gate, ran, "second")))
    await asyncio.sleep(0)
    with pytest.raises(LaneBusy) as refused:
        await lane.run("a", blocker(gate, ran, "third"))
    assert refused.value.retry_after >= 1
    # The second one's time is up while the first still holds the thread: refused, not run.
    await asyncio.sleep(0.4)
    gate.set()
    assert await first == "first"
    with pytest.raises(LaneBusy):
        await second
    assert ran == ["first"]


async def test_hashing_threads_run_at_normal_or_mildly_lowered_priority(app, demo, monkeypatch):
    seen = []
    real = passwords.HASHER

    class RecordingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002
            tid = threading.get_native_id()
            seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, tid)))
            return real.verify(hash, password)

    monkeypatch.setattr(passwords, "HASHER", RecordingHasher())
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
    [(policy, nice)] = seen
    assert policy == os.SCHED_OTHER  # never SCHED_IDLE: it starves behind any busy neighbour
    assert 0 <= nice <= 5


async def test_a_full_lane_answers_busy_in_the_form_and_the_attempt_does_not_count(app, demo):
    lane = passwords.LANE
    threads, max_wait, per_hash = lane.threads, lane.max_wait, lane.seconds_per_hash
    gate, ran = threading.Event(), []
    lane.configure(threads=1, max_wait=0.05)
    # Hashes said to take a second, whatever the suite's cheap hashes made the moving
    # average: the expected wait behind the held hash is then always past the bound (with
    # an average of a millisecond a sign-in was queued behind the held job instead, and
    # waited for the gate).
    lane.seconds_per_hash = 1.0
    held = [asyncio.ensure_future(lane.run("203.0.113.9", blocker(gate, ran, "held")))]
    try:
        await until(lambda: ran == ["held"])
        held.append(asyncio.ensure_future(lane.run("203.0.113.9", blocker(gate, ran, "next"))))
        await asyncio.sleep(0)
        async with make_client(app) as c:
            token = await csrf_from(c, "/sign-in")
            form = {"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD}
            plain = await c.post("/sign-in", data=form)
            swapped = await c.post(
                "/sign-in", data=form, headers={"HX-Request": "true", "HX-Request-Type": "partial"}
            )
            for _ in range(10):  # more than the 10 attempts an email may have
                await c.post("/sign-in", data=form)
    finally:
        gate.set()
        await asyncio.gather(*held, return_exceptions=True)
        lane.configure(threads=threads, max_wait=max_wait)
        lane.seconds_per_hash = per_hash
    message = "Lots of people are signing in right now. Please try again in a moment."
    for response in (plain, swapped):
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert message in response.text
        assert 'name="email"' in response.text and JANE_EMAIL in response.text  # form kept
    assert "<html" in plain.text  # without JavaScript: the whole page
    assert "<html" not in swapped.text and swapped.text.lstrip().startswith("<form")
    # "Busy" answers never evaluated the password, so they do not count against Jane.
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)

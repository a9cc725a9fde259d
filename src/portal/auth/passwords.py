"""Password hashing with argon2id, in a bounded lane that is fair between clients.

Parameters: m=64 MiB, t=3, p=1, above OWASP's floor (m=19 MiB, t=2, p=1). A hash takes
a fifth of a second on purpose, so hashes run on a few threads of their own and the event
loop keeps serving pages. The lane in front of those threads:

- is fair: each client (an address, see forwarded.py) has its own queue, the threads
  take one hash from each waiting client in turn, and one client never has more than
  one hash running of two threads (`threads - 1`): a thread is left for whoever comes
  next, so 80 sign-ins from one client do not delay another client's sign-in at all;
- is bounded: a hash that would wait longer than `max_wait` seconds for its turn is
  refused at once with `LaneBusy` (the page says "busy, try again in a moment", 503 with
  Retry-After), and one still queued when its time is up is refused then — a sign-in
  never hangs;
- runs at a mildly lowered priority (nice 5), not SCHED_IDLE: idle-priority threads get
  no CPU at all while any neighbour in the same scheduling group is busy (one sign-in
  waited 19 s), while nice 5 still lets the event loop's pages go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from portal.db.engine import give_back_request_connection

# argon2-cffi's default memory and time (64 MiB, 3 passes: above OWASP's floor of
# 19 MiB and 2), in one lane: a hash then runs in one thread of ours, whose priority we
# control, instead of fanning out into threads that compete with pages.
PRODUCTION_COST: dict[str, int] = {"time_cost": 3, "memory_cost": 65536, "parallelism": 1}
# Test suites only (Settings.cheap_password_hashing_for_tests): argon2id at its smallest
# cost, so thousands of test sign-ins do not spend minutes hashing.
TEST_COST = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


def _hasher(cost: dict[str, int]) -> PasswordHasher:
    """argon2id with these costs (the library's other defaults)."""
    return PasswordHasher(
        time_cost=cost["time_cost"],
        memory_cost=cost["memory_cost"],
        parallelism=cost["parallelism"],
    )


HASHER = _hasher(PRODUCTION_COST)
GRACE = 0.1  # seconds
NICE = 5  # hashing threads yield to the event loop, without starving behind neighbours


class LaneBusy(Exception):
    """Too many hashes are waiting: try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"password hashing is busy; retry in {retry_after}s")
        self.retry_after = retry_after


@dataclass
class _Job:
    client: str
    work: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    deadline: float | None  # monotonic time after which it is refused instead of run


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the request went away meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class HashingLane:
    """A few hashing threads fed round-robin from one queue per client (see the module
    docstring). All state is guarded by one lock; results go back to the asking event
    loop with `call_soon_threadsafe`."""

    def __init__(self, threads: int = 2, max_wait: float = 3.0) -> None:
        self.threads = threads
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, deque[_Job]] = {}
        self._turns: deque[str] = deque()  # clients with waiting jobs, next first
        self._running = 0
        self._running_by: Counter[str] = Counter()
        self._started = 0
        self.seconds_per_hash = 0.2  # moving average, for the expected wait

    def configure(self, *, threads: int, max_wait: float) -> None:
        """Set the number of threads and the longest wait (from Settings, at app start)."""
        with self._lock:
            self.threads = max(1, threads)
            self.max_wait = max_wait
            self._ready.notify_all()  # threads beyond the new number leave

    def expected_wait(self, client: str) -> float:
        """Seconds a new job of `client` would wait for a thread (caller holds the lock)."""
        mine = len(self._queues.get(client, ()))
        # Round-robin: every other client gets up to `mine + 1` turns before ours.
        ahead = mine + sum(
            min(len(queue), mine + 1) for other, queue in self._queues.items() if other != client
        )
        behind_threads = ahead + self._running - self.threads + 1
        # And this client's own hashes run at most `cap` at a time.
        cap = max(1, self.threads - 1)
        behind_own = mine + self._running_by[client] - cap + 1
        turns = max(0, behind_threads / self.threads, behind_own / cap)
        return turns * self.seconds_per_hash

    def refusal(self, client: str) -> int | None:
        """Retry-After seconds if a hash for `client` would be refused right now, else None
        (lets a busy answer skip all other work; `run` decides for real)."""
        with self._lock:
            wait = self.expected_wait(client)
        return max(1, math.ceil(wait - self.max_wait)) if wait > self.max_wait else None

    def has_work_of(self, client: str) -> bool:
        """Whether `client` has a hash waiting or running (its own share is in use)."""
        with self._lock:
            return bool(self._queues.get(client)) or self._running_by[client] > 0

    async def run(
        self,
        client: str | None,
        work: Callable[..., Any],
        *args: Any,
        budget: float | None = None,
    ) -> Any:
        """Run `work(*args)` on a hashing thread in `client`'s turn. Raises `LaneBusy`
        when the wait would be too long; `client=None` (import, command line) waits its
        turn without a bound. `budget`: the seconds the caller has left for the wait and
        the hash together (a sign-in's deadline): the wait is bounded by what is left of
        it after one hash, too, so a hash is never started that could not finish in time."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        key = client or ""
        with self._lock:
            wait = self.expected_wait(key)
            max_wait = self.max_wait
            if budget is not None:
                max_wait = max(0.0, min(max_wait, budget - self.seconds_per_hash))
            if client is not None and wait > max_wait:
                raise LaneBusy(max(1, math.ceil(wait - max_wait)))
            # A little grace: a job picked up as soon as it was queued is never late.
            deadline = time.monotonic() + max_wait + GRACE if client is not None else None
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
                self._turns.append(key)
            queue.append(_Job(key, lambda: work(*args), future, loop, deadline))
            while self._started < self.threads:
                self._started += 1
                name = f"argon2-{self._started}"
                thread = threading.Thread(
                    target=self._serve, args=(self._started,), name=name, daemon=True
                )
                thread.start()
            self._ready.notify()
        # Waiting for a hash holds no database connection (PostgreSQL's pool is shared).
        await give_back_request_connection()
        return await future

    def _next_job(self, number: int) -> _Job | None:
        """The next job in round-robin order (waits for one); None when this thread is no
        longer needed. Caller holds the lock.

        A client never has more than `threads - 1` hashes running (one of two), so a
        thread is left for the next client who comes: one client's storm cannot make
        another wait for a hash of the storm to finish."""
        cap = max(1, self.threads - 1)
        while True:
            if number > self.threads:
                return None
            client = next((c for c in self._turns if self._running_by[c] < cap), None)
            if client is not None:
                break
            self._ready.wait()
        self._turns.remove(client)
        queue = self._queues[client]
        job = queue.popleft()
        if queue:
            self._turns.append(client)  # its next job waits for every other client's turn
        else:
            del self._queues[client]
        return job

    def _serve(self, number: int) -> None:
        _lower_priority()
        while True:
            with self._lock:
                if number > self.threads:
                    self._started -= 1
                    return
                job = self._next_job(number)
                if job is None:
                    self._started -= 1
                    return
                if job.future.cancelled():
                    continue
                if job.deadline is not None and time.monotonic() > job.deadline:
                    self._deliver(job, None, LaneBusy(1))
                    continue
                self._running += 1
                self._running_by[job.client] += 1
            started = time.monotonic()
            result, error = None, None
            try:
                result = job.work()
            except Exception as exc:  # handed to the caller
                error = exc
            with self._lock:
                self._running -= 1
                self._running_by[job.client] -= 1
                if not self._running_by[job.client]:
                    del self._running_by[job.client]
                took = time.monotonic() - started
                self.seconds_per_hash = 0.8 * self.seconds_per_hash + 0.2 * took
                self._ready.notify_all()  # a client at its cap may go again
            self._deliver(job, result, error)

    @staticmethod
    def _deliver(job: _Job, result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the asking loop has closed
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)


LANE = HashingLane()
# Verified against when the email is unknown, so that answer takes as long as a real one.
# Made by `use_cost` (create_app calls it), not at import: a hash at production cost is a
# fifth of a second of CPU for every process that imports this module (each command, each
# server the test suite starts), most of which never verify a password.
_DUMMY_HASH: str | None = None


def use_cost(*, cheap_for_tests: bool) -> None:
    """Hash with the production parameters, or (test suites only) the cheapest ones; the
    unknown-email hash is made now, so no sign-in waits for it."""
    global HASHER, _DUMMY_HASH
    wanted = TEST_COST if cheap_for_tests else PRODUCTION_COST
    if wanted != {name: getattr(HASHER, name) for name in wanted}:
        HASHER, _DUMMY_HASH = _hasher(wanted), None
    _dummy_hash()


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:  # two threads may both make it: the same kind of hash
        _DUMMY_HASH = HASHER.hash("not a real password, only for timing")
    return _DUMMY_HASH


def hash_password_sync(password: str) -> str:
    """Hash a password (blocking; use `hash_password` from async code)."""
    return HASHER.hash(password)


async def hash_password(password: str, client: str | None = None) -> str:
    """Hash a password in the lane, in `client`'s turn (see `HashingLane.run`)."""
    hashed: str = await LANE.run(client, hash_password_sync, password)
    return hashed


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash or _dummy_hash(), password) and bool(stored_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(
    stored_hash: str | None,
    password: str,
    client: str | None = None,
    budget: float | None = None,
) -> bool:
    """True if `password` matches `stored_hash`; an empty hash still costs one verify.
    Runs in the lane in `client`'s turn; raises `LaneBusy` when the lane is full (or
    the wait and the hash would not fit in `budget` seconds)."""
    matches: bool = await LANE.run(client, _verify, stored_hash, password, budget=budget)
    return matches


def is_password_hash(value: str) -> bool:
    """True if `value` is an argon2id hash this portal can verify (what an import or a
    migration may bring instead of a password); anything else would lock its owner out."""
    try:
        from argon2 import Type, extract_parameters

        return extract_parameters(value).type is Type.ID
    except (InvalidHashError, ValueError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True

"""Password hashing with argon2id, run off the event loop.

Parameters: m=64 MiB, t=3, p=1, above OWASP's floor (m=19 MiB, t=2, p=1). Hashing
takes a tenth of a second on purpose, so it runs in a small pool of low-priority
threads: the event loop keeps serving other customers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's default memory and time (64 MiB, 3 passes: above OWASP's floor of
# 19 MiB and 2), in one lane: a hash then runs in one thread of our pool, whose
# priority we control, instead of fanning out into threads that compete with pages.
PRODUCTION_COST = {"time_cost": 3, "memory_cost": 65536, "parallelism": 1}
# Test suites only (Settings.cheap_password_hashing_for_tests): argon2id at its smallest
# cost, so thousands of test sign-ins do not spend minutes hashing.
TEST_COST = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
HASHER = PasswordHasher(**PRODUCTION_COST)


def _yield_cpu() -> None:
    """Run hashing threads only when the CPU has nothing more urgent to do (Linux
    SCHED_IDLE for this thread; elsewhere a lower nice value), so a sign-in storm
    waits its turn instead of stalling the event loop that serves everyone's pages."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


# Two workers: at most two hashes at once per process, so a sign-in storm queues
# instead of starving the event loop's own thread of CPU.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2", initializer=_yield_cpu)
# Verified against when the email is unknown, so that answer takes as long as a real one.
_DUMMY_HASH = HASHER.hash("not a real password, only for timing")


def use_cost(*, cheap_for_tests: bool) -> None:
    """Hash with the production parameters, or (test suites only) the cheapest ones."""
    global HASHER, _DUMMY_HASH
    wanted = PasswordHasher(**(TEST_COST if cheap_for_tests else PRODUCTION_COST))
    if wanted.check_needs_rehash(_DUMMY_HASH):  # made with the other parameters
        HASHER, _DUMMY_HASH = wanted, wanted.hash("not a real password, only for timing")


def hash_password_sync(password: str) -> str:
    """Hash a password (blocking; use `hash_password` from async code)."""
    return HASHER.hash(password)


async def hash_password(password: str) -> str:
    """Hash a password in the argon2 thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, HASHER.hash, password)


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash or _DUMMY_HASH, password) and bool(stored_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if `password` matches `stored_hash`; an empty hash still costs one verify."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, _verify, stored_hash, password)


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True

"""Password hashing with argon2id, run off the event loop.

argon2-cffi's defaults (t=3, m=64 MiB, p=4) are above OWASP's floor
(m=19 MiB, t=2, p=1). Hashing takes tens of milliseconds on purpose, so it runs
in a small thread pool: the event loop keeps serving other customers.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher()
# Two workers: at most two hashes at once per process, so a sign-in storm queues
# instead of starving the event loop's own thread of CPU.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
# Verified against when the email is unknown, so that answer takes as long as a real one.
_DUMMY_HASH = HASHER.hash("not a real password, only for timing")


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
